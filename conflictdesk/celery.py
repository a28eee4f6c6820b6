"""The Celery application; its settings, the beat schedule included, come from Django's CELERY_* settings."""
import os

from celery import Celery, signals
from django.db import close_old_connections

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "conflictdesk.settings")

app = Celery("conflictdesk")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.task_prerun.connect
@signals.task_postrun.connect
def _database_between_tasks(sender=None, **_) -> None:
    """Before and after each task, what Django does around each request: a connection that broke or
    outlived CONN_MAX_AGE is closed, a sound one is kept for the next task (CELERY_DB_REUSE_MAX).

    Not around an eager task: it runs inside its caller, whose transaction it must not end."""
    if not getattr(getattr(sender, "request", None), "is_eager", False):
        close_old_connections()
