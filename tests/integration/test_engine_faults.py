"""The engine under faults: a worker SIGKILLed mid-run, the broker restarted, HAPI unreachable.

Real EHRbase, real HAPI, a real Celery worker subprocess (with its embedded
beat) on the test database. The shared servers are never touched: HAPI is
reached through ``faultproxy.FaultProxy`` (in this process), whose ``down``
and ``delay`` make the faults, and the broker is a private redis-server on
its own port that these tests start and restart. Every wait is bounded.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from django.db import connection

from faultproxy import FaultProxy
from sync.clients.openehr import template_id_of
from sync.identity import SOURCE_SYSTEM, provenance_id, source_identifier
from sync.models import ChangeEvent, Cursor, RecordLink, RunAttempt, Site, SyncRun
from sync.workflow.reconcile import reconcile_site
from vitals import CORPUS, REPO, SYSTOLIC_FLAT, TEMPLATE

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REDIS_PORT = int(os.environ.get("CONFLICTDESK_FAULT_REDIS_PORT", "6390"))
LEASE_SECONDS = 6


def _now():
    return datetime.now(timezone.utc)


def wait_for(check, timeout, every=0.1, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# --- a private broker ---------------------------------------------------------

class PrivateRedis:
    """A redis-server of our own (no persistence: a restart loses every queued message)."""

    def __init__(self, port: int, workdir: Path):
        self.port, self.workdir = port, workdir
        self.pidfile = workdir / f"redis-{port}.pid"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def cli(self, *args) -> subprocess.CompletedProcess:
        return subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True, timeout=10)

    def start(self) -> None:
        subprocess.run(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--daemonize", "yes",
             "--pidfile", str(self.pidfile), "--dir", str(self.workdir), "--save", "", "--appendonly", "no",
             "--logfile", str(self.workdir / f"redis-{self.port}.log")],
            check=True, timeout=10,
        )
        wait_for(lambda: self.cli("ping").stdout.strip() == "PONG", 10, what=f"redis on {self.port}")

    def stop(self) -> None:
        self.cli("shutdown", "nosave")
        wait_for(lambda: self.cli("ping").returncode != 0, 10, what=f"redis on {self.port} to stop")

    def queued(self) -> int:
        out = self.cli("llen", "celery").stdout.strip()
        return int(out) if out.isdigit() else 0


@pytest.fixture
def redis_broker(tmp_path):
    if PrivateRedis(REDIS_PORT, tmp_path).cli("ping").stdout.strip() == "PONG":
        pytest.fail(f"port {REDIS_PORT} already has a redis: set CONFLICTDESK_FAULT_REDIS_PORT to a free port")
    redis = PrivateRedis(REDIS_PORT, tmp_path)
    redis.start()
    from conflictdesk.celery import app

    previous, app.conf.broker_url = app.conf.broker_url, redis.url
    yield redis
    app.conf.broker_url = previous
    if redis.cli("ping").stdout.strip() == "PONG":
        redis.cli("shutdown", "nosave")


@pytest.fixture
def hapi_proxy(fhir_base_url):
    host = fhir_base_url.split("//", 1)[1].split("/", 1)[0]
    with FaultProxy(host, idle_timeout=30, hang_limit=30) as proxy:
        yield proxy


# --- the worker -----------------------------------------------------------------

class Worker:
    """``celery worker -B`` in its own process group, so SIGKILL takes the pool and beat with it."""

    def __init__(self, env: dict, logdir: Path):
        self.env, self.logdir, self.proc, self.count = env, logdir, None, 0

    def start(self) -> "Worker":
        self.count += 1
        log = open(self.logdir / f"worker-{self.count}.log", "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "conflictdesk", "worker", "-B", "-c", self.env.get("CONFLICTDESK_TEST_WORKER_CONCURRENCY", "2"),
             "-s", str(self.logdir / f"beat-schedule-{self.count}"), "--without-gossip", "--without-mingle"],
            cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        return self

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


@pytest.fixture
def worker(redis_broker, hapi_proxy, fhir_base_url, transactional_db, tmp_path):
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "CELERY_BROKER_URL": redis_broker.url,
        "CONFLICTDESK_FHIR_BASE_URL": hapi_proxy.url_for(fhir_base_url),
        "CONFLICTDESK_SWEEP_SECONDS": "1",
        "CONFLICTDESK_REDISPATCH_AFTER_SECONDS": "3",
        "CONFLICTDESK_RUN_LEASE_SECONDS": str(LEASE_SECONDS),
        "CONFLICTDESK_CENTRAL_POLL_SECONDS": "3600",
        "CONFLICTDESK_HTTP_TIMEOUT_SECONDS": "5",
        # Less re-read of the shared CDR (other people's compositions) than the 5 s default.
        "CONFLICTDESK_POLL_OVERLAP_SECONDS": "1",
        "CONFLICTDESK_LOG_LEVEL": "INFO",
    }
    handle = Worker(env, tmp_path)
    yield handle
    handle.stop()


# --- site, records, checks ----------------------------------------------------------

@pytest.fixture
def site(transactional_db, ehrbase_urls):
    site = Site.objects.create(name="site1", openehr_base_url=ehrbase_urls[0], poll_interval_seconds=1, local_demo=True)
    Cursor.objects.create(source="site:site1", position=_now() - timedelta(seconds=1))
    return site


@pytest.fixture
def ehr(cdr):
    return cdr.create_ehr(subject_id=f"pat-{uuid.uuid4()}", subject_namespace="conflictdesk-test").ehr_id


def commit(cdr, ehr, systolic: float):
    flat = json.loads((CORPUS / "compositions" / f"{TEMPLATE}.flat.json").read_text())
    flat = {k: v for k, v in flat.items() if not k.endswith("/_uid")}
    flat[SYSTOLIC_FLAT] = systolic
    tid = template_id_of((CORPUS / "templates" / f"{TEMPLATE}.opt").read_bytes())
    return cdr.create_composition(ehr, flat, template_id=tid)


def synced(ref):
    link = RecordLink.objects.filter(versioned_object_uid=ref.uid, openehr_version_uid=ref.version_uid).first()
    return link if link and link.fhir_resources else None


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


def _exists(fhir, rtype, rid) -> bool:
    from sync.clients.errors import NotFound

    try:
        fhir.read(rtype, rid)
    except NotFound:
        return False
    return True


def assert_one_of_each(fhir, link, ref):
    """Every record resource exists once centrally, counted by its source identifier, and one Provenance."""
    for r in link.fhir_resources:
        key = source_identifier(fhir.read(r["type"], r["id"]))
        found = list(fhir.search(r["type"], {"identifier": f"{SOURCE_SYSTEM}|{key}"}))
        assert len(found) == 1, f"{r['type']} {key}: {len(found)} copies"
    fhir.read("Provenance", provenance_id(ref.version_uid))


def assert_reconciled(site, started, refs):
    report = reconcile_site(site, started - timedelta(seconds=1), _now(), ehr_id=refs[0].ehr_id)
    ours = {ref.version_uid for ref in refs}
    assert ours <= set(report.by_state["synced"]), dict(report.by_state)
    assert not ours & set(report.unaccounted)


# --- the tests ---------------------------------------------------------------------

def test_a_worker_killed_mid_write_is_replaced_and_nothing_is_duplicated(worker, hapi_proxy, site, cdr, fhir, ehr):
    """SIGKILL while the central transaction is in flight: HAPI still applies it, the worker never
    records it. A new worker re-drives the run (lease lapsed, sweeper re-sends) and the conditional
    write finds what the first one made."""
    started = _now()
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
    wait_for(lambda: _exists(fhir, "Provenance", provenance_id(ref.version_uid)), 10,
             what="the orphaned transaction to be applied by HAPI")
    hapi_proxy.clear()
    worker.start()
    link = wait_for(lambda: synced(ref), timeout=60, what="the run to finish on the new worker")
    print(f"\nrecovered {time.monotonic() - killed_at:.1f} s after the kill (lease {LEASE_SECONDS} s)")
    run.refresh_from_db()
    assert run.status == SyncRun.Status.DONE
    writes = RunAttempt.objects.filter(run=run, step="write")
    assert writes.count() == 1 and writes.get().worker != ""  # the killed attempt never committed a row
    assert_one_of_each(fhir, link, ref)
    assert_reconciled(site, started, [ref])


def test_a_broker_restart_loses_no_run(worker, redis_broker, hapi_proxy, site, cdr, fhir, ehr):
    """Messages queued in Redis vanish with the restart (no persistence); PostgreSQL still owes the
    runs, and the sweeper re-sends them."""
    started = _now()
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
    links = [wait_for(lambda r=r: synced(r), timeout=90, what=f"{r.version_uid} to sync") for r in refs]
    statuses = set(ChangeEvent.objects.filter(ehr_id=ehr).values_list("status", flat=True))
    assert statuses == {ChangeEvent.Status.SYNCED}
    for ref, link in zip(refs, links):
        assert_one_of_each(fhir, link, ref)
    assert_reconciled(site, started, refs)


def test_hapi_unreachable_for_20_s_is_retried_on_the_exact_schedule(worker, hapi_proxy, site, cdr, fhir, ehr):
    """Connections refused for 20 s: attempts 1, 2, 4, 8, 16 s apart, then success, all recorded."""
    started = _now()
    worker.start()
    wait_for(lambda: Cursor.objects.get(source="site:site1").last_polled_at, 30, what="the worker's first poll")
    hapi_proxy.down(seconds=20)
    ref = commit(cdr, ehr, 120)
    link = wait_for(lambda: synced(ref), timeout=90, what="the run to succeed once HAPI is back")
    run = SyncRun.objects.get(change_event__source_version=ref.version_uid)
    failed = list(RunAttempt.objects.filter(run=run, outcome="transient").order_by("started_at", "pk"))
    assert {a.step for a in failed} == {"detect"}  # the first HAPI call is the Patient lookup
    assert [a.scheduled_delay_seconds for a in failed] == [1.0, 2.0, 4.0, 8.0, 16.0][: len(failed)]
    assert len(failed) >= 4, [a.scheduled_delay_seconds for a in failed]
    attempts = list(RunAttempt.objects.filter(run=run, step="detect").order_by("started_at", "pk"))
    assert attempts[-1].outcome == "ok" and attempts[-1].number == len(failed) + 1
    gaps = []
    for before, after in zip(attempts, attempts[1:]):
        gap = (after.started_at - before.finished_at).total_seconds()
        gaps.append(round(gap, 2))
        assert -0.05 <= gap - before.scheduled_delay_seconds <= 0.5, (gap, before.scheduled_delay_seconds)
    print(f"\nretry gaps (s): {gaps} for scheduled {[a.scheduled_delay_seconds for a in failed]}")
    assert all("refused" in a.error_detail.lower() or "connect" in a.error_detail.lower() or a.error_class
               for a in failed)
    assert_one_of_each(fhir, link, ref)
    assert_reconciled(site, started, [ref])
