"""The lease heartbeat: a run's lease lives as long as the process working on it, and no longer."""
import os
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from sync.identity import record_key
from sync.models import Direction, Site, SyncRun
from sync.workflow import heartbeat, sweeper


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


def _eventually(condition, within=30.0, step=0.05) -> bool:
    """Poll: the bound is for a starved scheduler on a loaded machine, not a timing claim."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


@pytest.mark.django_db(transaction=True)
def test_the_lease_is_renewed_while_the_run_is_held_and_never_after(settings):
    """The heartbeat thread (its own connection, hence a committed row) renews while the block runs and
    stops once it is left. Asserted on renewals seen, not on how fast they come (CI is a busy machine)."""
    settings.CONFLICTDESK_RUN_LEASE_SECONDS = 1
    beat = settings.CONFLICTDESK_LEASE_HEARTBEAT_SECONDS = 0.05
    run = _held_run(expires_in=1.0)

    def expiry():
        return SyncRun.objects.get(pk=run.pk).lease_expires_at

    first = expiry()
    with heartbeat.holding(run.pk, "w1"):
        assert _eventually(lambda: expiry() > first)  # renewed while held
        renewed = expiry()
        assert _eventually(lambda: expiry() > renewed)  # and again: it keeps renewing
    # Left: a renewal the thread had already started may still land; wait until the lease stands still.
    def standing_still():
        before = expiry()
        time.sleep(10 * beat)
        return expiry() == before

    assert _eventually(standing_still)
    lapsed = timezone.now() - timedelta(seconds=5)
    SyncRun.objects.filter(pk=run.pk).update(lease_expires_at=lapsed)
    time.sleep(20 * beat)  # twenty beats: any renewal would have moved it
    assert expiry() == lapsed


@pytest.mark.django_db
def test_a_lease_held_by_a_process_of_this_host_that_died_is_let_go_at_once():
    import subprocess

    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid no process has any more (a killed pool child)
    dead = _held_run(owner=f"vm:{gone.pid}", expires_in=60)
    alive = SyncRun.objects.create(direction=Direction.TO_FHIR, site=dead.site, record_key=record_key("site1", "vo2"),
                                   status=SyncRun.Status.RUNNING, lease_owner=f"vm:{os.getpid()}",
                                   lease_expires_at=timezone.now() + timedelta(seconds=60))
    elsewhere = SyncRun.objects.create(direction=Direction.TO_FHIR, site=dead.site,
                                       record_key=record_key("site1", "vo3"), status=SyncRun.Status.RUNNING,
                                       lease_owner=f"other-host:{gone.pid}",
                                       lease_expires_at=timezone.now() + timedelta(seconds=60))
    assert heartbeat.release_dead_on_this_host("vm") == [dead.pk]
    owed = set(sweeper.owed_runs().values_list("pk", flat=True))
    assert dead.pk in owed and alive.pk not in owed and elsewhere.pk not in owed  # another host's pids are not ours


@pytest.mark.django_db
def test_a_lapsed_lease_is_re_sent_once_when_it_lapses_not_at_every_sweep(settings):
    settings.CONFLICTDESK_REDISPATCH_AFTER_SECONDS = 30
    run = _held_run(expires_in=-1)
    SyncRun.objects.filter(pk=run.pk).update(dispatched_at=timezone.now() - timedelta(seconds=5))  # before it lapsed
    assert run.pk in sweeper.owed_runs().values_list("pk", flat=True)
    SyncRun.objects.filter(pk=run.pk).update(dispatched_at=timezone.now())  # the sweeper's re-send
    assert run.pk not in sweeper.owed_runs().values_list("pk", flat=True)


def _gone_pid() -> int:
    import subprocess

    gone = subprocess.Popen(["true"])
    gone.wait()
    return gone.pid


@pytest.mark.django_db
def test_a_claim_takes_at_once_a_lease_whose_process_on_this_host_is_gone():
    """The message Celery re-queues when a pool child dies (task_reject_on_worker_lost) recovers the run at
    once, instead of finding it leased for the rest of the lease; a live or another host's holder keeps it."""
    import socket

    from sync.workflow import state

    host = socket.gethostname()
    run = _held_run(owner=f"{host}:{os.getpid()}", expires_in=60)  # alive: this very process
    assert state.claim_run(run.pk, f"{host}:1")[0] == state.LEASED
    SyncRun.objects.filter(pk=run.pk).update(lease_owner=f"elsewhere:{_gone_pid()}")  # not ours to judge
    assert state.claim_run(run.pk, f"{host}:1")[0] == state.LEASED
    dead = f"{host}:{_gone_pid()}"
    SyncRun.objects.filter(pk=run.pk).update(lease_owner=dead, claims=1)
    assert state.claim_run(run.pk, f"{host}:1")[0] == state.CLAIMED
    run.refresh_from_db()
    assert (run.lease_owner, run.claims) == (f"{host}:1", 2)  # the dead claim is counted (crash-loop rule)
    assert run.lease_expires_at > timezone.now() + timedelta(seconds=1)


@pytest.mark.django_db
def test_the_sweeper_sends_a_dead_workers_run_ahead_of_the_queue_and_other_hints_behind(
        settings, monkeypatch, django_capture_on_commit_callbacks):
    import socket

    from sync.workflow import dispatch

    settings.CONFLICTDESK_REDISPATCH_AFTER_SECONDS = 30
    sent = []
    monkeypatch.setattr(dispatch, "send", lambda run_id, countdown, priority=dispatch.RUN_PRIORITY:
                        sent.append((run_id, countdown, priority)))
    orphan = _held_run(owner=f"{socket.gethostname()}:{_gone_pid()}", expires_in=60)  # its process was killed
    lapsed = SyncRun.objects.create(direction=Direction.TO_FHIR, site=orphan.site, record_key=record_key("site1", "v2"),
                                    status=SyncRun.Status.RUNNING, lease_owner="other-host:1",
                                    lease_expires_at=timezone.now() - timedelta(seconds=1))
    lost_hint = SyncRun.objects.create(direction=Direction.TO_FHIR, site=orphan.site,
                                       record_key=record_key("site1", "v3"), status=SyncRun.Status.PENDING)
    with django_capture_on_commit_callbacks(execute=True):
        assert sweeper.sweep() == 3
    assert sorted(sent) == sorted([(orphan.pk, None, dispatch.RECOVERY_PRIORITY),
                                   (lapsed.pk, None, dispatch.RECOVERY_PRIORITY),
                                   (lost_hint.pk, None, dispatch.RUN_PRIORITY)])
    assert dispatch.RECOVERY_PRIORITY < dispatch.RUN_PRIORITY  # Redis serves the lower number first


@pytest.mark.django_db
def test_a_lease_let_go_is_let_go_once_so_the_run_is_sent_once_not_at_every_sweep(settings):
    import socket

    settings.CONFLICTDESK_REDISPATCH_AFTER_SECONDS = 30
    run = _held_run(owner=f"{socket.gethostname()}:{_gone_pid()}", expires_in=60)
    assert heartbeat.release_dead_on_this_host() == [run.pk]
    SyncRun.objects.filter(pk=run.pk).update(dispatched_at=timezone.now())  # the sweeper's re-send
    assert heartbeat.release_dead_on_this_host() == []  # not stamped again: not owed again
    assert run.pk not in sweeper.owed_runs().values_list("pk", flat=True)


def test_a_killed_process_not_reaped_yet_is_gone():
    import socket
    import subprocess

    child = subprocess.Popen(["true"])
    try:
        assert _eventually(lambda: heartbeat._zombie(child.pid), within=10)  # exited, not waited for: a zombie
        assert heartbeat.gone(f"{socket.gethostname()}:{child.pid}")
        assert not heartbeat.gone(f"{socket.gethostname()}:{os.getpid()}")
    finally:
        child.wait()
