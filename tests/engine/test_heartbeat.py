"""The lease heartbeat: a run's lease lives as long as the process working on it, and no longer."""
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from sync.identity import record_key
from sync.models import Direction, Site, SyncRun
from sync.workflow import heartbeat


def _held_run(owner="w1", expires_in=1.0) -> SyncRun:
    site = Site.objects.create(name="site1", openehr_base_url="http://site1.test/v1", local_demo=True)
    return SyncRun.objects.create(direction=Direction.TO_FHIR, site=site, record_key=record_key("site1", "vo"),
                                  status=SyncRun.Status.RUNNING, lease_owner=owner,
                                  lease_expires_at=timezone.now() + timedelta(seconds=expires_in))


@pytest.mark.django_db
def test_a_renewal_pushes_the_lease_forward_only_for_the_worker_holding_it(settings):
    settings.CONFLICTDESK_RUN_LEASE_SECONDS = 6
    run = _held_run()
    assert heartbeat.renew({run.pk: "someone-else"}) == 0
    assert heartbeat.renew({run.pk: "w1"}) == 1
    run.refresh_from_db()
    assert run.lease_expires_at > timezone.now() + timedelta(seconds=4)
    SyncRun.objects.filter(pk=run.pk).update(status=SyncRun.Status.DONE)
    assert heartbeat.renew({run.pk: "w1"}) == 0  # a finished run is never leased again


@pytest.mark.django_db(transaction=True)
def test_the_lease_lives_while_the_run_is_held_and_lapses_after(settings):
    """The heartbeat thread (its own connection, hence a committed row) renews while the block runs."""
    settings.CONFLICTDESK_RUN_LEASE_SECONDS = 1
    settings.CONFLICTDESK_LEASE_HEARTBEAT_SECONDS = 0.2
    run = _held_run(expires_in=1.0)
    with heartbeat.holding(run.pk, "w1"):
        time.sleep(2.0)  # twice the lease: without renewals it would have lapsed
        run.refresh_from_db()
        assert run.lease_expires_at > timezone.now()
    time.sleep(1.5)  # no renewals once the block is left (the worker finished, or died)
    run.refresh_from_db()
    assert run.lease_expires_at < timezone.now()
