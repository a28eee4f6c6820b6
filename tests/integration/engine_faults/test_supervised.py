"""The demo's processes under supervisord (deploy/supervisord.conf): the main Celery worker process
SIGKILLed (with its pool: a dead worker holding a run) comes back by itself, the run it held is
taken over once its lease lapses (seconds: the lease heartbeat stopped with the process), and the
backlog drains, without a hand."""
from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from sync.models import DeadLetter, SyncRun
from tests.harness import commit, now, wait_for
from tests.harness.checks import assert_survived, wait_all_synced, worker_env
from tests.harness.processes import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BIN = os.path.join(REPO, ".venv", "bin")
PROGRAMS = {"celery-worker", "celery-poll-worker", "celery-beat", "poll-loop", "web"}


class Supervisor:
    """supervisord with the demo's own config, its run directory in the test's tmp_path."""

    def __init__(self, env: dict):
        self.env = env

    def ctl(self, *args) -> str:
        out = subprocess.run([f"{BIN}/supervisorctl", "-c", f"{REPO}/deploy/supervisord.conf", *args], env=self.env,
                             cwd=REPO, capture_output=True, text=True, timeout=60)
        return out.stdout

    def states(self) -> dict[str, str]:
        return {line.split()[0]: line.split()[1] for line in self.ctl("status").splitlines() if line.strip()}

    def pid(self, name: str) -> int:
        return int(self.ctl("pid", name).strip() or 0)


@pytest.fixture
def supervised(redis_broker, hapi_proxy, fhir_base_url, transactional_db, tmp_path):
    commands = dict(line.split("=", 1) for line in open(f"{REPO}/deploy/commands.env")
                    if line.strip() and not line.startswith("#"))
    env = worker_env(connection.settings_dict, redis_broker.url, hapi_proxy.url_for(fhir_base_url)) | {
        "RUN_DIR": str(tmp_path), "REPO_DIR": REPO, "VENV_BIN": BIN, "WEB_PORT": str(free_port()),
        "CONFLICTDESK_WORKER_CMD": commands["CONFLICTDESK_WORKER_CMD"].strip().strip('"'),
        "CONFLICTDESK_BEAT_CMD": f"celery -A conflictdesk beat --schedule {tmp_path}/beat-schedule",
        "CONFLICTDESK_POLL_LOOP": "1",  # as the demo: detection in its own loop, beat for the rest
        "CONFLICTDESK_POLL_QUEUE": "sync.poll",
    }
    subprocess.run([f"{BIN}/supervisord", "-c", f"{REPO}/deploy/supervisord.conf"], env=env, cwd=REPO, check=True)
    sup = Supervisor(env)
    try:
        wait_for(lambda: set(sup.states()) == PROGRAMS and set(sup.states().values()) == {"RUNNING"}, 60,
                 every=0.5, what="every supervised process to run")
        yield sup
    finally:
        sup.ctl("shutdown")


def test_a_killed_main_worker_comes_back_by_itself_and_the_backlog_drains(supervised, hapi_proxy, site, cdr, fhir,
                                                                          ehr):
    started = now()
    hapi_proxy.delay(500)  # every HAPI request waits: runs are in flight when the worker dies
    refs = [commit(cdr, ehr, 120 + i) for i in range(6)]
    held = wait_for(lambda: SyncRun.objects.filter(status=SyncRun.Status.RUNNING).exclude(lease_owner="").first(),
                    60, every=0.2, what="a run held by the worker")
    first = supervised.pid("celery-worker")
    os.killpg(first, signal.SIGKILL)  # the main process and its pool (supervisord runs each program in its group)
    killed_at = time.monotonic()
    wait_for(lambda: supervised.pid("celery-worker") not in (0, first), 30, every=0.2,
             what="supervisord to start the worker again")
    back = time.monotonic() - killed_at
    mine = SyncRun.objects.filter(pk=held.pk)
    wait_for(lambda: mine.filter(Q(lease_expires_at__lte=timezone.now()) | ~Q(lease_owner=held.lease_owner)).exists(),
             60, every=0.1, what="the dead worker's lease to be let go")
    released = time.monotonic() - killed_at  # the sweeper (the poll worker's) sends it again at once
    wait_for(lambda: mine.exclude(lease_owner=held.lease_owner).exists(), 60, every=0.2,
             what="the dead worker's run to be taken over")
    taken_over = time.monotonic() - killed_at
    links = wait_all_synced(refs, timeout=120)
    drained = time.monotonic() - killed_at
    assert not DeadLetter.objects.filter(run__change_event__source_version__in=[r.version_uid for r in refs]).exists()
    assert supervised.states()["celery-worker"] == "RUNNING"
    assert_survived(site, fhir, started, refs, links)
    print(f"\nworker back {back:.1f} s after the kill; its run's lease let go after {released:.1f} s, the run "
          f"taken over after {taken_over:.1f} s (by the restarted worker, once booted); "
          f"{len(refs)} versions synced {drained:.1f} s after it")
