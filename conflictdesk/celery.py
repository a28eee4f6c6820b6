"""The Celery application; its settings come from Django's CELERY_* settings."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "conflictdesk.settings")

app = Celery("conflictdesk")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def _every(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


# Beat only ticks; each site's own poll_interval_seconds is honoured by poll_due,
# so changing an interval needs no beat restart.
app.conf.beat_schedule = {
    "sync-sweep": {"task": "sync.sweep", "schedule": _every("CONFLICTDESK_SWEEP_SECONDS", 10)},
    # A rewrite of the local audit table becomes detectable from outside once anchored.
    "audit-anchor-heads": {"task": "audit.anchor_heads", "schedule": _every("CONFLICTDESK_ANCHOR_SECONDS", 300)},
}
# With `manage.py sync_poll_loop` running, beat leaves detection to it: polls
# through beat wait in the run queue, the loop does not (see sync.detection.poll_loop).
if os.environ.get("CONFLICTDESK_POLL_LOOP", "").lower() not in ("1", "true", "yes"):
    app.conf.beat_schedule.update({
        "sync-poll-due-sites": {"task": "sync.poll_due", "schedule": 1.0},
        "sync-poll-central": {"task": "sync.poll_central", "schedule": _every("CONFLICTDESK_CENTRAL_POLL_SECONDS", 30)},
    })
