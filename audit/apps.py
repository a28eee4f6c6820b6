from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AuditConfig(AppConfig):
    """Tamper-evident, append-only chain of custody for all clinical data."""

    name = "audit"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        post_migrate.connect(_grant_app_role, sender=self, dispatch_uid="audit_grant_app_role")


def _grant_app_role(sender, using="default", **kwargs):
    # After every migrate, so tables a later migration adds are granted too (audit.db_roles).
    from .db_roles import grant_app_role

    grant_app_role(using)
