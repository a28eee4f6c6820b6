from django.apps import AppConfig


class DeskConfig(AppConfig):
    """The reviewer UI: conflict queue, dead letters, audit browser, health."""

    name = "conflictdesk.desk"
    label = "desk"

    def ready(self):
        from . import signals  # noqa: F401  (connects the login audit receivers)
