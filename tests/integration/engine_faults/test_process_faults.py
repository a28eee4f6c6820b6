"""Process faults under the engine: a worker SIGKILLed mid-write, the broker restarted, PostgreSQL restarted.

The harness (``tests/harness``, its ``checks`` module in particular) says what is real and what is ours.
"""
from __future__ import annotations

import subprocess
import time

import pytest
from django.db import connection

from sync.identity import provenance_id
from sync.models import ChangeEvent, RunAttempt, SyncRun
from tests.harness import SteadyLoad, commit, now, wait_for
from tests.harness.checks import LEASE_SECONDS, assert_survived, exists, synced, wait_all_synced

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _transaction_posts(proxy):
    return [e for e in proxy.events("delay") if e.method == "POST" and (e.path or "").rstrip("/").endswith("/fhir")]


def _posts_before_write(proxy, at_write, timeout=150) -> set[int]:
    """The transaction POSTs the proxy had seen while our run was still short of its write step.

    Each round reads the posts and then the run's step; the answer is the posts of the last
    round in which the step was not yet ``write``. Our POST leaves only after that step is
    committed, so it can never be among them, however fast the worker is.
    """
    deadline, before = time.monotonic() + timeout, set()
    while time.monotonic() < deadline:
        seen = {e.seq for e in _transaction_posts(proxy)}
        if at_write.exists():
            return before
        before = seen
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for our run to reach its write")


# --- the tests ---------------------------------------------------------------------

def test_a_worker_killed_mid_write_is_replaced_and_nothing_is_duplicated(worker, hapi_proxy, site, cdr, fhir, ehr):
    """SIGKILL while the central transaction is in flight: HAPI still applies it, the worker never
    records it. A new worker re-drives the run (lease lapsed, sweeper re-sends) and the conditional
    write finds what the first one made."""
    started = now()
    hapi_proxy.delay(1000)  # every HAPI request waits in the proxy: a window to kill in
    worker.start()
    ref = commit(cdr, ehr, 101)
    # The shared CDR may hand the worker other people's compositions too: watch our run, not the first POST.
    at_write = SyncRun.objects.filter(change_event__source_version=ref.version_uid, step="write", status="running")
    posts_before = _posts_before_write(hapi_proxy, at_write)
    wait_for(lambda: {e.seq for e in _transaction_posts(hapi_proxy)} - posts_before, timeout=5, every=0.02,
             what="our transaction to be held in the proxy")
    worker.kill()
    killed_at = time.monotonic()
    run = SyncRun.objects.get(change_event__source_version=ref.version_uid)
    assert run.status == SyncRun.Status.RUNNING and run.step == "write"
    # The proxy forwards the request after its delay although the client is gone: the server does the work.
    wait_for(lambda: exists(fhir, "Provenance", provenance_id(ref.version_uid)), 10,
             what="the orphaned transaction to be applied by HAPI")
    hapi_proxy.clear()
    worker.start()
    link = wait_for(lambda: synced(ref), timeout=60, what="the run to finish on the new worker")
    print(f"\nrecovered {time.monotonic() - killed_at:.1f} s after the kill (lease {LEASE_SECONDS} s)")
    run.refresh_from_db()
    assert run.status == SyncRun.Status.DONE
    writes = RunAttempt.objects.filter(run=run, step="write")
    assert writes.count() == 1 and writes.get().worker != ""  # the killed attempt never committed a row
    assert_survived(site, fhir, started, [ref], [link])


def test_a_broker_restart_loses_no_run(worker, redis_broker, hapi_proxy, site, cdr, fhir, ehr):
    """Messages queued in Redis vanish with the restart (no persistence); PostgreSQL still owes the
    runs, and the sweeper re-sends them."""
    started = now()
    hapi_proxy.delay(400)  # slow enough that runs pile up in the queue
    worker.start()
    refs = [commit(cdr, ehr, 100 + i) for i in range(6)]
    wait_for(lambda: SyncRun.objects.filter(change_event__ehr_id=ehr).count() == len(refs), 30, what="detection")
    wait_for(lambda: redis_broker.queued() > 0, 20, what="messages waiting in the broker")
    in_flight = SyncRun.objects.filter(change_event__ehr_id=ehr).exclude(status=SyncRun.Status.DONE).count()
    queued = redis_broker.queued()
    redis_broker.stop()
    time.sleep(2)
    redis_broker.start()
    assert redis_broker.queued() == 0  # everything that was queued is gone
    hapi_proxy.clear()
    print(f"\nbroker restarted with {in_flight} run(s) unfinished, {queued} message(s) queued")
    assert in_flight >= 2
    links = wait_all_synced(refs, timeout=90)
    statuses = set(ChangeEvent.objects.filter(ehr_id=ehr).values_list("status", flat=True))
    assert statuses == {ChangeEvent.Status.SYNCED}
    assert_survived(site, fhir, started, refs, links)


def _restart_postgresql() -> float:
    """``pg_ctlcluster restart`` (fast shutdown: every connection is cut); seconds it took."""
    clusters = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, check=True).stdout.split()
    version, name = clusters[0], clusters[1]
    began = time.monotonic()
    done = subprocess.run(["pg_ctlcluster", version, name, "restart"], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        pytest.fail(f"could not restart PostgreSQL (run the fault tests as root): {done.stderr.strip()}")
    return time.monotonic() - began


def test_a_postgresql_restart_under_load_loses_and_repeats_nothing(worker, hapi_proxy, site, cdr, fhir, ehr, ehrbase_urls):
    """The engine's own database goes away mid-flight (and EHRbase's and HAPI's with it): runs cut
    between steps resume from their checkpoint once it is back, none is applied twice."""
    started = now()
    hapi_proxy.delay(300)  # keeps several runs in flight when the restart cuts them
    worker.start()
    with SteadyLoad(ehrbase_urls[0], ehr, period=0.5, tolerate_errors=True) as load:
        wait_for(lambda: SyncRun.objects.filter(change_event__ehr_id=ehr).count() >= 3, 60, what="runs under way")
        in_flight = SyncRun.objects.filter(change_event__ehr_id=ehr).exclude(status=SyncRun.Status.DONE).count()
        took = _restart_postgresql()
        connection.close()  # this process's connection died with the server too
        time.sleep(3)
    refs = load.refs
    hapi_proxy.clear()
    print(f"\nPostgreSQL restarted in {took:.1f} s with {in_flight} run(s) unfinished; {len(refs)} versions committed, "
          f"{len(load.errors)} commit(s) refused by the site meanwhile")
    assert in_flight >= 1
    links = wait_all_synced(refs, timeout=120)
    # A retry that falls due while the database is down cannot even be claimed: it starts
    # once PostgreSQL is back (the claim is re-sent every second), late but never early.
    gaps = assert_survived(site, fhir, started, refs, links, slack=took + 2)
    print(f"retries (scheduled s, observed s): {gaps}")
