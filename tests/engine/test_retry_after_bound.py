"""Finding 4: a server's Retry-After cannot park a run for ever (or crash the runner).

A hostile or broken server answers 503 with an enormous Retry-After; the run
must still be scheduled within the cap, with its attempt recorded, never left
RUNNING without one.
"""
import math

import pytest
from django.conf import settings

from sync.models import RunAttempt, SyncRun

from .fakes import transient


@pytest.mark.parametrize("hint", [1e12, 10 ** 30, 365 * 24 * 3600.0, math.inf, math.nan, -5.0])
def test_it_bounds_any_retry_after_the_server_sends(engine, hint):
    engine.fhir.faults.add("transaction", transient(retry_after=hint), times=1)
    run = engine.commit(37.1)
    assert engine.drive(run) == SyncRun.Status.RETRY_WAIT
    countdown = engine.sent[-1][1]
    assert 1.0 <= countdown <= settings.CONFLICTDESK_RETRY_AFTER_MAX_SECONDS
    assert countdown < settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
    run.refresh_from_db()
    assert run.lease_owner == "" and run.next_attempt_at is not None
    attempt = RunAttempt.objects.get(run=run, outcome="transient")
    assert attempt.scheduled_delay_seconds == countdown


def test_the_cap_itself_is_below_the_broker_visibility_timeout():
    assert settings.CONFLICTDESK_RETRY_AFTER_MAX_SECONDS < settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
