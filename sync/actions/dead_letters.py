"""Dead letters: back into the workflow after a fix, or closed for good with a reason."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from audit.chain import sha256_hex
from audit.record import record_event
from sync.models import DeadLetter, Step, SyncRun
from sync.workflow.dispatch import dispatch_run

from .actor import actor_of
from .errors import DeadLetterRefused

# Causes a re-drive starts over from detection for: the content (or the
# mapping) had to change, so nothing computed before can be trusted.
_FROM_START = {DeadLetter.Cause.VALIDATION, DeadLetter.Cause.UNMAPPED, DeadLetter.Cause.REJECTED,
               DeadLetter.Cause.FIDELITY}
# One bulk re-drive is one transaction: past this many letters, narrow the filter (or run it twice).
MAX_BULK = 500


def do_redrive_dead_letter(letter: DeadLetter, *, acting_user) -> SyncRun:
    """Put a dead-lettered run back in the workflow (same run, history kept)."""
    with transaction.atomic():
        letter = _open_letter(letter)
        run = _redrive(letter, acting_user)
        record_event(
            action="sync.redrive", outcome="ok", actor=actor_of(acting_user), run_id=run.pk, record_key=run.record_key,
            detail={"dead_letter_id": letter.pk, "cause": letter.cause, "from_step": run.step},
        )
    return run


@dataclass(frozen=True)
class RedriveFilter:
    """Which open dead letters a bulk re-drive takes: all of these that are given (``rule``: a prefix)."""

    site: str = ""  # a site's name, or "central" for central -> site runs
    rule: str = ""
    cause: str = ""
    since: datetime | None = None  # dead-lettered at or after
    until: datetime | None = None  # dead-lettered before

    def matching(self, status: str = DeadLetter.Status.OPEN) -> "QuerySet[DeadLetter]":
        """The letters it names, oldest first (``status``: open by default, "all" for any)."""
        letters = DeadLetter.objects.all() if status == "all" else DeadLetter.objects.filter(status=status)
        if self.site == "central":
            letters = letters.filter(run__site__isnull=True)
        elif self.site:
            letters = letters.filter(run__site__name=self.site)
        if self.rule:
            letters = letters.filter(rule__startswith=self.rule)
        if self.cause:
            letters = letters.filter(cause=self.cause)
        if self.since:
            letters = letters.filter(created_at__gte=self.since)
        if self.until:
            letters = letters.filter(created_at__lt=self.until)
        return letters.order_by("created_at", "pk")

    def described(self) -> dict:
        """The filter as the audit event carries it (codes and ISO times only)."""
        return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in asdict(self).items() if v}


def do_redrive_dead_letters(criteria: RedriveFilter, *, acting_user) -> list[SyncRun]:
    """Re-drive every open dead letter the filter matches, as one action with one audit event listing the runs."""
    if criteria.since and criteria.until and criteria.since >= criteria.until:
        raise DeadLetterRefused.Invalid("the time range ends before it starts", field="until")
    if criteria.cause and criteria.cause not in DeadLetter.Cause.values:
        raise DeadLetterRefused.Invalid(f"unknown cause {criteria.cause!r}", field="cause")
    with transaction.atomic():
        letters = list(criteria.matching().select_for_update(of=("self",)).select_related("run")[:MAX_BULK + 1])
        if not letters:
            raise DeadLetterRefused.NoneOpen("no open dead letter matches this filter")
        if len(letters) > MAX_BULK:
            raise DeadLetterRefused.TooMany(f"more than {MAX_BULK} open dead letters match; narrow the filter")
        runs = [_redrive(letter, acting_user) for letter in letters]
        record_event(
            action="sync.redrive.bulk", outcome="ok", actor=actor_of(acting_user),
            detail={"filter": criteria.described(), "count": len(runs),
                    "dead_letter_ids": [letter.pk for letter in letters], "run_ids": [run.pk for run in runs]},
        )
    return runs


def _redrive(letter: DeadLetter, acting_user) -> SyncRun:
    """Close a locked open letter as re-driven and put its run back in the workflow."""
    run = SyncRun.objects.select_for_update().get(pk=letter.run_id)
    letter.status, letter.closed_at, letter.close_reason = DeadLetter.Status.REDRIVEN, timezone.now(), "re-driven"
    letter.closed_by = acting_user
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
    return run


def do_discard_dead_letter(letter: DeadLetter, *, acting_user, reason: str) -> DeadLetter:
    """Close a dead letter for good; the run stays dead-lettered, so reconcile still accounts for it.

    The reason stays on the row; the audit chain carries its hash, never the
    text, because a reason may quote clinical content.
    """
    reason = reason.strip()
    if not reason:
        raise DeadLetterRefused.Invalid("a reason is required", field="reason")
    with transaction.atomic():
        letter = _open_letter(letter)
        letter.status, letter.closed_at, letter.closed_by = DeadLetter.Status.DISCARDED, timezone.now(), acting_user
        letter.close_reason = reason
        letter.save(update_fields=["status", "closed_at", "closed_by", "close_reason"])
        record_event(
            action="desk.deadletter.discard", outcome="ok", actor=actor_of(acting_user),
            record_key=letter.run.record_key, run_id=letter.run_id,
            detail={"dead_letter_id": letter.pk, "cause": letter.cause, "reason_sha256": sha256_hex(reason)},
        )
    return letter


def _open_letter(letter: DeadLetter) -> DeadLetter:
    """The letter, locked, if it is still open."""
    letter = DeadLetter.objects.select_for_update(of=("self",)).select_related("run").get(pk=letter.pk)
    if letter.status != DeadLetter.Status.OPEN:
        raise DeadLetterRefused.Closed(f"dead letter {letter.pk} is {letter.status}, not open")
    return letter
