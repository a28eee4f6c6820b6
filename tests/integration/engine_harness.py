"""What every engine fault test needs: a private broker, a worker it can kill, a steady load, and the checks.

Real EHRbase, real HAPI, a real Celery worker subprocess (with its embedded
beat) on the test database. The shared servers are reached through
``faultproxy.FaultProxy`` (in this process), whose ``down`` and ``delay``
make the network faults; the broker is a private redis-server that the tests
start and restart. Every wait is bounded.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from django.conf import settings

from audit.verify import verify_all
from sync.clients.errors import NotFound
from sync.clients.openehr import OpenEHRClient, template_id_of
from sync.identity import SOURCE_SYSTEM, provenance_id, source_identifier
from sync.models import RecordLink, RunAttempt, SyncRun
from sync.workflow.reconcile import reconcile_site
from vitals import REPO, template_opt, vitals

LEASE_SECONDS = 6
# Worst case between a scheduled retry and its start on a loaded 2-core box (the ETA
# timer, a busy pool slot); the schedule itself is asserted exactly.
RETRY_SLACK_SECONDS = 0.75


def now():
    return datetime.now(timezone.utc)


def wait_for(check, timeout=120.0, every=0.1, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# --- a private broker -----------------------------------------------------------

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

    def alive(self) -> bool:
        return self.cli("ping").stdout.strip() == "PONG"

    def start(self) -> None:
        subprocess.run(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--daemonize", "yes",
             "--pidfile", str(self.pidfile), "--dir", str(self.workdir), "--save", "", "--appendonly", "no",
             "--logfile", str(self.workdir / f"redis-{self.port}.log")],
            check=True, timeout=10,
        )
        wait_for(self.alive, 10, what=f"redis on {self.port}")

    def stop(self) -> None:
        self.cli("shutdown", "nosave")
        wait_for(lambda: self.cli("ping").returncode != 0, 10, what=f"redis on {self.port} to stop")

    def queued(self) -> int:
        out = self.cli("llen", "celery").stdout.strip()
        return int(out) if out.isdigit() else 0


# --- the worker -------------------------------------------------------------------

class Worker:
    """``celery worker -B`` in its own process group, so SIGKILL takes the pool and beat with it."""

    def __init__(self, env: dict, logdir: Path):
        self.env, self.logdir, self.proc, self.count = env, logdir, None, 0

    def start(self) -> "Worker":
        self.count += 1
        log = open(self.logdir / f"worker-{self.count}.log", "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "conflictdesk", "worker", "-B",
             "-c", self.env.get("CONFLICTDESK_TEST_WORKER_CONCURRENCY", "2"),
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


def worker_env(database: dict, broker_url: str, fhir_url: str) -> dict:
    """The worker's settings: the test database, the private broker, HAPI as the test reaches it, fast timers."""
    return {
        **os.environ,
        "DATABASE_URL": (f"postgres://{database['USER']}:{database['PASSWORD']}@"
                         f"{database['HOST'] or '127.0.0.1'}:{database['PORT'] or 5432}/{database['NAME']}"),
        "CELERY_BROKER_URL": broker_url,
        "CONFLICTDESK_FHIR_BASE_URL": fhir_url,
        "CONFLICTDESK_SWEEP_SECONDS": "1",
        "CONFLICTDESK_REDISPATCH_AFTER_SECONDS": "3",
        "CONFLICTDESK_RUN_LEASE_SECONDS": str(LEASE_SECONDS),
        "CONFLICTDESK_CENTRAL_POLL_SECONDS": "3600",
        "CONFLICTDESK_HTTP_TIMEOUT_SECONDS": "5",
        # Less re-read of the shared CDR (other people's compositions) than the 5 s default.
        "CONFLICTDESK_POLL_OVERLAP_SECONDS": "1",
        "CONFLICTDESK_LOG_LEVEL": "INFO",
    }


# --- load -------------------------------------------------------------------------------

def commit(cdr, ehr, systolic: float):
    return cdr.create_composition(ehr, vitals(systolic), template_id=template_id_of(template_opt()))


class SteadyLoad:
    """Commits one composition every ``period`` seconds at the site (straight to EHRbase) until stopped.

    Its own client and thread, so the test can inject faults while the load runs. With
    ``tolerate_errors`` a commit the site refuses (its database restarting) is counted, not fatal.
    """

    def __init__(self, base_url: str, ehr: str, period: float = 1.0, *, tolerate_errors: bool = False):
        self.base_url, self.ehr, self.period, self.tolerate_errors = base_url, ehr, period, tolerate_errors
        self.refs, self.errors = [], []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="steady-load", daemon=True)

    def __enter__(self) -> "SteadyLoad":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> list:
        self._stop.set()
        self._thread.join(30)
        assert self.tolerate_errors or not self.errors, f"the load itself failed: {self.errors[:3]}"
        return self.refs

    def _run(self) -> None:
        tid = template_id_of(template_opt())
        with OpenEHRClient(self.base_url) as cdr:
            systolic = 100.0
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    self.refs.append(cdr.create_composition(self.ehr, vitals(systolic), template_id=tid))
                except Exception as exc:  # noqa: BLE001 - reported by stop(), the test fails there
                    self.errors.append(repr(exc))
                systolic += 1
                self._stop.wait(max(0.0, self.period - (time.monotonic() - started)))


# --- checks -------------------------------------------------------------------------------

def synced(ref):
    link = RecordLink.objects.filter(versioned_object_uid=ref.uid, openehr_version_uid=ref.version_uid).first()
    return link if link and link.fhir_resources else None


def wait_all_synced(refs, timeout: float) -> list:
    wait_for(lambda: all(synced(r) for r in refs), timeout, every=0.5,
             what=f"{sum(1 for r in refs if not synced(r))} of {len(refs)} versions to sync")
    return [synced(r) for r in refs]


def exists(fhir, rtype, rid) -> bool:
    try:
        fhir.read(rtype, rid)
    except NotFound:
        return False
    return True


def assert_one_of_each(fhir, link, ref):
    """Every record resource exists once centrally, counted by its source identifier, was written
    once (one version in its history), and has its one Provenance."""
    for r in link.fhir_resources:
        key = source_identifier(fhir.read(r["type"], r["id"]))
        found = list(fhir.search(r["type"], {"identifier": f"{SOURCE_SYSTEM}|{key}"}))
        assert len(found) == 1, f"{r['type']} {key}: {len(found)} copies"
        versions = fhir.http.request("GET", f"{r['type']}/{r['id']}/_history").json().get("total")
        assert versions == 1, f"{r['type']}/{r['id']} written {versions} times"
    fhir.read("Provenance", provenance_id(ref.version_uid))


def assert_reconciled(site, started, refs):
    """Reconcile finds every version of the test's EHR synced: ours, and any the load committed
    although its client saw an error (a commit cut by a fault may still have landed)."""
    report = reconcile_site(site, started - timedelta(seconds=1), now(), ehr_id=refs[0].ehr_id)
    assert {ref.version_uid for ref in refs} <= set(report.by_state["synced"]), dict(report.by_state)
    assert set(report.by_state) == {"synced"} and not report.unaccounted, (dict(report.by_state), report.unaccounted)


def assert_audit_chain_verifies():
    broken = [report.broken.describe() for report in verify_all() if report.broken]
    assert not broken, broken


def retry_gaps(runs, slack: float = RETRY_SLACK_SECONDS) -> list[tuple[float, float]]:
    """(scheduled, observed) for every retry of these runs, after checking each streak's schedule.

    A streak is the consecutive transient failures of one step; its scheduled delays must be
    the engine's schedule from the start (1, 2, 4, ... s), ending in a dead letter after the
    seventh attempt, and each next attempt must start that long after the failure, give or
    take ``slack`` (never early; late only by what the machine, or a fault of our own
    database, imposed).
    """
    schedule = [float(s) for s in settings.CONFLICTDESK_RETRY_DELAYS]
    gaps = []
    for run in runs:
        attempts = list(RunAttempt.objects.filter(run=run).order_by("started_at", "pk"))
        streak = []
        for before, after in zip(attempts, attempts[1:] + [None]):
            if before.outcome != "transient":
                streak = []
                continue
            streak.append(before.scheduled_delay_seconds)
            if before.scheduled_delay_seconds is None:  # the last attempt: dead-lettered, not retried
                assert streak == [*schedule, None], (run.pk, before.step, streak)
                streak = []
                continue
            assert streak == schedule[: len(streak)], (run.pk, before.step, streak)
            if after is None:
                continue
            observed = (after.started_at - before.finished_at).total_seconds()
            assert -0.05 <= observed - before.scheduled_delay_seconds <= slack, (
                run.pk, before.step, before.scheduled_delay_seconds, observed)
            gaps.append((before.scheduled_delay_seconds, round(observed, 2)))
    return gaps


def runs_of(refs):
    return list(SyncRun.objects.filter(change_event__source_version__in=[r.version_uid for r in refs]))


def assert_survived(site, fhir, started, refs, links, *, slack: float = RETRY_SLACK_SECONDS):
    """The issue's after-the-fault checks: every version accounted for, nothing twice, the chain intact."""
    for ref, link in zip(refs, links):
        assert_one_of_each(fhir, link, ref)
    assert_reconciled(site, started, refs)
    assert_audit_chain_verifies()
    return retry_gaps(runs_of(refs), slack)
