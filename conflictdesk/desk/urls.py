"""Desk URLs (namespace ``desk``). The role-walk test resolves every name listed here."""
from django.urls import path

from .views import auditlog, conflicts, deadletters, health, people, sources, steward

app_name = "desk"

urlpatterns = [
    path("conflicts/", conflicts.queue, name="conflicts"),
    path("conflicts/counts/", conflicts.counts, name="conflict_counts"),
    path("conflicts/<int:pk>/", conflicts.detail, name="conflict"),
    path("conflicts/<int:pk>/decide/", conflicts.decide, name="conflict_decide"),
    path("dead-letters/", deadletters.index, name="deadletters"),
    path("dead-letters/redrive/", deadletters.redrive_matching, name="deadletters_redrive"),
    path("dead-letters/<int:pk>/", deadletters.detail, name="deadletter"),
    path("dead-letters/<int:pk>/redrive/", deadletters.redrive, name="deadletter_redrive"),
    path("dead-letters/<int:pk>/discard/", deadletters.discard, name="deadletter_discard"),
    path("sources/<str:resource_type>/<str:resource_id>/", sources.detail, name="source"),
    path("audit/", auditlog.index, name="audit"),
    path("audit/record/", auditlog.record, name="audit_record"),
    path("audit/verify/", auditlog.verify, name="audit_verify"),
    path("audit/export/", auditlog.export, name="audit_export"),
    path("health/", health.dashboard, name="health"),
    path("health/panel/", health.panel, name="health_panel"),
    path("matching/", steward.index, name="matching"),
    path("matching/decide/", steward.decide, name="matching_decide"),
    path("people/", people.index, name="people"),
    path("people/invite/", people.invite, name="people_invite"),
]
