"""The claim: a fresh run in one statement, everything else the long way with the same outcome.

The one-statement claim (``state._claim_fresh``) must never claim a run the long way
would not: a run behind an unfinished earlier run of its record, one whose server is
down, a poison run, one another live worker holds. Each case here is sent the long way
and ends as it always did; an open breaker of a server the run does not need costs the
long way but still claims.
"""
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from sync.models import ChangeEvent, DeadLetter, Outage, SyncRun
from sync.workflow import state


def test_a_fresh_run_is_claimed_in_one_statement_and_read_once(engine, settings):
    run = engine.commit(37.1)
    before = timezone.now()
    with CaptureQueriesContext(connection) as queries:
        status, claimed = state.claim_run(run.pk, "w1")
    assert status == state.CLAIMED
    assert len(queries) == 2  # the claim, then the run with its event and site
    assert (claimed.pk, claimed.status, claimed.claims, claimed.lease_owner) == (run.pk, "running", 1, "w1")
    assert claimed.lease_expires_at >= before + timedelta(seconds=settings.CONFLICTDESK_RUN_LEASE_SECONDS)
    assert claimed.change_event.status == ChangeEvent.Status.RUNNING  # read after the claim: as committed
    assert claimed.site.name == "site1"
    # A second message for the same run finds it held.
    assert state.claim_run(run.pk, "w2") == (state.LEASED, None)


def test_a_run_behind_an_unfinished_earlier_run_of_its_record_waits(engine):
    first, second = engine.commit(37.1, version=1), engine.commit(37.2, version=2)
    assert state.claim_run(second.pk, "w1") == (SyncRun.Status.WAITING, None)
    second.refresh_from_db()
    assert (second.status, second.claims, second.lease_owner) == (SyncRun.Status.WAITING, 0, "")
    assert state.claim_run(first.pk, "w1")[0] == state.CLAIMED


@pytest.mark.parametrize("needed", [True, False], ids=["its-server-down", "another-server-down"])
def test_an_open_breaker_sends_the_claim_the_long_way(engine, needed):
    Outage.objects.create(destination="central" if needed else "site:elsewhere",
                          next_probe_at=timezone.now() + timedelta(seconds=30))
    run = engine.commit(37.1)
    with CaptureQueriesContext(connection) as queries:
        status, claimed = state.claim_run(run.pk, "w1")
    assert len(queries) > 2  # not the one-statement claim
    run.refresh_from_db()
    if needed:
        assert (status, claimed, run.status) == (SyncRun.Status.DESTINATION_DOWN, None, "destination_down")
    else:
        assert (status, claimed.pk, run.status, run.lease_owner) == (state.CLAIMED, run.pk, "running", "w1")


def test_a_pending_run_at_the_crash_loop_limit_dead_letters(engine, settings):
    settings.CONFLICTDESK_CRASH_LOOP_CLAIMS = 3
    run = engine.commit(37.1)
    SyncRun.objects.filter(pk=run.pk).update(claims=3)  # claimed three times, no step ever recorded
    assert state.claim_run(run.pk, "w1") == (SyncRun.Status.DEAD_LETTER, None)
    assert DeadLetter.objects.get(run=run).cause == DeadLetter.Cause.CRASH_LOOP


def test_a_pending_run_with_a_live_lease_is_not_taken(engine):
    run = engine.commit(37.1)
    SyncRun.objects.filter(pk=run.pk).update(lease_owner="elsewhere:1",
                                            lease_expires_at=timezone.now() + timedelta(seconds=60))
    assert state.claim_run(run.pk, "w1") == (state.LEASED, None)
