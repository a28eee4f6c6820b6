"""Thin Celery shells: ids in, load fresh state, one call, one log line (ids only).

Retries are not Celery's: the runner records each attempt and schedules the
next with an exact countdown, so no task here uses autoretry.
"""
from __future__ import annotations

import logging
import os
import socket

from celery import shared_task

log = logging.getLogger(__name__)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@shared_task(name="sync.run_sync", ignore_result=True)
def run_sync(run_id: int) -> str:
    from sync.workflow.runner import advance

    status = advance(run_id, worker_id())
    log.info("run %s -> %s", run_id, status)
    return status


@shared_task(name="sync.poll_site", ignore_result=True)
def poll_site(site_id: int) -> int:
    from sync.detection import poll_site as poll
    from sync.models import Site

    site = Site.objects.get(pk=site_id, enabled=True)
    return poll(site)


@shared_task(name="sync.poll_central", ignore_result=True)
def poll_central() -> int:
    from sync.detection import poll_central as poll

    return poll()


@shared_task(name="sync.poll_due", ignore_result=True)
def poll_due() -> int:
    """Poll every enabled site whose own interval has passed (beat ticks every second)."""
    from sync.workflow.sweeper import sites_due

    due = sites_due()
    for site_id in due:
        poll_site.delay(site_id)
    return len(due)


@shared_task(name="sync.sweep", ignore_result=True)
def sweep() -> int:
    from sync.workflow.sweeper import sweep as do_sweep

    return do_sweep()
