from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "conflictdesk.api"
    label = "conflictdesk_api"
    verbose_name = "ConflictDesk REST API"
