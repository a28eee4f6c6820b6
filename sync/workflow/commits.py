"""A run's commits: the steps a worker finished since the last one, in one transaction.

The runner runs a segment of steps (``runner.SEGMENTS``) in memory and commits
them together: each step keeps its RunAttempt row (with its own start and end)
and its audit event, the effects of every step run in order, and the run moves
to its next step or ends. The transaction first checks, under the record's
advisory lock and the run's row lock, that this worker still holds the lease;
it reads only the lease columns, never the checkpoint again.

Audit events: the plan's commit (before the write) keeps its events on the run
(``SyncRun.pending_audit``, a column of its own, so the checkpoint is not
rewritten to drop them); the next commit appends them first, then its own, in
one ``record_events`` batch (one head lock, one INSERT), last in the
transaction. Every event keeps the time its step finished.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from sync.models import ChangeEvent, RunAttempt, SyncRun

from . import state
from .dispatch import dispatch_run
from .guard import outcome
from .result import StepResult
from .services import get_services


@dataclass
class Finished:
    """One step the worker finished and has not committed yet."""

    step: str
    started: datetime
    finished: datetime
    result: StepResult


def commit(run: SyncRun, worker: str, done: list[Finished], cp, *, defer_audit: bool = False) -> str:
    """Commit ``done`` (steps in order, the first being ``run.step``); the run's status afterwards."""
    last = done[-1].result
    with transaction.atomic():
        if not owns(run, worker):
            return state.LEASE_LOST
        events = apply(run, worker, done, cp)
        if last.terminal:
            run.step = done[-1].step
            end(run, last.terminal, last.event_status)
        else:
            run.step = last.next_step
            state._renew(run, worker, timezone.now())
        keep = defer_audit and not last.terminal
        events = take_pending(run) + events
        if keep:
            run.pending_audit, events = [_serial(e) for e in events], []
        # A finished run's checkpoint is not rewritten: what it wrote is on the RecordLink and in the audit.
        save(run, cp, checkpoint=keep or last.terminal != SyncRun.Status.DONE)
        state.flush(run, events)
        return run.status


def commit_progress(run: SyncRun, worker: str, done: list[Finished], cp, failed_step: str) -> bool:
    """Before a failure is recorded: commit the steps that finished before it (False: lease lost).

    Runs inside the caller's transaction; the run stops at ``failed_step``, and the
    events so far (pending ones too) are appended now, before the failure's own.
    """
    if not owns(run, worker):
        return False
    events = take_pending(run) + (apply(run, worker, done, cp) if done else [])
    if done:
        run.step = failed_step
        state._renew(run, worker, timezone.now())
    save(run, cp, checkpoint=True)
    state.flush(run, events)
    return True


_OWNS = (
    "WITH record AS (SELECT pg_advisory_xact_lock(%s)) "
    f"SELECT r.status, r.lease_owner FROM record, {SyncRun._meta.db_table} r WHERE r.id = %s FOR UPDATE OF r"
)


def owns(run: SyncRun, worker: str) -> bool:
    """The record's lock, then the run's row (the order every transition takes them in), in one
    round trip: the lease is still this worker's. Only the lease columns are read."""
    with connection.cursor() as cursor:
        cursor.execute(_OWNS, [zlib.crc32(run.record_key.encode()), run.pk])
        row = cursor.fetchone()
    return row == (SyncRun.Status.RUNNING, worker)


def apply(run: SyncRun, worker: str, done: list[Finished], cp) -> list[dict]:
    """Effects, attempt rows (one INSERT) and the steps' audit events, in step order."""
    events: list[dict] = []
    run._audit_events, run._audit_cp = events, cp  # effects add theirs (``buffer``) before their step's own
    try:
        for item in done:
            run._audit_time = item.finished
            if item.result.effects:
                item.result.effects(run)
            events.append(event(run, cp, f"sync.{item.step}", item.result.outcome, occurred_at=item.finished,
                                **item.result.audit))
    finally:
        del run._audit_events, run._audit_cp
    _attempts(run, done, worker)
    return events


def buffer(run: SyncRun, action: str, outcome: str, **fields: Any) -> None:
    """An effect's own audit event (the guard's), appended with its step's in the same batch."""
    fields.setdefault("occurred_at", getattr(run, "_audit_time", None) or timezone.now())
    run._audit_events.append(event(run, run._audit_cp, action, outcome, **fields))


def buffer_guard(run: SyncRun, guarded) -> None:
    """The fidelity guard's ``guard.checked`` events (``guard.Guarded``), in the commit's batch."""
    for check, mode in guarded.checks if guarded else []:
        buffer(run, "guard.checked", outcome(check, mode),
               detail={**check.counts(), "site_id": check.site_id, "direction": check.direction, "mode": mode})


def event(run: SyncRun, cp, action: str, outcome: str, **fields: Any) -> dict:
    """One audit event about ``run`` (the fields of ``state.audit_run``), not yet appended."""
    ev = run.change_event
    audit = get_services().audit
    return {
        "action": action,
        "outcome": outcome,
        "actor": audit.system_actor(),
        "source": ev.source if ev else "",
        "source_object": ev.source_object_id if ev else "",
        "source_version": ev.source_version if ev else "",
        "record_key": run.record_key,
        "run_id": run.pk,
        "patient_link_id": cp.get("patient_link_id"),
        **fields,
    }


def take_pending(run: SyncRun) -> list[dict]:
    """The events an earlier commit kept on the run (cleared: the caller appends them)."""
    pending, run.pending_audit = run.pending_audit or [], None
    return [state.live_event(e) for e in pending]


def dump(cp) -> dict:
    return dict(cp) if isinstance(cp, dict) else cp.dump()


def end(run: SyncRun, status: str, event_status: str | None) -> None:
    """``state._end`` without taking the record's lock again (``owns`` holds it): finish, wake the next run."""
    run.status = status
    run.finished_at = timezone.now()
    run.lease_owner, run.lease_expires_at, run.next_attempt_at = "", None, None
    run.claims = 0  # a re-driven run starts with a fresh count
    default = {SyncRun.Status.DONE: ChangeEvent.Status.SYNCED}.get(status, status)
    state._event_status(run, event_status or default)
    following = (
        SyncRun.objects.filter(record_key=run.record_key, pk__gt=run.pk)
        .exclude(status__in=state.TERMINAL)
        .order_by("pk")
        .values_list("pk", flat=True)
        .first()
    )
    if following:
        dispatch_run(following)


def save(run: SyncRun, cp, *, checkpoint: bool) -> None:
    """Write what a commit changes on the run (the checkpoint only when asked)."""
    fields = dict(step=run.step, status=run.status, attempt=run.attempt, claims=run.claims,
                  next_attempt_at=run.next_attempt_at, lease_owner=run.lease_owner,
                  lease_expires_at=run.lease_expires_at, finished_at=run.finished_at, losses=run.losses,
                  pending_audit=run.pending_audit, updated_at=timezone.now())
    if checkpoint:
        run.checkpoint = fields["checkpoint"] = dump(cp)
    SyncRun.objects.filter(pk=run.pk).update(**fields)


def _attempts(run: SyncRun, done: list[Finished], worker: str) -> None:
    """One row per finished step; the first continues the committed step's count (its retries)."""
    if not done:
        return
    lag = state.start_lag(run, done[0].started)
    rows = []
    for i, item in enumerate(done):
        rows.append(RunAttempt(
            run=run, step=item.step, number=(run.attempt + 1) if i == 0 else 1, started_at=item.started,
            finished_at=item.finished, outcome=item.result.outcome, worker=worker,
            **({"start_lag_seconds": lag} if i == 0 and lag is not None else {}),
        ))
    RunAttempt.objects.bulk_create(rows)
    run.claims = 1  # as ``state._attempt``: the claim that recorded them did not crash; it is the one working
    run.next_attempt_at = None  # consumed by the attempt it was due for
    run.attempt = 0


def _serial(e: dict) -> dict:
    return {**e, "occurred_at": e["occurred_at"].isoformat()} if isinstance(e.get("occurred_at"), datetime) else e
