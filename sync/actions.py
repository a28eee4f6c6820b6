"""Operator and desk actions on the engine's state, each with its audit event in the same transaction."""
from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from audit.partitions import record_partition
from audit.record import record_event
from sync.models import DeadLetter, Direction, Resolution, Step, SyncRun
from sync.workflow.dispatch import dispatch_run

# Causes a re-drive starts over from detection for: the content (or the
# mapping) had to change, so nothing computed before can be trusted.
_FROM_START = {DeadLetter.Cause.VALIDATION, DeadLetter.Cause.UNMAPPED, DeadLetter.Cause.REJECTED, DeadLetter.Cause.FIDELITY}


def do_redrive_dead_letter(letter: DeadLetter, *, actor: str) -> SyncRun:
    """Put a dead-lettered run back in the workflow (same run, history kept)."""
    with transaction.atomic():
        letter = DeadLetter.objects.select_for_update().get(pk=letter.pk)
        run = SyncRun.objects.select_for_update().get(pk=letter.run_id)
        if letter.status != DeadLetter.Status.OPEN:
            raise ValueError(f"dead letter {letter.pk} is {letter.status}, not open")
        letter.status, letter.closed_at, letter.close_reason = DeadLetter.Status.REDRIVEN, timezone.now(), "re-driven"
        letter.save()
        if letter.cause in _FROM_START:
            run.step, run.checkpoint = Step.DETECT, {}
        else:  # same step, fresh budget: a stale-write count from before would end it at once
            run.checkpoint = {k: v for k, v in run.checkpoint.items() if k != "stale_rechecks"}
        run.status, run.attempt, run.finished_at, run.next_attempt_at = SyncRun.Status.PENDING, 0, None, None
        run.lease_owner, run.lease_expires_at = "", None
        run.save()
        if run.change_event_id:
            run.change_event.status = "pending"
            run.change_event.save(update_fields=["status"])
        dispatch_run(run.pk)
        record_event(
            action="sync.redrive",
            outcome="ok",
            actor=actor,
            partition="desk",
            run_id=run.pk,
            record_key=run.record_key,
            detail={"dead_letter_id": letter.pk, "cause": letter.cause, "from_step": run.step},
        )
    return run


def do_start_resolution_run(resolution: Resolution, *, actor: str) -> SyncRun:
    """Queue a clinician's Resolution as a new SyncRun on its record (one run per resolution)."""
    with transaction.atomic():
        resolution = Resolution.objects.select_related("conflict__run", "conflict__record_link__site").get(pk=resolution.pk)
        conflict = resolution.conflict
        run, created = SyncRun.objects.get_or_create(
            resolution=resolution,
            defaults={
                "direction": conflict.run.direction or Direction.TO_FHIR,
                "site": conflict.record_link.site,
                # Same key as the conflict's run: serialised with every other change to the record.
                "record_key": conflict.run.record_key,
            },
        )
        if created:
            dispatch_run(run.pk)
            record_event(
                action="sync.resolution.start",
                outcome="ok",
                actor=actor,
                partition=record_partition(f"site:{conflict.record_link.site.name}", run.record_key),
                run_id=run.pk,
                record_key=run.record_key,
                patient_link_id=conflict.record_link.patient_link_id,
                detail={"resolution_id": resolution.pk, "conflict_id": conflict.pk, "choice": resolution.choice},
            )
    return run


def start_resolution_run(resolution: Resolution) -> SyncRun:
    """The desk's entry point (``conflictdesk.desk.engine``): the clinician who decided is the actor."""
    user = resolution.decided_by
    return do_start_resolution_run(resolution, actor=(user.email or user.get_username()))
