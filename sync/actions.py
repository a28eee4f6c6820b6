"""Operator and desk actions on the engine's state, each with its audit event in the same transaction."""
from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from audit.record import record_event
from sync.models import DeadLetter, Step, SyncRun
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
        run.status, run.attempt, run.finished_at, run.next_attempt_at = SyncRun.Status.PENDING, 0, None, None
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
