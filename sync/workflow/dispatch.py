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
# Redis serves a queue's priority lists in order (kombu's priority_steps 0, 3, 6, 9: 0 first). Every hint
# goes to 3; a run whose worker died (``sweeper``: its lease let go or lapsed) goes to 0, so the next free
# worker slot takes it before the backlog queued meanwhile, not after it.
RUN_PRIORITY = 3
RECOVERY_PRIORITY = 0


def dispatch_run(run_id: int, countdown: float | None = None, *, recovery: bool = False) -> None:
    """Queue ``run_sync(run_id)`` once the current transaction commits (``recovery``: ahead of the queue)."""
    SyncRun.objects.filter(pk=run_id).update(dispatched_at=timezone.now())
    if recovery:
        transaction.on_commit(lambda: send(run_id, countdown, priority=RECOVERY_PRIORITY))
    else:
        transaction.on_commit(lambda: send(run_id, countdown))


def send(run_id: int, countdown: float | None, priority: int = RUN_PRIORITY) -> None:
    try:
        current_app.send_task(RUN_TASK, args=[run_id], countdown=countdown, priority=priority)
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
