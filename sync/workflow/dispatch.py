"""Hints to Celery, sent only after the rows they point at are committed.

The broker may lose a hint (Redis restart, crash between commit and send);
the sweeper finds the row again, so sending is best effort by design.
"""
from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from sync.models import SyncRun

log = logging.getLogger(__name__)


def dispatch_run(run_id: int, countdown: float | None = None) -> None:
    """Queue ``run_sync(run_id)`` once the current transaction commits."""
    SyncRun.objects.filter(pk=run_id).update(dispatched_at=timezone.now())
    transaction.on_commit(lambda: send(run_id, countdown))


def send(run_id: int, countdown: float | None) -> None:
    from sync.tasks import run_sync

    try:
        run_sync.apply_async(args=[run_id], countdown=countdown)
    except Exception:  # the broker is down: the sweeper re-sends from PostgreSQL
        log.warning("dispatch of run %s failed; the sweeper will re-send it", run_id, exc_info=True)
