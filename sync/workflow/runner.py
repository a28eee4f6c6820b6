"""Drive one SyncRun from its checkpointed step to the end (or to a wait).

``advance`` is what a Celery task calls with a run id. It is safe to call any
number of times, from any worker, at any moment: the claim decides who works,
and a step that crashed half-way simply runs again (every step is idempotent).

The run commits at its external effects, not after every step (invariant 6):

1. the claim: the lease (and the claim count the poison-run rule reads) is
   durable before any work, so a worker that dies in any step is counted;
2. the plan, before the write: detect (what was read, its hash, the patient
   link), the template and FHIR validation, the transform and the conflict
   decision, committed together (``SEGMENTS``);
3. after the write: what was written, the read-back, the RecordLink and the
   acknowledgement, with every audit event of the run appended in one batch.

The steps between commits are reads and pure functions of what was read; after
a crash they run again from the last commit and produce the same bytes (the
plan's ``written_hash`` is checked on replay). Each step keeps its RunAttempt
row, its timing and its audit event. A failure commits the steps finished
before it, so the run resumes at the step that failed, with the exact retry
schedule of that step.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.db import DatabaseError, transaction
from django.utils import timezone

from sync.clients.errors import InvalidRequest, NotFound, PreconditionFailed, TransientError
from sync.mapping.errors import MappingError, UnknownArchetype, UnmappedTemplate
from sync.models import ChangeEvent, DeadLetter, Direction, Step, SyncRun

from . import breaker, commits, forward, heartbeat, resolution, reverse, state
from .checkpoints import ForwardCheckpoint, Memory, ResolutionCheckpoint, ReverseCheckpoint
from .dispatch import dispatch_run
from .guard import FidelityFailed
from .result import ValidationFailed
from .services import Services, SiteConfigError, get_services

log = logging.getLogger(__name__)

# The step that closes each segment: the run commits after it (and after any step that ends the
# run, asks to commit, or fails). The claim is the first commit; these are the other two.
SEGMENT_ENDS = frozenset({Step.CHECK_CONFLICT, Step.ACKNOWLEDGE})


@dataclass
class Context:
    """What a step sees: the run as committed, its checkpoint as it stands, this pass's memory, the services."""

    run: SyncRun
    services: Services
    cp: Any  # ForwardCheckpoint, ReverseCheckpoint or ResolutionCheckpoint
    memory: Memory

    @property
    def checkpoint(self):
        return self.cp

    @property
    def event(self) -> ChangeEvent | None:
        return self.run.change_event


def advance(run_id: int, worker: str) -> str:
    """Run steps until the run ends, waits, or another worker owns it; return its status."""
    try:
        claim, run = state.claim_run(run_id, worker)
    except DatabaseError:  # e.g. a deadlock victim: the claim rolled back, ask again shortly
        log.warning("run %s: claim failed, re-sent", run_id, exc_info=True)
        dispatch_run(run_id, countdown=1.0)
        return "claim_failed"
    if claim != state.CLAIMED:
        return claim
    with heartbeat.holding(run_id, worker):  # the lease lives as long as this process does
        return _run(run, worker, get_services())


def _run(run: SyncRun, worker: str, services: Services) -> str:
    """From the claimed run (as its claim committed it) until it ends or waits."""
    run_id, cp, memory = run.pk, checkpoint_of(run), Memory()
    while True:
        status, reload = run_segment(run, cp, memory, services, worker)
        if status != SyncRun.Status.RUNNING:
            return status
        if reload:  # a failure path rewrote the run (e.g. back to the conflict check)
            run, cp = load(run_id)


def load(run_id: int):
    run = SyncRun.objects.select_related("change_event", "site", "resolution").get(pk=run_id)
    return run, checkpoint_of(run)


def checkpoint_of(run: SyncRun):
    """The run's typed checkpoint: one dataclass per direction."""
    if run.resolution_id:
        return ResolutionCheckpoint.load(run.checkpoint)
    if run.direction == Direction.TO_FHIR:
        return ForwardCheckpoint.load(run.checkpoint)
    return ReverseCheckpoint.load(run.checkpoint)


def run_segment(run: SyncRun, cp, memory: Memory, services: Services, worker: str) -> tuple[str, bool]:
    """Run steps from ``run.step`` to the next commit; (status, whether the run must be re-read)."""
    steps, step, done = steps_for(run), run.step, []
    while True:
        started = timezone.now()
        try:
            result = steps[step](Context(run, services, cp, memory))
        except Exception as exc:  # every failure is classified and recorded, none escapes
            down = breaker.after_transient(run, exc, services) if isinstance(exc, TransientError) else None
            status = _fail(run, worker, done, cp, step, exc, started, down)
            log.info("run %s step %s -> %s", run.pk, step, status)
            return status, True
        done.append(commits.Finished(step, started, timezone.now(), result))
        cp.update(result.checkpoint)
        if result.terminal or result.commit or step in SEGMENT_ENDS:
            try:
                status = commits.commit(run, worker, done, cp, defer_audit=step == Step.CHECK_CONFLICT)
            except Exception as exc:  # committing can fail too (a value the database refuses): same handling
                run, cp = load(run.pk)
                status = _fail(run, worker, [], cp, run.step, exc, done[0].started)
                return status, True
            log.info("run %s steps %s..%s -> %s", run.pk, done[0].step, step, status)
            return status, False
        step = result.next_step


def steps_for(run: SyncRun) -> dict[str, Any]:
    if run.resolution_id:
        return resolution.STEPS
    return forward.STEPS if run.direction == Direction.TO_FHIR else reverse.STEPS


def _fail(run: SyncRun, worker: str, done, cp, step: str, exc: Exception, started, down: str | None = None) -> str:
    """Commit what finished before ``step`` failed, then record the failure: one transaction.

    ``down`` is the destination whose outage explains a transient failure (``breaker``): the run waits for it.
    """
    with transaction.atomic():
        if not commits.commit_progress(run, worker, done, cp, step):
            return state.LEASE_LOST
        if down:
            return state.wait_for_destination(run.pk, worker, exc, started, down)
        return _failed(run, worker, step, exc, started)


def _failed(run: SyncRun, worker: str, step: str, exc: Exception, started) -> str:
    if isinstance(exc, PreconditionFailed) and step == Step.WRITE:
        return state.recheck_conflict(run.pk, worker, exc, started)
    cause = _dead_letter_cause(exc)
    if cause == DeadLetter.Cause.FIDELITY:
        return _blocked_by_guard(run, worker, exc, started)
    if cause:
        return state.dead_letter_now(run.pk, worker, exc, started, cause=cause)
    if not isinstance(exc, TransientError):
        # An unexpected error (a bug, a stale read): retried on the same schedule,
        # so it ends in a dead letter with its history rather than vanishing.
        log.exception("run %s step %s: unexpected %s", run.pk, step, type(exc).__name__)
    return state.retry_later(run.pk, worker, exc, started)


def _blocked_by_guard(run: SyncRun, worker: str, exc: FidelityFailed, started) -> str:
    """The dead letter of a run the fidelity guard stopped, with its guard.checked event in the same transaction."""
    with transaction.atomic():
        status = state.dead_letter_now(run.pk, worker, exc, started, cause=DeadLetter.Cause.FIDELITY)
        if status != state.LEASE_LOST:
            state.audit_run(run, "guard.checked", "blocked", detail={**exc.counts})
    return status


def _dead_letter_cause(exc: Exception) -> str | None:
    if isinstance(exc, FidelityFailed):
        return DeadLetter.Cause.FIDELITY
    if isinstance(exc, (UnknownArchetype, UnmappedTemplate)):
        return DeadLetter.Cause.UNMAPPED
    if isinstance(exc, (MappingError, ValidationFailed, SiteConfigError)):
        return DeadLetter.Cause.VALIDATION
    if isinstance(exc, (InvalidRequest, NotFound, PreconditionFailed)):
        return DeadLetter.Cause.REJECTED
    return None
