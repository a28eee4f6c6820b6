"""A run held by a dead worker is recovered in seconds: sent again ahead of the backlog and taken by a live worker.

The demo's and docs/scale-out.md's layout, on the real servers: run workers w1 and w2 (the run queue,
two pool processes each), a one-process worker for the poll queue (sweeps), beat, the poll loop, a
private broker, HAPI behind a fault proxy that delays every request so runs are in flight and more
wait in the queue when w1 (its main process and pool) is SIGKILLed.

How long it may take is the mechanism's, not a guess at the machine (``recovery_bound``): the dead
worker's lease stands at most one lease (its heartbeat died with it; the sweeper lets go of a dead
process of its own host at once), the sweep that finds it comes at most one sweep period later and
sends the run at priority 0 (``dispatch.RECOVERY_PRIORITY``), and one tick covers the sweep's own
trip through beat and the poll queue and the claim. The backlog queued meanwhile does not count:
the run is served before it, by the next slot that frees.

Also here: Redis really serves the recovery priority before the ordinary hints queued earlier.
"""
from __future__ import annotations

import os
import signal
import socket
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection

from faultproxy import FaultProxy
from sync.models import Cursor, DeadLetter, Site, SyncRun
from sync.workflow import dispatch
from tests.harness import PrivateRedis, ProcessSet, commit, now, wait_for
from tests.harness.checks import assert_survived, wait_all_synced, worker_env
from tests.harness.engine import PY, REPO

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RECORDS = 24  # a backlog that takes w2 longer than the bound to work through waits in the queue when w1 dies
HAPI_DELAY_MS = 300


def recovery_bound(env: dict) -> float:
    lease = float(env["CONFLICTDESK_RUN_LEASE_SECONDS"])
    sweep = float(env["CONFLICTDESK_SWEEP_SECONDS"])
    tick = max(1.0, sweep)  # beat's scheduler wakes at most once a second; the sweep task's trip and the claim
    return lease + sweep + tick


@pytest.fixture
def broker(tmp_path):
    with PrivateRedis(tmp_path) as redis:
        yield redis


@pytest.fixture
def hapi_proxy(fhir_base_url):
    with FaultProxy(fhir_base_url.split("//", 1)[1].split("/", 1)[0], idle_timeout=30, hang_limit=30) as proxy:
        yield proxy


@pytest.fixture
def site(transactional_db, ehrbase_urls):
    site = Site.objects.create(name="site1", openehr_base_url=ehrbase_urls[0], poll_interval_seconds=1, local_demo=True)
    Cursor.objects.create(source="site:site1", position=now() - timedelta(seconds=1))
    return site


@pytest.fixture
def engine(broker, hapi_proxy, fhir_base_url, transactional_db, tmp_path):
    env = worker_env(connection.settings_dict, broker.url, hapi_proxy.url_for(fhir_base_url)) | {
        "CONFLICTDESK_POLL_LOOP": "1", "CONFLICTDESK_LOG_LEVEL": "WARNING"}
    procs = ProcessSet(tmp_path, REPO, env)
    worker = [PY, "-m", "celery", "-A", "conflictdesk", "worker", "--without-gossip", "--without-mingle",
              "--loglevel", "INFO"]
    for node in ("w1", "w2"):
        procs.spawn(node, [*worker, "-Q", "celery", "-c", "2", "-n", f"{node}@%h"])
    procs.spawn("poll", [*worker, "-Q", env.get("CONFLICTDESK_POLL_QUEUE", "sync.poll"), "-c", "1", "-n", "poll@%h"])
    procs.spawn("beat", [PY, "-m", "celery", "-A", "conflictdesk", "beat", "-s", str(tmp_path / "beat-schedule"),
                         "--loglevel", "WARNING"])
    procs.spawn("poll_loop", [PY, "manage.py", "sync_poll_loop"])
    for node in ("w1", "w2", "poll"):
        wait_for(lambda n=node: " ready." in (tmp_path / f"{n}.log").read_text(), 120, every=0.2,
                 what=f"worker {node} to be ready")
    try:
        yield procs
    finally:
        procs.stop()


def _parent(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return None
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))


def held_by(node_pid: int) -> dict[int, str]:
    """Runs whose lease a pool process of this node holds now: run id -> lease owner."""
    host = socket.gethostname()
    held = {}
    for run_id, owner in SyncRun.objects.filter(status=SyncRun.Status.RUNNING, lease_owner__startswith=f"{host}:") \
            .values_list("pk", "lease_owner"):
        if _parent(int(owner.rsplit(":", 1)[1])) == node_pid:
            held[run_id] = owner
    return held


def _ready(log: Path) -> bool:
    return log.exists() and " ready." in log.read_text()


@pytest.mark.parametrize("death", ["worker node", "pool process", "every run worker, restarted"])
def test_a_dead_workers_run_is_taken_by_a_live_worker_within_the_bound(death, engine, hapi_proxy, site, cdr, fhir,
                                                                        ehr, broker, tmp_path):
    """worker node: w1's main process and pool SIGKILLed, w2 takes the run. pool process: one of w1's pool
    processes SIGKILLed, w1's replacement process or w2 takes it. every run worker, restarted: w2 stopped
    before the load, so w1 is the one run worker, as in the demo; w1 SIGKILLed and started again at once
    (as supervisord does): the restarted w1 takes its runs ahead of the backlog, within the bound counted
    from when it is ready (its boot is the machine's, not the mechanism's)."""
    started = now()
    bound = recovery_bound(engine.env)
    if death == "every run worker, restarted":
        engine.stop("w2")  # w1 is the demo's one run worker: its runs fill the restarted one's slots, no more
    hapi_proxy.delay(HAPI_DELAY_MS)
    refs = [commit(cdr, ehr, 120 + i) for i in range(RECORDS)]
    w1 = engine.procs["w1"].pid
    wait_for(lambda: held_by(w1) and broker.queued() > 0, 120, every=0.05,
             what="w1 holding a run while others wait in the queue")
    snapshot = held_by(w1)
    backlog = broker.queued()
    if death == "pool process":
        run_id, owner = next(iter(snapshot.items()))
        snapshot = {run_id: owner}
        os.kill(int(owner.rsplit(":", 1)[1]), signal.SIGKILL)
    else:
        engine.kill("w1")
    killed_at = time.monotonic()
    orphans = {pk: owner for pk, owner in snapshot.items()
               if SyncRun.objects.filter(pk=pk, lease_owner=owner, status=SyncRun.Status.RUNNING).exists()}
    assert orphans, "the runs all finished before the kill"  # the delay makes this window seconds long
    ready = 0.0
    if death == "every run worker, restarted":
        log = tmp_path / "w1-restarted.log"
        engine.spawn("w1", engine.procs["w1"].args, log_name=log.stem)
        wait_for(lambda: _ready(log), 120, every=0.05, what="the restarted w1 to be ready")
        ready = time.monotonic() - killed_at
    live = {engine.procs[n].pid for n in ("w1", "w2") if engine.procs[n].poll() is None}

    def recovered():
        return not any(SyncRun.objects.filter(pk=pk, lease_owner=owner).exists() for pk, owner in orphans.items())

    wait_for(recovered, 120, every=0.05, what="the dead worker's runs to be taken by a live worker")
    taken_over = time.monotonic() - killed_at
    takers = set(SyncRun.objects.filter(pk__in=orphans).values_list("lease_owner", flat=True)) - {""}
    assert all(_parent(int(t.rsplit(":", 1)[1])) in live for t in takers), takers
    links = wait_all_synced(refs, timeout=180)
    drained = time.monotonic() - killed_at
    print(f"\n{death} killed: {len(orphans)} run(s) taken over {taken_over:.1f} s after the kill"
          + (f" (the restarted worker ready after {ready:.1f} s)" if ready else "")
          + f"; bound {ready + bound:.1f} s (lease + sweep + tick{' after ready' if ready else ''}); "
          f"{backlog} hint(s) were queued then; {len(refs)} versions synced {drained:.1f} s after it")
    assert taken_over <= ready + bound
    assert not DeadLetter.objects.filter(run__change_event__source_version__in=[r.version_uid for r in refs]).exists()
    hapi_proxy.clear()
    assert_survived(site, fhir, started, refs, links)


def test_redis_serves_a_recovery_hint_before_the_ordinary_hints_queued_earlier(broker, monkeypatch):
    """What the bound above leans on: kombu's Redis transport pops priority 0 first (its priority_steps)."""
    from conflictdesk.celery import app

    send_task = app.send_task
    with app.connection_for_write(broker.url) as conn:
        monkeypatch.setattr(app, "send_task", lambda *args, **kw: send_task(*args, connection=conn, **kw))
        for run_id in (1, 2, 3):
            dispatch.send(run_id, None)
        dispatch.send(99, None, priority=dispatch.RECOVERY_PRIORITY)
    assert broker.queued() == 4
    order = []
    with app.connection_for_read(broker.url) as conn:
        queue = conn.SimpleQueue("celery")
        for _ in range(4):
            message = queue.get(timeout=5)
            order.append(message.headers["argsrepr"])
            message.ack()
        queue.close()
    assert order == ["[99]", "[1]", "[2]", "[3]"]
