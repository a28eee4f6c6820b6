from django.apps import AppConfig


class SyncConfig(AppConfig):
    """The sync engine: detection, durable workflows, conflicts, dead letters."""

    name = "sync"
    default_auto_field = "django.db.models.BigAutoField"
