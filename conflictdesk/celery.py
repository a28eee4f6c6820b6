"""The Celery application; its settings, the beat schedule included, come from Django's CELERY_* settings."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "conflictdesk.settings")

app = Celery("conflictdesk")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
