"""The retry schedule is exact (1, 2, 4, 8, 16, 32 s, no jitter), honours a longer Retry-After,
and after the 7th failed attempt the run is dead-lettered with its whole history."""
from datetime import timedelta

from django.core import mail
from django.utils import timezone

from sync.models import DeadLetter, RunAttempt, SyncRun

from .fakes import transient


def _due_now(run):
    SyncRun.objects.filter(pk=run.pk).update(next_attempt_at=timezone.now())


def test_it_retries_on_the_exact_schedule_then_dead_letters_with_history(engine):
    engine.fhir.faults.add("transaction", transient(), times=7)
    run = engine.commit(37.1)
    countdowns = []
    for _ in range(6):
        assert engine.drive(run) == SyncRun.Status.RETRY_WAIT
        countdowns.append(engine.sent[-1][1])
        delay = (run.next_attempt_at - run.attempts.order_by("pk").last().finished_at).total_seconds()
        assert abs(delay - countdowns[-1]) < 0.05
        _due_now(run)
    assert countdowns == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0]
    assert engine.drive(run) == SyncRun.Status.DEAD_LETTER
    letter = DeadLetter.objects.get(run=run)
    assert letter.cause == DeadLetter.Cause.TRANSIENT_EXHAUSTED
    tries = [a for a in letter.detail["attempts"] if a["step"] == "write"]
    assert [a["number"] for a in tries] == [1, 2, 3, 4, 5, 6, 7]
    assert [a["scheduled_delay_seconds"] for a in tries] == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, None]
    assert engine.fhir.transactions == [] and mail.outbox == []  # the digest names it, not a mail per letter


def test_a_longer_retry_after_is_honoured_and_recorded(engine):
    engine.fhir.faults.add("transaction", transient(retry_after=9), times=1)
    engine.fhir.faults.add("transaction", transient(retry_after=1), times=1)
    run = engine.commit(37.1)
    assert engine.drive(run) == SyncRun.Status.RETRY_WAIT
    assert engine.sent[-1] == (run.pk, 9.0)
    _due_now(run)
    assert engine.drive(run) == SyncRun.Status.RETRY_WAIT
    assert engine.sent[-1] == (run.pk, 2.0)  # a shorter Retry-After never shortens the schedule
    attempts = RunAttempt.objects.filter(run=run, outcome="transient").order_by("pk")
    assert [(a.retry_after_seconds, a.scheduled_delay_seconds) for a in attempts] == [(9.0, 9.0), (1.0, 2.0)]


def test_an_early_delivery_waits_for_its_time(engine):
    engine.fhir.faults.add("transaction", transient(), times=1)
    run = engine.commit(37.1)
    engine.drive(run)
    SyncRun.objects.filter(pk=run.pk).update(next_attempt_at=timezone.now() + timedelta(seconds=5))
    assert engine.drive(run) == SyncRun.Status.RETRY_WAIT
    assert 4 < engine.sent[-1][1] <= 5
    assert RunAttempt.objects.filter(run=run, step="write").count() == 1


def test_the_attempt_counter_restarts_for_each_step(engine):
    engine.fhir.faults.add("transaction", transient(), times=2)
    engine.fhir.faults.add("vread", transient(), times=1)
    run = engine.commit(37.1)
    for _ in range(3):
        engine.drive(run)
        _due_now(run)
    assert [c for _, c in engine.sent if c] == [1.0, 2.0, 1.0]
    assert engine.drive(run) == SyncRun.Status.DONE


def test_a_redriven_dead_letter_runs_again_and_can_succeed(engine):
    from sync.actions import do_redrive_dead_letter

    engine.fhir.faults.add("transaction", transient(), times=7)
    run = engine.commit(37.1)
    for _ in range(7):
        engine.drive(run)
        _due_now(run)
    letter = DeadLetter.objects.get(run=run)
    do_redrive_dead_letter(letter, acting_user=None)
    assert engine.drive(run) == SyncRun.Status.DONE
    letter.refresh_from_db()
    assert letter.status == DeadLetter.Status.REDRIVEN
