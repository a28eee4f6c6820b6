"""Drive one SyncRun from its checkpointed step to the end (or to a wait).

``advance`` is what a Celery task calls with a run id. It is safe to call any
number of times, from any worker, at any moment: the claim decides who works,
each step's outcome commits in one transaction, and a step that crashed
half-way simply runs again (every step is idempotent).
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

from . import forward, resolution, reverse, state
from .dispatch import dispatch_run
from .guard import FidelityFailed
from .result import ValidationFailed
from .services import Services, SiteConfigError, get_services

log = logging.getLogger(__name__)


@dataclass
class Context:
    """What a step sees: the run as committed, its checkpoint, and the services."""

    run: SyncRun
    services: Services

    @property
    def checkpoint(self) -> dict[str, Any]:
        return self.run.checkpoint

    @property
    def event(self) -> ChangeEvent | None:
        return self.run.change_event


def advance(run_id: int, worker: str) -> str:
    """Run steps until the run ends, waits, or another worker owns it; return its status."""
    try:
        claim = state.claim_run(run_id, worker)
    except DatabaseError:  # e.g. a deadlock victim: the claim rolled back, ask again shortly
        log.warning("run %s: claim failed, re-sent", run_id, exc_info=True)
        dispatch_run(run_id, countdown=1.0)
        return "claim_failed"
    if claim != state.CLAIMED:
        return claim
    services = get_services()
    while True:
        run = SyncRun.objects.select_related("change_event", "site", "resolution").get(pk=run_id)
        started = timezone.now()
        try:
            result = steps_for(run)[run.step](Context(run, services))
            # Committing the step can fail too (a value the database refuses): same handling.
            status = state.finish_step(run_id, worker, result, started, record_key=run.record_key)
        except Exception as exc:  # every failure is classified and recorded, none escapes
            status = _fail(run, worker, exc, started)
        log.info("run %s step %s -> %s", run_id, run.step, status)
        if status != SyncRun.Status.RUNNING:
            return status


def steps_for(run: SyncRun) -> dict[str, Any]:
    if run.resolution_id:
        return resolution.STEPS
    return forward.STEPS if run.direction == Direction.TO_FHIR else reverse.STEPS


def _fail(run: SyncRun, worker: str, exc: Exception, started) -> str:
    if isinstance(exc, PreconditionFailed) and run.step == Step.WRITE:
        return state.recheck_conflict(run.pk, worker, exc, started)
    cause = _dead_letter_cause(exc)
    if cause == DeadLetter.Cause.FIDELITY:
        return _blocked_by_guard(run, worker, exc, started)
    if cause:
        return state.dead_letter_now(run.pk, worker, exc, started, cause=cause)
    if not isinstance(exc, TransientError):
        # An unexpected error (a bug, a stale read): retried on the same schedule,
        # so it ends in a dead letter with its history rather than vanishing.
        log.exception("run %s step %s: unexpected %s", run.pk, run.step, type(exc).__name__)
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
