"""Top-level URLs: the desk, accounts (allauth), admin and health."""
from django.contrib import admin
from django.urls import include, path

from conflictdesk import health
from conflictdesk.desk import views as desk_views

urlpatterns = [
    path("", desk_views.home, name="home"),
    path("", include("conflictdesk.desk.urls")),
    path("accounts/", include("allauth.urls")),
    path("admin/", admin.site.urls),
    path("healthz", health.healthz, name="healthz"),
]

handler403 = "conflictdesk.desk.views.errors.forbidden"
handler404 = "conflictdesk.desk.views.errors.not_found"
handler500 = "conflictdesk.desk.views.errors.server_error"
