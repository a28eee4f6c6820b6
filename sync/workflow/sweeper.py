"""Re-send hints for work the broker may have lost; PostgreSQL says what is owed.

A run is owed a hint when it is pending or waiting and its last hint is old
(lost message, or a crash between commit and send), when its retry time has
passed, when its lease lapsed (the worker vanished), or when it waits for a
destination that answers again (the recovery's hints lost). Sending a hint
twice is harmless: the runner's claim lets one worker in.
"""
from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from sync.models import SyncRun

from .breaker import CENTRAL, open_destinations
from .dispatch import dispatch_run
from .heartbeat import release_dead_on_this_host


def owed_runs(now=None):
    now = now or timezone.now()
    stale = now - timedelta(seconds=settings.CONFLICTDESK_REDISPATCH_AFTER_SECONDS)
    not_recently_sent = Q(dispatched_at__isnull=True) | Q(dispatched_at__lt=stale)
    return SyncRun.objects.filter(
        (Q(status__in=[SyncRun.Status.PENDING, SyncRun.Status.WAITING]) & not_recently_sent)
        | (Q(status=SyncRun.Status.RETRY_WAIT, next_attempt_at__lt=now) & not_recently_sent)
        # A lapsed lease: sent once when it lapses, then like any other hint (not once per sweep).
        | (Q(status=SyncRun.Status.RUNNING, lease_expires_at__lt=now)
           & (not_recently_sent | Q(dispatched_at__lt=F("lease_expires_at"))))
        | (Q(status=SyncRun.Status.DESTINATION_DOWN) & not_recently_sent & _answering())
    ).order_by("pk")


def _answering() -> Q:
    """Runs none of whose destinations is down (``breaker``)."""
    down = open_destinations()
    if CENTRAL in down:
        return Q(pk__in=[])
    return ~Q(site__name__in=[d.removeprefix("site:") for d in down])


# When beat last made a sweep happen (every CONFLICTDESK_SWEEP_SECONDS): the health page's sign that beat
# and a worker on the poll queue are alive (conflictdesk.desk.liveness).
LAST_SWEEP_KEY = "conflictdesk:last-sweep"


def sweep() -> int:
    cache.set(LAST_SWEEP_KEY, timezone.now(), timeout=None)
    release_dead_on_this_host()  # a dead process's runs are owed now, not when their lease lapses
    with transaction.atomic():
        owed = list(owed_runs().values_list("pk", "status")[:500])
        for run_id, status in owed:
            # A RUNNING run is owed only when its worker died (lease let go or lapsed): it goes first.
            dispatch_run(run_id, recovery=status == SyncRun.Status.RUNNING)
    return len(owed)
