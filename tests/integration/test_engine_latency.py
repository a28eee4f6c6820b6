"""End-to-end latency under load: site commit -> central resource written, at a 1 s poll interval.

A load generator commits compositions at a fixed rate (default 10/s for 10 s,
over 5 EHRs) at the real EHRbase; a real worker (4 processes) syncs them to the
real HAPI. Detection runs either through beat ticks (``beat``) or through
``manage.py sync_poll_loop`` (``loop``). Prints p50/p95/p99 of commit ->
write step finished (the resource is readable centrally from then on) and of
commit -> acknowledged; asserts only that every event synced, so a slow CI box
does not fail it. Figures: issue 8 (target p50 <= 0.8 s, p99 <= 2 s).
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone

import pytest
from django.db import connection

from engine_harness import PrivateRedis, Worker, commit, wait_for
from vitals import CORPUS, REPO, TEMPLATE

from sync.models import ChangeEvent, Cursor, RunAttempt, Site, SyncRun

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RATE = float(os.environ.get("CONFLICTDESK_LATENCY_RATE", "10"))
SECONDS = float(os.environ.get("CONFLICTDESK_LATENCY_SECONDS", "10"))
REDIS_PORT = int(os.environ.get("CONFLICTDESK_LATENCY_REDIS_PORT", "6391"))


@pytest.fixture
def engine_env(transactional_db, tmp_path, fhir_base_url):
    redis = PrivateRedis(REDIS_PORT, tmp_path)
    if redis.cli("ping").stdout.strip() == "PONG":
        pytest.fail(f"port {REDIS_PORT} already has a redis")
    redis.start()
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "CELERY_BROKER_URL": redis.url,
        "CONFLICTDESK_FHIR_BASE_URL": fhir_base_url,
        "CONFLICTDESK_CENTRAL_POLL_SECONDS": "3600",
        "CONFLICTDESK_POLL_OVERLAP_SECONDS": "1",
        "CONFLICTDESK_LOG_LEVEL": "WARNING",
        "CONFLICTDESK_TEST_WORKER_CONCURRENCY": "4",
    }
    yield env
    redis.cli("shutdown", "nosave")


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


@pytest.mark.parametrize("mode", ["beat", "loop"])
def test_latency_at_a_1_s_poll_interval(mode, engine_env, ehrbase_urls, tmp_path):
    from sync.clients.openehr import OpenEHRClient

    Site.objects.create(name="site1", openehr_base_url=ehrbase_urls[0], poll_interval_seconds=1, local_demo=True)
    Cursor.objects.create(source="site:site1", position=datetime.now(timezone.utc))
    Cursor.objects.create(source="central", position=datetime.now(timezone.utc))  # not the shared HAPI's history
    env = {**engine_env, "CONFLICTDESK_POLL_LOOP": "1" if mode == "loop" else "0"}
    worker = Worker(env, tmp_path)
    worker.start()
    loop = None
    if mode == "loop":
        loop = subprocess.Popen([sys.executable, "manage.py", "sync_poll_loop"], cwd=REPO, env=env,
                                stdout=open(tmp_path / "loop.log", "w"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        with OpenEHRClient(ehrbase_urls[0]) as cdr:
            cdr.upload_template((CORPUS / "templates" / f"{TEMPLATE}.opt").read_bytes())
            ehrs = [cdr.create_ehr(subject_id=f"lat-{uuid.uuid4()}", subject_namespace="conflictdesk-test").ehr_id
                    for _ in range(5)]
            # Warm up: one record per EHR (Patients created, worker processes warm), not measured.
            warm = [commit(cdr, ehr, 90) for ehr in ehrs]
            wait_for(lambda: SyncRun.objects.filter(status="done").count() >= len(warm), 120, what="warm-up")
            committed = {}
            start, n = time.monotonic(), int(RATE * SECONDS)
            for i in range(n):
                time.sleep(max(0.0, start + i / RATE - time.monotonic()))
                t0 = datetime.now(timezone.utc)
                ref = commit(cdr, ehrs[i % len(ehrs)], 100 + i % 50)
                committed[ref.version_uid] = t0
            behind = time.monotonic() - start - SECONDS
        runs = SyncRun.objects.filter(change_event__source_version__in=list(committed))
        try:
            wait_for(lambda: runs.filter(status="done").count() == n, 180, what="every event to sync")
        except AssertionError:
            from collections import Counter

            print("\nstatuses:", Counter(runs.values_list("status", flat=True)), "events:",
                  ChangeEvent.objects.filter(source_version__in=list(committed)).count(), "of", n)
            raise
        to_write, to_ack = [], []
        for run in runs.select_related("change_event"):
            t0 = committed[run.change_event.source_version]
            write = RunAttempt.objects.get(run=run, step="write", outcome="ok")
            to_write.append((write.finished_at - t0).total_seconds())
            to_ack.append((run.finished_at - t0).total_seconds())
            detected = (run.change_event.detected_at - t0).total_seconds()
        detect = [(r.change_event.detected_at - committed[r.change_event.source_version]).total_seconds()
                  for r in runs.select_related("change_event")]
        pickup, busy, steps = [], [], {}
        for run in runs:
            attempts = list(run.attempts.order_by("started_at", "pk"))
            pickup.append((attempts[0].started_at - run.change_event.detected_at).total_seconds())
            busy.append((run.finished_at - attempts[0].started_at).total_seconds())
            for a in attempts:
                steps.setdefault(a.step, []).append((a.finished_at - a.started_at).total_seconds())
        print(f"\n[{mode}] detected -> first step p50={percentile(pickup, 50):.2f} p99={percentile(pickup, 99):.2f}; "
              f"first step -> done p50={percentile(busy, 50):.2f} p99={percentile(busy, 99):.2f}; step means: "
              + " ".join(f"{k}={statistics.mean(v):.3f}" for k, v in steps.items()))
        line = " ".join(f"p{p}={percentile(to_write, p):.2f}" for p in (50, 95, 99))
        print(f"\n[{mode}] {n} events at {RATE}/s (generator {behind:+.1f} s late): commit -> central written {line} "
              f"max={max(to_write):.2f}; -> acknowledged p50={percentile(to_ack, 50):.2f} p99={percentile(to_ack, 99):.2f}; "
              f"detection p50={percentile(detect, 50):.2f} p99={percentile(detect, 99):.2f} mean={statistics.mean(detect):.2f}")
        assert detected is not None
    finally:
        if loop is not None:
            loop.terminate()
            loop.wait(20)
        worker.stop()
