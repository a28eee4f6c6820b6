"""Run state transitions: each one a single transaction with its RunAttempt and audit event.

The runner calls these for the claim and for a failure (``commits`` commits
the steps a worker finished). Every transition re-reads the run under a row
lock and checks the caller still holds the lease, so a worker that lost its
lease (it stalled, the sweeper handed the run to another) cannot overwrite the
newer worker's progress.
"""
from __future__ import annotations

import logging
import math
import time
import zlib
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from audit.partitions import record_partition
from audit.record import record_events
from sync.identity import chain_source
from sync.models import ChangeEvent, DeadLetter, Outage, RunAttempt, Step, SyncRun

from . import breaker, heartbeat
from .dispatch import dispatch_run
from .services import get_services

log = logging.getLogger(__name__)

TERMINAL = (SyncRun.Status.DONE, SyncRun.Status.DEAD_LETTER, SyncRun.Status.CONFLICT)
MAX_ATTEMPTS = 7  # the first try plus one retry per CONFLICTDESK_RETRY_DELAYS entry
# A retry is due at its next_attempt_at. A hint that arrives earlier than this is sent back;
# closer, the claim waits out the rest: a retry never starts before its due time.
EARLY_TOLERANCE = timedelta(milliseconds=50)

CLAIMED = "claimed"
LEASED = "leased"
LEASE_LOST = "lease_lost"
GONE = "gone"


def claim_run(run_id: int, worker: str) -> tuple[str, SyncRun | None]:
    """Take the run's lease, or say why not (finished, leased, too early, waiting, gone).

    With ``CLAIMED`` comes the run as its claim committed it, so the runner starts its first segment
    without reading the run again. A fresh run is claimed by one statement (``_claim_fresh``); any
    other takes the long way below, under the record's lock.

    Gone: the broker still held a message for a run this database does not have (its database was
    dropped or restored while messages were queued, as a demo reset does).  Nothing to do, and nothing
    to retry: the message is dropped with one warning, not a traceback per message."""
    now = timezone.now()
    if _claim_fresh(run_id, worker, now):
        return CLAIMED, SyncRun.objects.select_related("change_event", "site").get(pk=run_id)
    with transaction.atomic():
        try:
            run = _lock_run(run_id)
        except SyncRun.DoesNotExist:
            log.warning("run %s: no such run in this database, message dropped", run_id)
            return GONE, None
        if run.status in TERMINAL:
            return run.status, None
        if (run.lease_owner and run.lease_owner != worker and run.lease_expires_at and run.lease_expires_at > now
                and not heartbeat.gone(run.lease_owner)):  # a dead process of this host holds nothing
            return LEASED, None
        due = run.next_attempt_at or now
        if run.status == SyncRun.Status.RETRY_WAIT and due > now:
            if due > now + EARLY_TOLERANCE:
                dispatch_run(run.pk, countdown=(due - now).total_seconds())
                return SyncRun.Status.RETRY_WAIT, None
            # A timer a hair early: wait it out here (a retry never starts before its due time).
            time.sleep((due - now).total_seconds())
            now = timezone.now()
        if earlier_unfinished(run).exists():
            SyncRun.objects.filter(pk=run.pk).update(status=SyncRun.Status.WAITING, lease_owner="", lease_expires_at=None)
            return SyncRun.Status.WAITING, None
        if breaker.down_for(run):  # a server it needs is down: wait for the probe, keep the schedule whole
            _park(run)
            run.save(update_fields=["status", "attempt", "next_attempt_at", "lease_owner", "lease_expires_at",
                                    "updated_at"])
            return run.status, None
        if run.claims >= settings.CONFLICTDESK_CRASH_LOOP_CLAIMS:
            _crash_loop(run, now)
            return run.status, None
        run.claims += 1  # back to 1 by each attempt recorded (``_attempt``): more means claims that crashed
        run.status = SyncRun.Status.RUNNING
        _renew(run, worker, now)
        run.save(update_fields=["status", "claims", "lease_owner", "lease_expires_at", "updated_at"])
        _event_status(run, ChangeEvent.Status.RUNNING)
    return CLAIMED, run


_TERMINAL_SQL = ", ".join(f"'{status}'" for status in TERMINAL)
_CLAIM_FRESH = f"""
WITH claimed AS (
    UPDATE {SyncRun._meta.db_table} r
       SET status = '{SyncRun.Status.RUNNING}', claims = r.claims + 1, lease_owner = %(worker)s,
           lease_expires_at = %(expires)s, updated_at = %(now)s
     WHERE r.id = %(run)s AND r.status = '{SyncRun.Status.PENDING}' AND r.lease_owner = ''
       AND r.claims < %(max_claims)s
       AND NOT EXISTS (SELECT 1 FROM {SyncRun._meta.db_table} e WHERE e.record_key = r.record_key
                          AND e.id < r.id AND e.status NOT IN ({_TERMINAL_SQL}))
       AND NOT EXISTS (SELECT 1 FROM {Outage._meta.db_table} o WHERE o.recovered_at IS NULL)
    RETURNING r.id, r.change_event_id
), event AS (
    UPDATE {ChangeEvent._meta.db_table} c SET status = '{ChangeEvent.Status.RUNNING}'
      FROM claimed WHERE c.id = claimed.change_event_id
)
SELECT id FROM claimed
"""


def _claim_fresh(run_id: int, worker: str, now) -> bool:
    """The common claim in one statement: a pending run nobody holds, no earlier run of its record
    unfinished, no server down (any open breaker sends every claim the long way), not a poison run.

    It changes what the long way would (status, claims, lease, the event's status) and takes a single
    lock, the run's row (then its event's, the order every transition takes them in), so it needs
    neither the record's advisory lock nor a transaction of its own. Whatever it does not claim (a
    retry, a waiting or leased run, a run behind another, a server down) takes the long way, which
    says why; an earlier run committed after this statement's snapshot is found there next time.
    """
    with connection.cursor() as cursor:
        cursor.execute(_CLAIM_FRESH, {
            "worker": worker, "now": now, "run": run_id, "max_claims": settings.CONFLICTDESK_CRASH_LOOP_CLAIMS,
            "expires": now + timedelta(seconds=settings.CONFLICTDESK_RUN_LEASE_SECONDS)})
        return cursor.fetchone() is not None


def _crash_loop(run: SyncRun, now) -> None:
    """A poison run: claimed N times and no step finished (the worker died or hung in it each time).

    Parked with its step and the last error it recorded (if any) instead of being
    re-claimed forever, which would also block every later run of its record.
    """
    claims, last = run.claims, run.attempts.order_by("-started_at", "-pk").first()
    error = f"claimed {claims} times without finishing step {run.step} (the worker died or hung in it)"
    if last is not None and last.error_class:
        error += f"; last recorded error: {last.error_class} in {last.step}"
    _attempt(run, run.step, now, "dead_letter", "", exc=CrashLoop(error))
    audit_run(run, f"sync.{run.step}", "dead_letter", detail={"cause": DeadLetter.Cause.CRASH_LOOP,
                                                              "claims": claims, "error_class": "CrashLoop"})
    _dead_letter(run, DeadLetter.Cause.CRASH_LOOP, error, payload=None,
                 detail={"claims": claims, "last_error_class": last.error_class if last else "",
                         "last_error": last.error_detail if last else ""})
    run.save()


class CrashLoop(Exception):
    """The error recorded for a run dead-lettered as ``crash_loop``."""


def retry_later(run_id: int, worker: str, exc, started) -> str:
    """A transient fault: retry after exactly the scheduled delay, or dead-letter after the 7th attempt."""
    with transaction.atomic():
        run = _locked_if_ours(run_id, worker)
        if run is None:
            return LEASE_LOST
        number = run.attempt + 1
        retry_after = bounded_retry_after(getattr(exc, "retry_after_seconds", None))
        delay = None
        if number < MAX_ATTEMPTS:
            delay = float(settings.CONFLICTDESK_RETRY_DELAYS[number - 1])
            if retry_after is not None and retry_after > delay:
                delay = retry_after  # the server asked for longer: honour it (up to the cap), and it is recorded
        _attempt(run, run.step, started, "transient", worker, exc=exc, retry_after=retry_after, delay=delay)
        audit_run(run, f"sync.{run.step}", "transient", detail={"attempt": number, "error_class": type(exc).__name__})
        if delay is None:
            _dead_letter(run, DeadLetter.Cause.TRANSIENT_EXHAUSTED, str(exc), payload=None)
        else:
            run.attempt = number
            run.claims = 0
            run.status = SyncRun.Status.RETRY_WAIT
            run.next_attempt_at = timezone.now() + timedelta(seconds=delay)
            run.lease_owner, run.lease_expires_at = "", None
            dispatch_run(run.pk, countdown=delay)  # counted from the send, after this commit: never early
        run.save()
        return run.status


def wait_for_destination(run_id: int, worker: str, exc, started, destination: str) -> str:
    """A transient fault while ``destination`` is down (``breaker``): the run waits for it, no retry spent."""
    with transaction.atomic():
        run = _locked_if_ours(run_id, worker)
        if run is None:
            return LEASE_LOST
        _attempt(run, run.step, started, "destination_down", worker, exc=exc)
        audit_run(run, f"sync.{run.step}", "destination_down",
                  detail={"destination": destination, "error_class": type(exc).__name__})
        _park(run)
        run.claims = 0
        run.save()
        return run.status


def _park(run: SyncRun) -> None:
    """Wait for a destination: no lease, no timer, and the step's schedule starts afresh when it answers."""
    run.status = SyncRun.Status.DESTINATION_DOWN
    run.attempt = 0
    run.next_attempt_at = None
    run.lease_owner, run.lease_expires_at = "", None


def bounded_retry_after(value) -> float | None:
    """A server's Retry-After as a finite number of seconds in [0, cap], or None if it is not a number."""
    try:
        value = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if math.isnan(value):
        return None
    return min(max(value, 0.0), float(settings.CONFLICTDESK_RETRY_AFTER_MAX_SECONDS))


def recheck_conflict(run_id: int, worker: str, exc, started) -> str:
    """The destination moved under our If-Match: go back and re-check, never overwrite."""
    with transaction.atomic():
        run = _locked_if_ours(run_id, worker)
        if run is None:
            return LEASE_LOST
        _attempt(run, run.step, started, "stale", worker, exc=exc)
        audit_run(run, f"sync.{run.step}", "stale", detail={"error_class": type(exc).__name__})
        stale = run.checkpoint.get("stale_rechecks", 0) + 1
        run.checkpoint = {**run.checkpoint, "stale_rechecks": stale}
        if stale >= MAX_ATTEMPTS:  # the record keeps moving: a person should look
            _dead_letter(run, DeadLetter.Cause.TRANSIENT_EXHAUSTED, f"stale write {stale} times: {exc}", payload=None)
        else:
            run.step = Step.CHECK_CONFLICT
            _renew(run, worker, timezone.now())
        run.save()
        return run.status


def dead_letter_now(run_id: int, worker: str, exc, started, *, cause: str, payload=None) -> str:
    """A failure no retry can fix: park the run whole and tell the clinical staff."""
    with transaction.atomic():
        run = _locked_if_ours(run_id, worker)
        if run is None:
            return LEASE_LOST
        _attempt(run, run.step, started, "dead_letter", worker, exc=exc)
        audit_run(run, f"sync.{run.step}", "dead_letter", detail={"cause": cause, "error_class": type(exc).__name__})
        _dead_letter(
            run,
            cause,
            str(exc),
            payload=payload,
            rule=getattr(exc, "rule", None) or "",
            path=getattr(exc, "path", None) or "",
            detail=getattr(exc, "detail", None),
        )
        run.save()
        return run.status


def lock_record(record_key: str) -> None:
    """Serialise everything about one record for the rest of the transaction."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [zlib.crc32(record_key.encode())])


def earlier_unfinished(run: SyncRun):
    return SyncRun.objects.filter(record_key=run.record_key, pk__lt=run.pk).exclude(status__in=TERMINAL)


def _lock_run(run_id: int, record_key: str | None = None) -> SyncRun:
    """The record's advisory lock, then the run's row: always in this order.

    ``_end`` updates the next run of the record while holding both; a claim
    that took the row first and the advisory lock second deadlocked with it.
    A run's record key never changes, so a caller that has it saves the read.
    The change event comes along (not locked): every step's audit event names it.
    """
    if record_key is None:
        record_key = SyncRun.objects.values_list("record_key", flat=True).get(pk=run_id)
    lock_record(record_key)
    return SyncRun.objects.select_for_update(of=("self",)).select_related("change_event", "site").get(pk=run_id)


def _locked_if_ours(run_id: int, worker: str, record_key: str | None = None) -> SyncRun | None:
    run = _lock_run(run_id, record_key)
    if run.lease_owner != worker or run.status != SyncRun.Status.RUNNING:
        log.warning("run %s: lease lost by %s, step result discarded", run_id, worker)
        return None
    return run


def _renew(run: SyncRun, worker: str, now) -> None:
    run.lease_owner = worker
    run.lease_expires_at = now + timedelta(seconds=settings.CONFLICTDESK_RUN_LEASE_SECONDS)


def _attempt(run, step, started, outcome, worker, *, exc=None, retry_after=None, delay=None) -> None:
    """Record one attempt. The claim that recorded it did not crash; it is the one (1) working on
    whatever the run does next, until the run lets its lease go (``retry_later``: 0)."""
    run.claims = 1
    lag = start_lag(run, started)
    run.next_attempt_at = None  # consumed: only the attempt it was due for measures against it
    RunAttempt.objects.create(
        run=run,
        step=step,
        number=run.attempt + 1,
        started_at=started,
        finished_at=timezone.now(),
        outcome=outcome,
        error_class=type(exc).__name__ if exc else "",
        error_detail=str(exc) if exc else "",
        retry_after_seconds=retry_after,
        scheduled_delay_seconds=delay,
        start_lag_seconds=lag,
        worker=worker,
    )


def start_lag(run: SyncRun, started) -> float | None:
    """How late a retry started after its due time (``next_attempt_at``); None for a first attempt.

    Negative would mean early: the claim sends an early message back (``EARLY_TOLERANCE``).
    """
    if not run.attempt or run.next_attempt_at is None:
        return None
    return (started - run.next_attempt_at).total_seconds()


def _end(run: SyncRun, status: str, event_status: str | None) -> None:
    """Finish the run and wake the next run of the same record."""
    run.status = status
    run.finished_at = timezone.now()
    run.lease_owner, run.lease_expires_at, run.next_attempt_at = "", None, None
    run.claims = 0  # a re-driven run starts with a fresh count
    default = {SyncRun.Status.DONE: ChangeEvent.Status.SYNCED}.get(status, status)
    _event_status(run, event_status or default)
    lock_record(run.record_key)
    following = (
        SyncRun.objects.filter(record_key=run.record_key, pk__gt=run.pk)
        .exclude(status__in=TERMINAL)
        .order_by("pk")
        .first()
    )
    if following:
        dispatch_run(following.pk)


def _dead_letter(run, cause, error, *, payload, rule="", path="", detail=None) -> None:
    history = [
        {
            "step": a.step,
            "number": a.number,
            "started_at": a.started_at.isoformat(),
            "outcome": a.outcome,
            "error_class": a.error_class,
            "error": a.error_detail,
            "retry_after_seconds": a.retry_after_seconds,
            "scheduled_delay_seconds": a.scheduled_delay_seconds,
        }
        for a in run.attempts.order_by("started_at", "pk")
    ]
    if payload is None:
        payload = run.checkpoint.get("source_payload")
    # A re-driven run that fails again reopens its letter (one per run), history and all.
    DeadLetter.objects.update_or_create(
        run=run,
        defaults={
            "cause": cause,
            "step": run.step,
            "error": f"{run.record_key}: {error}",
            "rule": rule,
            "path": path,
            "detail": {"attempts": history, "error_detail": detail if _jsonable(detail) else str(detail)},
            "payload": payload,
            "status": DeadLetter.Status.OPEN,
            "closed_at": None,
        },
    )
    # Staff hear of it in the next digest (conflictdesk.desk.digest), never one mail per letter.
    _end(run, SyncRun.Status.DEAD_LETTER, ChangeEvent.Status.DEAD_LETTER)


def _event_status(run: SyncRun, status: str) -> None:
    if run.change_event_id:
        ChangeEvent.objects.filter(pk=run.change_event_id).update(status=status)


def audit_run(run: SyncRun, action: str, outcome: str, **fields) -> None:
    """Append an event about ``run`` to its record's chain, in the caller's transaction."""
    pending, run.pending_audit = run.pending_audit, None
    if pending:  # events the plan's commit kept for the write's (``commits``): appended first, in order
        flush(run, pending)
    audit = get_services().audit
    event = run.change_event
    # A resolution run has no event: its chain is the site's, where the record lives.
    source = chain_source(event.source) if event else (f"site:{run.site.name}" if run.site_id else "central")
    base = {
        "partition": record_partition(source, run.record_key),
        "source": event.source if event else "",
        "source_object": event.source_object_id if event else "",
        "source_version": event.source_version if event else "",
        "record_key": run.record_key,
        "run_id": run.pk,
        "patient_link_id": run.checkpoint.get("patient_link_id"),
    }
    audit.record_event(action=action, outcome=outcome, actor=audit.system_actor(), **{**base, **fields})


def _jsonable(value) -> bool:
    return value is None or isinstance(value, (dict, list, str, int, bool))


def flush(run: SyncRun, events: list[dict]) -> None:
    """Append the events to the run's chain: one batch, last in the transaction (the head lock is brief)."""
    if not events:
        return
    ev = run.change_event
    source = ev.source if ev else (f"site:{run.site.name}" if run.site_id else "central")
    record_events([live_event(e) for e in events], partition=record_partition(source, run.record_key))


def live_event(e: dict) -> dict:
    """An event kept on the run as JSON (``pending_audit``) with its time read back."""
    at = e.get("occurred_at")
    return {**e, "occurred_at": datetime.fromisoformat(at)} if isinstance(at, str) else e
