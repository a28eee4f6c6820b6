"""Top-level URLs: the desk, accounts (allauth), admin, health, the REST API and Prometheus metrics."""
from allauth.account.decorators import secure_admin_login
from django.contrib import admin
from django.urls import include, path

from conflictdesk import health, metrics
from conflictdesk.desk import views as desk_views

# The admin has no login form of its own: staff sign in through allauth, so the
# same rate limits, TOTP step and audit apply to them as to everyone else.
admin.site.login = secure_admin_login(admin.site.login)

urlpatterns = [
    path("", desk_views.home, name="home"),
    path("", include("conflictdesk.desk.urls")),
    path("accounts/", include("allauth.urls")),
    path("admin/", admin.site.urls),
    path("healthz", health.healthz, name="healthz"),
    path("api/v1/", include("conflictdesk.api.urls")),
    path("metrics", metrics.metrics_view, name="metrics"),
]

handler403 = "conflictdesk.desk.views.errors.forbidden"
handler404 = "conflictdesk.desk.views.errors.not_found"
handler500 = "conflictdesk.desk.views.errors.server_error"
