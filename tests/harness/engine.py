"""The engine's processes, as docs/scale-out.md deploys them, against a database and a private broker.

``Engine``: Celery worker nodes (w1, w2 by default, ``concurrency`` pool
children each), one beat, optionally ``manage.py sync_poll_loop`` for
detection and one gunicorn web process. ``Worker``: one node with its beat
embedded (``celery worker -B``), restartable, that a fault test can SIGKILL
whole. Both run every process in its own group through ``ProcessSet``.
"""
from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

from .processes import ProcessSet, free_port

REPO = Path(__file__).resolve().parents[2]
FHIR = os.environ.get("CONFLICTDESK_FHIR_BASE_URL", "http://127.0.0.1:8090/fhir")
PY = sys.executable  # the venv's python: the bench and pytest both run under .venv/bin/python
GUNICORN = str(Path(sys.executable).parent / "gunicorn")


def engine_env(db_url: str, broker_url: str, fhir_url: str = FHIR, *, production: bool = False, **settings) -> dict:
    """The engine processes' environment: this database, this broker, this central server.

    Sites' change feeds are re-read 1 s (not 5) before each cursor: the shared CDRs
    hold other people's commits. The central server is polled hourly unless a test
    or benchmark says otherwise. ``production``: DJANGO_DEBUG=0 (no per-query
    logging in every connection) with the variables it then requires. ``settings``
    are further environment variables, by name.
    """
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "CELERY_BROKER_URL": broker_url,
        "CONFLICTDESK_FHIR_BASE_URL": fhir_url,
        "CONFLICTDESK_CENTRAL_POLL_SECONDS": "3600",
        "CONFLICTDESK_POLL_OVERLAP_SECONDS": "1",
        "DJANGO_DEBUG": "1",  # the development defaults (settings are production unless asked)
    }
    if production:
        env |= {
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": "harness-only-" + uuid.uuid4().hex,
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "CONFLICTDESK_METRICS_TOKEN": "bench",
            # Production allows no site URL until the operator lists them: these are the local CDRs.
            "CONFLICTDESK_SITE_URL_ALLOWLIST": "http://127.0.0.1:*,http://localhost:*",
            # The poller scrapes gunicorn directly, over plain http, as Prometheus does on a private network.
            "CONFLICTDESK_METRICS_PLAIN_HTTP": "1",
        }
    env |= {k: str(v) for k, v in settings.items()}
    return env


class Engine:
    """``nodes`` Celery worker nodes, one beat, optionally ``sync_poll_loop`` and gunicorn (2 workers)."""

    def __init__(self, env: dict, workdir: Path, *, nodes=("w1", "w2"), concurrency: int = 2, beat: bool = True,
                 poll_loop: bool = True, web: bool = False, loglevel: str = "WARNING"):
        self.env = {**env, "CONFLICTDESK_POLL_LOOP": "1" if poll_loop else "0"}
        self.processes = ProcessSet(workdir, REPO, self.env)
        self.workdir, self.nodes, self.concurrency = Path(workdir), tuple(nodes), concurrency
        self.beat, self.poll_loop, self.web, self.loglevel = beat, poll_loop, web, loglevel
        self.web_port = 0

    @property
    def procs(self) -> dict:
        return self.processes.procs

    def start(self) -> "Engine":
        spawn = self.processes.spawn
        for node in self.nodes:
            spawn(node, [PY, "-m", "celery", "-A", "conflictdesk", "worker", "-n", f"{node}@%h",
                         "-c", str(self.concurrency), "--without-gossip", "--without-mingle", "--loglevel", self.loglevel])
        if self.beat:
            spawn("beat", [PY, "-m", "celery", "-A", "conflictdesk", "beat", "-s", str(self.workdir / "beat-schedule"),
                           "--loglevel", self.loglevel])
        if self.poll_loop:
            spawn("poll_loop", [PY, "manage.py", "sync_poll_loop"])
        if self.web:
            self.web_port = free_port()
            spawn("web", [GUNICORN, "conflictdesk.wsgi", "-w", "2", "-b", f"127.0.0.1:{self.web_port}",
                          "--log-level", self.loglevel.lower()])
        return self

    def alive(self) -> dict:
        return self.processes.alive()

    def stop(self) -> None:
        self.processes.stop()

    def __enter__(self) -> "Engine":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class Worker:
    """``celery worker -B`` in its own process group, so SIGKILL takes the pool and beat with it.

    ``start`` again after ``kill``/``stop`` starts a fresh one (``count`` numbers the logs).
    """

    def __init__(self, env: dict, logdir: Path):
        self.env, self.logdir, self.count = env, Path(logdir), 0
        self.processes = ProcessSet(logdir, REPO, env)
        self.proc = None

    def start(self) -> "Worker":
        self.count += 1
        self.proc = self.processes.spawn(
            "worker",
            [PY, "-m", "celery", "-A", "conflictdesk", "worker", "-B",
             "-c", self.env.get("CONFLICTDESK_TEST_WORKER_CONCURRENCY", "2"),
             "-s", str(self.logdir / f"beat-schedule-{self.count}"), "--without-gossip", "--without-mingle"],
            log_name=f"worker-{self.count}",
        )
        return self

    def kill(self) -> None:
        self.processes.kill("worker")

    def stop(self) -> None:
        if self.proc is not None:
            self.processes.stop("worker", grace=20)
