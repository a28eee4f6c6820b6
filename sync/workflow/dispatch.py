"""Hints to Celery, sent only after the rows they point at are committed.

The broker may lose a hint (Redis restart, crash between commit and send);
the sweeper finds the row again, so sending is best effort by design.
Tasks are sent by name: the workflow never imports ``sync.tasks``, whose
shells import the workflow.
"""
from __future__ import annotations

import logging

from celery import current_app
from django.db import transaction
from django.utils import timezone

from sync.models import SyncRun

log = logging.getLogger(__name__)

RUN_TASK = "sync.run_sync"


def dispatch_run(run_id: int, countdown: float | None = None) -> None:
    """Queue ``run_sync(run_id)`` once the current transaction commits."""
    SyncRun.objects.filter(pk=run_id).update(dispatched_at=timezone.now())
    transaction.on_commit(lambda: send(run_id, countdown))


def send(run_id: int, countdown: float | None) -> None:
    try:
        current_app.send_task(RUN_TASK, args=[run_id], countdown=countdown)
    except Exception:  # the broker is down: the sweeper re-sends from PostgreSQL
        log.warning("dispatch of run %s failed; the sweeper will re-send it", run_id, exc_info=True)


def queue_task(name: str, *args) -> None:
    """Send the task ``name`` once the current transaction commits (a manual trigger's detection pass).

    No row stands behind such a task: a hint lost here is lost, and the
    trigger's audit event says only that it was queued.
    """
    transaction.on_commit(lambda: send_task(name, args))


def send_task(name: str, args: tuple) -> None:
    try:
        current_app.send_task(name, args=list(args))
    except Exception:  # the broker is down: the person asking sees no run and asks again
        log.warning("task %s could not be sent", name, exc_info=True)
