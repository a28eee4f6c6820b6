"""A run's lease renewed while its worker process lives, so a dead worker's run is taken over in seconds.

The lease (CONFLICTDESK_RUN_LEASE_SECONDS) is short; one thread per worker process
renews it every CONFLICTDESK_LEASE_HEARTBEAT_SECONDS for the run the process works
on (``holding``). A process that dies (a killed pool child, a killed main worker
with its pool) stops renewing: the lease lapses within one lease, and the sweeper
(every CONFLICTDESK_SWEEP_SECONDS) hands the run to a live worker. A renewal only
touches a run the worker still holds, so a worker that lost its lease never takes
it back. The thread keeps its database connection while its process works on runs
(within CONN_MAX_AGE) and closes it at the first beat that finds none, or when a
renewal failed: no connection is left idle between runs, and a PostgreSQL restart
costs one renewal. (It opened one per renewal before: a third of a busy worker's
connections.)
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from contextlib import contextmanager
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from sync.models import SyncRun

log = logging.getLogger(__name__)

_held: dict[int, str] = {}  # run id -> the worker holding its lease, in this process
_lock = threading.Lock()
_thread: tuple[int, threading.Thread] | None = None  # (pid, thread): a forked child starts its own


@contextmanager
def holding(run_id: int, worker: str):
    """Keep the run's lease renewed for the block (the runner works on the run inside it)."""
    _ensure_thread()
    with _lock:
        _held[run_id] = worker
    try:
        yield
    finally:
        with _lock:
            _held.pop(run_id, None)


def renew(held: dict[int, str]) -> int:
    """Push the lease of each run forward, where its worker still holds it; return how many were renewed."""
    expires = timezone.now() + timedelta(seconds=settings.CONFLICTDESK_RUN_LEASE_SECONDS)
    return sum(SyncRun.objects.filter(pk=run_id, lease_owner=worker, status=SyncRun.Status.RUNNING)
               .update(lease_expires_at=expires) for run_id, worker in held.items())


def release_dead_on_this_host(host: str | None = None) -> list[int]:
    """Let go now of the leases held by processes of this host that no longer exist (a killed pool
    child, a killed worker), instead of when they lapse; return the runs. The sweeper calls it: on one
    machine a dead worker's run is taken over at the next sweep. A pid that exists (even another
    process that reused it) keeps its lease until it lapses, which is always safe.
    """
    host = host or socket.gethostname()
    released = []
    now = timezone.now()
    # Only leases still standing: one let go (or lapsed) before is not let go again, which would make
    # it owed again (``sweeper.owed_runs``) and re-send it at every sweep until a worker takes it.
    standing = SyncRun.objects.filter(status=SyncRun.Status.RUNNING, lease_owner__startswith=f"{host}:",
                                      lease_expires_at__gt=now)
    for run_id, owner in standing.values_list("pk", "lease_owner"):
        if gone(owner, host) and standing.filter(pk=run_id, lease_owner=owner).update(lease_expires_at=now):
            released.append(run_id)
    return released


def gone(owner: str, host: str | None = None) -> bool:
    """The lease owner ('<host>:<pid>', ``sync.tasks.worker_id``) is a process of this host that no longer
    exists. A claim on this host may take such a lease at once: the message Celery re-queues when a pool
    child dies (task_reject_on_worker_lost) then recovers the run, instead of finding it still leased."""
    name, _, pid = owner.rpartition(":")
    return name == (host or socket.gethostname()) and pid.isdigit() and not _exists(int(pid))


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """A killed pool process its new parent has not reaped yet (a container's init may take its time)."""
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:  # no /proc: trust kill(0)
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def _ensure_thread() -> None:
    global _thread
    with _lock:
        if _thread is not None and _thread[0] == os.getpid() and _thread[1].is_alive():
            return
        thread = threading.Thread(target=_beat, name="lease-heartbeat", daemon=True)
        _thread = (os.getpid(), thread)
    thread.start()


def _beat() -> None:
    while True:
        time.sleep(float(settings.CONFLICTDESK_LEASE_HEARTBEAT_SECONDS))
        with _lock:
            held = dict(_held)
        if not held:
            connection.close()
            continue
        try:
            renew(held)
        except Exception:  # the database is away: the next beat tries again; a lease that lapses meanwhile is safe
            log.warning("lease heartbeat of run(s) %s failed", sorted(held), exc_info=True)
            connection.close()
        else:
            connection.close_if_unusable_or_obsolete()
