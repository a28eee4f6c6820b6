"""/api/v1/ (namespace ``api``): resources, triggers, health, the OpenAPI schema and its docs page."""
from csp.constants import UNSAFE_INLINE
from csp.decorators import csp_update
from django.contrib.auth.decorators import login_required
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView
from rest_framework.routers import SimpleRouter

from .views import audit, conflicts, deadletters, health, runs, sites, sources, triggers

app_name = "api"

router = SimpleRouter()
router.register("sites", sites.SiteViewSet, basename="site")
router.register("runs", runs.SyncRunViewSet, basename="run")
router.register("conflicts", conflicts.ConflictViewSet, basename="conflict")
router.register("dead-letters", deadletters.DeadLetterViewSet, basename="deadletter")
router.register("audit-events", audit.AuditEventViewSet, basename="auditevent")

urlpatterns = [
    path("", include(router.urls)),
    path("triggers/", triggers.TriggerView.as_view(), name="triggers"),
    path("health/", health.HealthView.as_view(), name="health"),
    path("sources/<str:resource_type>/<str:resource_id>/", sources.SourceView.as_view(), name="source"),
    # Behind login: the schema for any signed-in user (session or token), the pages via the login form.
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    # Swagger UI's start-up script is served as a file (the split view), so the CSP needs no inline
    # script; its page keeps one inline <style>. Redoc's page starts with an inline script: allowed
    # there only (signed-in users, the schema alone, no data).
    path("docs/", login_required(csp_update({"style-src": [UNSAFE_INLINE]})(
        SpectacularSwaggerSplitView.as_view(url_name="api:schema"))), name="docs"),
    path("redoc/", login_required(csp_update({"script-src": [UNSAFE_INLINE], "style-src": [UNSAFE_INLINE]})(
        SpectacularRedocView.as_view(url_name="api:schema"))), name="redoc"),
]
