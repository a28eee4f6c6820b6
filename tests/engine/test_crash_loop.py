"""Poison runs: a run whose step kills its worker is claimed again after its lease, but not forever.

The worker's death is a BaseException out of the step (nothing the runner can catch or
record, like a SIGKILL): the claim committed, no attempt did. The real thing (a worker
SIGKILLed three times in the same step) is in tests/integration/engine_faults.
"""
from datetime import timedelta

import pytest
from django.utils import timezone

from sync.actions import do_redrive_dead_letter
from sync.models import DeadLetter, RunAttempt, SyncRun
from sync.workflow import state

from .fakes import transient


class WorkerDied(BaseException):
    """What the runner sees of a SIGKILL: nothing; here, an exception it must not catch."""


def _lease_lapses(run):
    SyncRun.objects.filter(pk=run.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))


def _crash(engine, run, worker):
    engine.fhir.faults.add("transaction", WorkerDied())
    with pytest.raises(WorkerDied):
        engine.drive(run, worker)
    run.refresh_from_db()
    _lease_lapses(run)


def test_a_run_claimed_three_times_without_finishing_a_step_dead_letters_as_crash_loop(engine, settings):
    settings.CONFLICTDESK_CRASH_LOOP_CLAIMS = 3
    run = engine.commit(37.1)
    for n, worker in enumerate(["w1", "w2", "w3"], start=1):  # the first claim got through five steps first
        _crash(engine, run, worker)
        assert (run.status, run.step, run.claims) == (SyncRun.Status.RUNNING, "write", n)
    assert engine.drive(run, "w4") == SyncRun.Status.DEAD_LETTER
    letter = DeadLetter.objects.get(run=run)
    assert (letter.cause, letter.step) == (DeadLetter.Cause.CRASH_LOOP, "write")
    assert letter.detail["error_detail"]["claims"] == 3
    last = RunAttempt.objects.filter(run=run).order_by("pk").last()
    assert (last.step, last.outcome, last.error_class) == ("write", "dead_letter", "CrashLoop")
    assert engine.fhir.transactions == []  # nothing was written by the crashing step
    # Re-driven (the cause fixed), it gets a fresh count and syncs.
    do_redrive_dead_letter(letter, acting_user=None)
    run.refresh_from_db()
    assert run.claims == 0
    assert engine.drive(run, "w5") == SyncRun.Status.DONE


def test_the_last_recorded_error_comes_with_the_crash_loop(engine, settings):
    settings.CONFLICTDESK_CRASH_LOOP_CLAIMS = 2
    engine.fhir.faults.add("transaction", transient())
    run = engine.commit(37.1)
    assert engine.drive(run) == SyncRun.Status.RETRY_WAIT
    SyncRun.objects.filter(pk=run.pk).update(next_attempt_at=timezone.now())
    _crash(engine, run, "w1")
    _crash(engine, run, "w2")
    assert engine.drive(run, "w3") == SyncRun.Status.DEAD_LETTER
    detail = DeadLetter.objects.get(run=run).detail["error_detail"]
    assert (detail["claims"], detail["last_error_class"]) == (2, "TransientError")


def test_a_finished_step_resets_the_claims(engine, settings):
    """Crashes in different steps, each after progress, are not a loop: the run syncs."""
    settings.CONFLICTDESK_CRASH_LOOP_CLAIMS = 2
    run = engine.commit(37.1)
    _crash(engine, run, "w1")  # in the write, after five steps finished
    assert run.claims == 1
    assert engine.drive(run, "w2") == SyncRun.Status.DONE


def test_a_lease_held_elsewhere_or_an_early_hint_is_not_a_claim(engine):
    engine.fhir.faults.add("transaction", transient())
    run = engine.commit(37.1)
    assert engine.drive(run) == SyncRun.Status.RETRY_WAIT
    run.refresh_from_db()
    assert run.claims == 0  # the attempt was recorded and the lease let go
    assert state.claim_run(run.pk, "w2")[0] == SyncRun.Status.RETRY_WAIT  # not due yet
    run.refresh_from_db()
    assert run.claims == 0


def test_a_retry_records_how_late_it_started_and_never_starts_early(engine):
    engine.fhir.faults.add("transaction", transient(), times=2)
    run = engine.commit(37.1)
    assert engine.drive(run) == SyncRun.Status.RETRY_WAIT
    first = RunAttempt.objects.filter(run=run).order_by("pk").last()
    assert first.start_lag_seconds is None  # a first attempt has no due time
    late = timezone.now() - timedelta(seconds=0.3)
    SyncRun.objects.filter(pk=run.pk).update(next_attempt_at=late)
    assert engine.drive(run) == SyncRun.Status.RETRY_WAIT
    second = RunAttempt.objects.filter(run=run).order_by("pk").last()
    assert second.start_lag_seconds >= 0.3
    assert abs((second.started_at - late).total_seconds() - second.start_lag_seconds) < 1e-6
    # A hint a hair early (within the tolerance) waits in the claim: it starts at its due time, not before.
    due = timezone.now() + timedelta(milliseconds=40)
    SyncRun.objects.filter(pk=run.pk).update(next_attempt_at=due)
    assert engine.drive(run) == SyncRun.Status.DONE
    third = RunAttempt.objects.filter(run=run, step="write").order_by("pk").last()
    assert third.started_at >= due and third.start_lag_seconds >= 0
    after = RunAttempt.objects.filter(run=run, step="audit").get()
    assert after.start_lag_seconds is None  # the steps after the retried one are not retries


@pytest.mark.django_db
def test_a_message_for_a_run_this_database_does_not_hold_is_dropped_not_raised(caplog):
    """A broker queue outliving its database (a demo reset): each message is one warning, no traceback, no retry."""
    from sync.workflow.runner import advance
    missing = (SyncRun.objects.order_by("-pk").values_list("pk", flat=True).first() or 0) + 1000
    with caplog.at_level("WARNING", logger="sync.workflow.state"):
        assert advance(missing, "w1") == state.GONE
    assert [r.levelname for r in caplog.records if str(missing) in r.getMessage()] == ["WARNING"]
    assert not any(r.exc_info for r in caplog.records)
