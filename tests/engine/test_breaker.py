"""The circuit breaker per destination: a server that is down makes runs wait, not burn their schedule
or dead-letter; a probe re-checks it on the retry schedule, then steadily; one mail per incident."""
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from sync.models import DeadLetter, Outage, RunAttempt, SyncRun
from sync.workflow import breaker, sweeper

from .conftest import VO
from .fakes import transient

OTHER_VO = "22222222-2222-2222-2222-222222222222"


@pytest.fixture
def probe_now(engine, django_capture_on_commit_callbacks):
    """Run beat's probe tick as if every open incident's probe were due."""
    def tick():
        Outage.objects.filter(recovered_at__isnull=True).update(next_probe_at=timezone.now())
        with django_capture_on_commit_callbacks(execute=True):
            return breaker.probe_due(engine.services)
    return tick


def test_hapi_down_makes_runs_wait_then_continue_in_order_with_one_mail_each_way(engine, probe_now):
    engine.fhir.faults.add("transaction", transient(), times=1)
    engine.fhir.faults.add("ping", transient(), times=2)  # the failure's probe, then beat's first probe
    first = engine.commit(37.1)
    assert engine.drive(first) == SyncRun.Status.DESTINATION_DOWN
    assert first.attempt == 0 and first.next_attempt_at is None  # no retry spent, no timer running
    outage = Outage.objects.get()
    assert outage.destination == "central" and outage.recovered_at is None
    assert [a.outcome for a in RunAttempt.objects.filter(run=first, step="write")] == ["destination_down"]

    second = engine.commit(38.2, vo=OTHER_VO)
    assert engine.drive(second) == SyncRun.Status.DESTINATION_DOWN  # a new run waits at its claim
    assert not RunAttempt.objects.filter(run=second).exists()  # it never tried the server
    assert [c for _, c in engine.sent if c] == []  # nothing is on a retry timer

    assert probe_now() == 0  # still down: the next probe on the schedule
    outage.refresh_from_db()
    assert outage.probes == 1 and outage.recovered_at is None
    sent_before = len(engine.sent)
    assert probe_now() == 1
    outage.refresh_from_db()
    assert outage.recovered_at is not None
    assert engine.sent[sent_before:] == [(first.pk, None), (second.pk, None)]  # oldest first
    assert engine.drive(first) == SyncRun.Status.DONE
    assert engine.drive(second) == SyncRun.Status.DONE
    assert not DeadLetter.objects.exists()
    assert len(mail.outbox) == 2  # opened, recovered: not one per run
    assert "central" in mail.outbox[0].subject and "central" in mail.outbox[1].subject


def test_a_site_down_opens_the_sites_breaker_and_central_stays_closed(engine):
    engine.openehr.faults.add("get_composition", transient(), times=1)
    engine.openehr.faults.add("ping", transient(), times=1)
    run = engine.commit(37.1)
    assert engine.drive(run) == SyncRun.Status.DESTINATION_DOWN
    assert list(Outage.objects.values_list("destination", flat=True)) == ["site:site1"]


def test_a_run_failing_while_its_servers_answer_keeps_its_schedule(engine):
    """The probe answers: the failure is the run's own, retried on the schedule (test_retries has the whole of it)."""
    engine.fhir.faults.add("transaction", transient(), times=1)
    run = engine.commit(37.1)
    assert engine.drive(run) == SyncRun.Status.RETRY_WAIT
    assert engine.sent[-1] == (run.pk, 1.0)
    assert not Outage.objects.exists()


def test_a_refusal_is_an_answer(engine):
    from sync.clients.errors import InvalidRequest

    engine.fhir.faults.add("ping", InvalidRequest(method="GET", path="/metadata", status=401))
    assert breaker.answers("central", engine.services)


def test_a_retry_due_during_an_outage_waits_with_its_schedule_restarted(engine):
    engine.fhir.faults.add("transaction", transient(), times=2)
    run = engine.commit(37.1)
    assert engine.drive(run) == SyncRun.Status.RETRY_WAIT
    breaker.open_incident("central", "TransientError")
    SyncRun.objects.filter(pk=run.pk).update(next_attempt_at=timezone.now())
    assert engine.drive(run) == SyncRun.Status.DESTINATION_DOWN
    assert run.attempt == 0


def test_the_probe_follows_the_retry_schedule_then_a_steady_interval(settings):
    settings.CONFLICTDESK_PROBE_EVERY_SECONDS = 60
    assert [breaker.probe_delay(n) for n in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]


def test_one_incident_per_destination(engine):
    assert breaker.open_incident("central", "TransientError")
    assert not breaker.open_incident("central", "TransientError")
    assert Outage.objects.count() == 1 and len(mail.outbox) == 0  # the mail goes on commit, once


def test_the_sweeper_re_sends_a_waiting_run_only_once_its_destination_answers(engine):
    run = engine.commit(37.1)
    breaker.open_incident("central", "TransientError")
    engine.drive(run)
    stale = timezone.now() - timedelta(minutes=5)
    SyncRun.objects.filter(pk=run.pk).update(dispatched_at=stale)
    assert run.pk not in sweeper.owed_runs().values_list("pk", flat=True)
    Outage.objects.update(recovered_at=timezone.now())
    assert run.pk in sweeper.owed_runs().values_list("pk", flat=True)


def test_the_probe_of_a_site_reaches_its_cdr(engine):
    engine.openehr.faults.add("ping", transient(), times=1)
    assert not breaker.answers("site:site1", engine.services)
    assert breaker.answers("site:site1", engine.services)


def test_waiting_runs_of_a_site_still_down_stay_parked_when_central_recovers(engine, probe_now):
    run = engine.commit(37.1, vo=VO)
    breaker.open_incident("site:site1", "TransientError")
    breaker.open_incident("central", "TransientError")
    engine.drive(run)
    sent_before = len(engine.sent)
    engine.openehr.faults.add("ping", transient(), times=1)  # the site's probe: still down
    probe_now()
    assert set(Outage.objects.filter(recovered_at__isnull=True).values_list("destination", flat=True)) == {"site:site1"}
    assert engine.sent[sent_before:] == []
