from django.apps import AppConfig


class AuditConfig(AppConfig):
    """Tamper-evident, append-only chain of custody for all clinical data."""

    name = "audit"
    default_auto_field = "django.db.models.BigAutoField"
