"""Shared harness of the engine benchmarks (e2e_latency, throughput, reverse_latency).

Everything a benchmark starts is its own and is stopped at the end: a scratch
database ``cd_bench_<name>_<pid>`` (migrated, dropped with FORCE afterwards),
a redis-server on a free loopback port, two Celery worker nodes (w1/w2, as
docs/scale-out.md deploys them), one beat (sweeper only) and
``manage.py sync_poll_loop`` for detection, and optionally one gunicorn web
process. The EHRbase sites and HAPI are the shared servers, reached on
loopback only; every site gets a fresh name per run (``b<hex>s<i>``), so the
central identifiers never meet anyone else's.

Import this module BEFORE Django: ``scratch_database`` sets DATABASE_URL.
"""
from __future__ import annotations

import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PY = str(ROOT / ".venv" / "bin" / "python")
DEV_DB = os.environ.get("DATABASE_URL", "postgres://conflictdesk:conflictdesk@127.0.0.1:5432/conflictdesk")
FHIR = os.environ.get("CONFLICTDESK_FHIR_BASE_URL", "http://127.0.0.1:8090/fhir")
SITE_URL = "http://127.0.0.1:{port}/ehrbase/rest/openehr/v1"
sys.path.insert(0, str(ROOT))
os.environ.setdefault("CONFLICTDESK_LOG_LEVEL", "WARNING")  # the bench prints its own lines


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def percentile(values, p):
    """Nearest-rank percentile (p99 of 100 values is the 99th, not an interpolation)."""
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def summary(values) -> dict:
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50": round(percentile(values, 50), 3), "p95": round(percentile(values, 95), 3),
            "p99": round(percentile(values, 99), 3), "max": round(max(values), 3),
            "mean": round(statistics.mean(values), 3)}


def running_sites(limit: int = 9) -> list[str]:
    """Base URLs of the EHRbase sites answering on 8101.. (loopback)."""
    urls = []
    for i in range(1, limit + 1):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{8100 + i}/ehrbase/rest/status", timeout=3):
                urls.append(SITE_URL.format(port=8100 + i))
        except OSError:
            continue
    return urls


def start_sites(n: int) -> list[int]:
    """``deploy/ehrbase.sh start n`` (leaves running sites alone); returns the site numbers it started."""
    before = {int(u.split(":")[2].split("/")[0]) - 8100 for u in running_sites()}
    subprocess.run(["deploy/ehrbase.sh", "start", str(n)], cwd=ROOT, check=True, timeout=900)
    after = {int(u.split(":")[2].split("/")[0]) - 8100 for u in running_sites()}
    return sorted(after - before)


def stop_sites(numbers: list[int]) -> None:
    """Stop only the sites this run started, by the pid files deploy/ehrbase.sh wrote."""
    for i in numbers:
        pidfile = ROOT / ".run" / f"ehrbase-site{i}.pid"
        if pidfile.exists():
            pid = int(pidfile.read_text().strip())
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            pidfile.unlink(missing_ok=True)


# --- scratch database ----------------------------------------------------------------

@contextmanager
def scratch_database(name: str):
    """Create ``cd_bench_<name>_<pid>``, point DATABASE_URL at it, migrate, yield its URL, drop it."""
    import psycopg

    base, _, _dev_name = DEV_DB.rpartition("/")
    db = f"cd_bench_{name}_{os.getpid()}"
    url = f"{base}/{db}"
    admin = psycopg.connect(f"{base}/postgres", autocommit=True)
    admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    admin.execute(f'CREATE DATABASE "{db}"')
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "conflictdesk.settings")
    try:
        import django

        django.setup()
        from django.conf import settings
        from django.core.management import call_command

        settings.DEBUG = False
        t0 = time.monotonic()
        call_command("migrate", verbosity=0)
        log(f"scratch database {db} migrated in {time.monotonic() - t0:.1f} s")
        yield url
    finally:
        try:
            from django.db import connections

            connections.close_all()
        except Exception:  # noqa: BLE001 - dropping is what matters
            pass
        admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        admin.close()
        log(f"scratch database {db} dropped")


# --- private redis -------------------------------------------------------------------

class PrivateRedis:
    def __init__(self, workdir: Path):
        self.port, self.workdir = free_port(), workdir

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def cli(self, *args) -> str:
        return subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True,
                              timeout=10).stdout.strip()

    def __enter__(self):
        subprocess.run(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--daemonize", "yes",
                        "--pidfile", str(self.workdir / "redis.pid"), "--dir", str(self.workdir), "--save", "",
                        "--appendonly", "no", "--logfile", str(self.workdir / "redis.log")], check=True, timeout=10)
        deadline = time.monotonic() + 10
        while self.cli("ping") != "PONG":
            if time.monotonic() > deadline:
                raise RuntimeError("private redis did not start")
            time.sleep(0.1)
        return self

    def queued(self) -> int:
        out = self.cli("llen", "celery")
        return int(out) if out.isdigit() else 0

    def __exit__(self, *exc):
        self.cli("shutdown", "nosave")


# --- the engine processes ----------------------------------------------------------------

@dataclass
class Engine:
    """w1 + w2 (``concurrency`` children each), beat (sweeper), sync_poll_loop, optional gunicorn."""

    db_url: str
    broker: str
    workdir: Path
    concurrency: int = 2
    central_poll_seconds: int = 3600
    web: bool = False
    extra_env: dict = field(default_factory=dict)
    procs: dict = field(default_factory=dict)
    web_port: int = 0

    def env(self) -> dict:
        return {
            **os.environ,
            "DATABASE_URL": self.db_url,
            "CELERY_BROKER_URL": self.broker,
            "CONFLICTDESK_FHIR_BASE_URL": FHIR,
            # As in production: no per-query logging in every connection.
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": "bench-only-" + uuid.uuid4().hex,
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "CONFLICTDESK_METRICS_TOKEN": "bench",
            "CONFLICTDESK_POLL_LOOP": "1",
            "CONFLICTDESK_CENTRAL_POLL_SECONDS": str(self.central_poll_seconds),
            # The shared CDRs hold other people's commits: re-read 1 s, not 5, before each cursor.
            "CONFLICTDESK_POLL_OVERLAP_SECONDS": "1",
            "CONFLICTDESK_LOG_LEVEL": "WARNING",
            **self.extra_env,
        }

    def _spawn(self, name: str, args: list[str]) -> None:
        self.procs[name] = subprocess.Popen(args, cwd=ROOT, env=self.env(), start_new_session=True,
                                            stdout=open(self.workdir / f"{name}.log", "w"), stderr=subprocess.STDOUT)

    def start(self) -> "Engine":
        for node in ("w1", "w2"):
            self._spawn(node, [PY, "-m", "celery", "-A", "conflictdesk", "worker", "-n", f"{node}@%h",
                               "-c", str(self.concurrency), "--without-gossip", "--without-mingle",
                               "--loglevel", "WARNING"])
        self._spawn("beat", [PY, "-m", "celery", "-A", "conflictdesk", "beat", "-s",
                             str(self.workdir / "beat-schedule"), "--loglevel", "WARNING"])
        self._spawn("poll_loop", [PY, "manage.py", "sync_poll_loop"])
        if self.web:
            self.web_port = free_port()
            self._spawn("web", [str(ROOT / ".venv" / "bin" / "gunicorn"), "conflictdesk.wsgi", "-w", "2",
                                "-b", f"127.0.0.1:{self.web_port}", "--log-level", "warning"])
        return self

    def alive(self) -> dict:
        return {name: p.poll() is None for name, p in self.procs.items()}

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# --- memory ---------------------------------------------------------------------------

def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


class MemorySampler(threading.Thread):
    """RSS (from /proc; psutil is not in the venv) of each engine process and its pool children, every second."""

    def __init__(self, engine: Engine, every: float = 1.0):
        super().__init__(daemon=True)
        self.engine, self.every, self.samples, self._halt = engine, every, [], threading.Event()

    def snapshot(self) -> dict:
        out = {}
        for name, p in self.engine.procs.items():
            out[f"{name}.main"] = _rss_kb(p.pid) / 1024
            for i, child in enumerate(sorted(_children(p.pid))):
                out[f"{name}.child{i}"] = _rss_kb(child) / 1024
        return out

    def run(self):
        t0 = time.monotonic()
        while not self._halt.wait(self.every):
            self.samples.append({"t": round(time.monotonic() - t0, 1), **self.snapshot()})

    def stop(self) -> dict:
        self._halt.set()
        self.join(5)
        keys = sorted({k for s in self.samples for k in s if k != "t"})
        per = {k: {"max_mb": round(max(s.get(k, 0) for s in self.samples), 1),
                   "last_mb": round(self.samples[-1].get(k, 0), 1)} for k in keys} if self.samples else {}
        groups = {}
        for k, v in per.items():
            role = k.split(".")[0]
            role = "worker" if role in ("w1", "w2") else role
            groups.setdefault(role, 0.0)
            groups[role] += v["max_mb"]
        return {"per_process": per, "sum_of_max_by_role_mb": {k: round(v, 1) for k, v in groups.items()},
                "samples": len(self.samples)}


class WebPoller(threading.Thread):
    """Prometheus-like scraper: GET /metrics and /healthz every ``every`` s, so the web process has work."""

    def __init__(self, port: int, every: float = 2.0):
        super().__init__(daemon=True)
        self.port, self.every, self.ok, self.failed, self.times = port, every, 0, 0, []
        self._halt = threading.Event()

    def run(self):
        while not self._halt.wait(self.every):
            for path in ("/metrics", "/healthz"):
                req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}",
                                             headers={"Authorization": "Bearer bench"})
                t0 = time.monotonic()
                try:
                    with urllib.request.urlopen(req, timeout=10) as r:
                        r.read()
                    self.ok += 1
                    self.times.append(time.monotonic() - t0)
                except OSError:
                    self.failed += 1

    def stop(self) -> dict:
        self._halt.set()
        self.join(15)
        return {"requests_ok": self.ok, "requests_failed": self.failed, "latency_s": summary(self.times)}


# --- sites, patients, load ---------------------------------------------------------------

def setup_sites(urls: list[str], poll_seconds: int, ehrs_per_site: int, tag: str):
    """Site rows with fresh names, cursors at now, the oncology template, ``ehrs_per_site`` new EHRs each."""
    from sync.clients.openehr import OpenEHRClient
    from sync.demo.seed import ensure_template
    from sync.models import Cursor, Site

    now = datetime.now(timezone.utc)
    Cursor.objects.get_or_create(source="central", defaults={"position": now})
    sites = []
    for i, url in enumerate(urls, 1):
        site = Site.objects.create(name=f"b{tag}s{i}", openehr_base_url=url, poll_interval_seconds=poll_seconds,
                                   local_demo=True)
        Cursor.objects.create(source=f"site:{site.name}", position=now)
        with OpenEHRClient(url) as cdr:
            ensure_template(cdr)
            ehrs = [cdr.create_ehr(subject_id=f"bench-{tag}-{i}-{k}-{uuid.uuid4().hex[:8]}",
                                   subject_namespace="conflictdesk-bench").ehr_id for k in range(ehrs_per_site)]
        sites.append((site, ehrs))
    return sites


@dataclass
class Commit:
    site: str
    ehr_id: str
    version_uid: str
    scheduled: float  # epoch seconds
    started: float
    ended: float


class LoadGenerator:
    """Commit vital-signs compositions at ``rate`` per second across the sites, round robin.

    Event i is due at start + i/rate; ``threads`` committers share the schedule,
    so one slow commit does not hold the next one back. Bounded by ``seconds``
    and by ``max_events``.
    """

    def __init__(self, sites, rate: float, seconds: float, *, threads: int | None = None, seed: int = 0):
        self.sites, self.rate, self.seconds = sites, rate, seconds
        self.n = int(rate * seconds)
        self.threads = threads or max(2, min(16, int(rate // 2) + 2))
        self.seed, self.commits, self.failures = seed, [], []
        self._lock = threading.Lock()

    def _worker(self, k: int, t0: float):
        from sync.clients.openehr import OpenEHRClient
        from sync.demo.flat import TEMPLATE_ID
        from sync.demo.generator import vital_signs_composition

        rng = random.Random(f"bench|{self.seed}|{k}")
        clients = {s.name: OpenEHRClient(s.openehr_base_url, timeout=30) for s, _ in self.sites}
        try:
            for i in range(k, self.n, self.threads):
                due = t0 + i / self.rate
                time.sleep(max(0.0, due - time.time()))
                site, ehrs = self.sites[i % len(self.sites)]
                ehr = ehrs[(i // len(self.sites)) % len(ehrs)]
                flat = vital_signs_composition(rng, datetime.now(timezone.utc))
                started = time.time()
                try:
                    ref = clients[site.name].create_composition(ehr, flat, template_id=TEMPLATE_ID)
                except Exception as exc:  # noqa: BLE001 - counted, the load goes on
                    self.failures.append(f"{type(exc).__name__}: {str(exc)[:200]}")
                    continue
                with self._lock:
                    self.commits.append(Commit(site.name, ehr, ref.version_uid, due, started, time.time()))
        finally:
            for c in clients.values():
                c.close()

    def run(self) -> "LoadGenerator":
        t0 = time.time() + 0.2
        workers = [threading.Thread(target=self._worker, args=(k, t0), daemon=True) for k in range(self.threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(self.seconds + 300)
        self.started_at, self.ended_at = t0, time.time()
        return self

    def start_background(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, daemon=True)
        thread.start()
        return thread

    def lateness(self) -> dict:
        return summary([c.started - c.scheduled for c in self.commits])


def warm_up(sites, timeout: float = 300) -> None:
    """One commit per EHR, one at a time per site, synced before anything is measured.

    Creates each central Patient and warms every worker process; sequential so
    the first runs of one new patient never race on HAPI's conditional create.
    """
    from sync.models import SyncRun

    gen = LoadGenerator(sites, rate=4, seconds=max(len(e) for _, e in sites) * len(sites) / 4, threads=1, seed=-1)
    gen.run()
    wait_done([c.version_uid for c in gen.commits], timeout, what="warm-up")
    log(f"warm-up: {len(gen.commits)} commits synced ({SyncRun.objects.filter(status='done').count()} runs done)")


def wait_done(version_uids: list[str], timeout: float, what: str = "runs") -> bool:
    from sync.models import SyncRun

    terminal = ("done", "dead_letter", "conflict")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        finished = SyncRun.objects.filter(change_event__source_version__in=version_uids, status__in=terminal).count()
        if finished >= len(version_uids):
            return True
        time.sleep(0.5)
    counts = {}
    for status in SyncRun.objects.filter(change_event__source_version__in=version_uids).values_list("status", flat=True):
        counts[status] = counts.get(status, 0) + 1
    log(f"{what}: timed out after {timeout:.0f} s; runs by status {counts} of {len(version_uids)} commits")
    return False


def run_timings(commits: list[Commit]) -> dict:
    """Per-event timings from SyncRun/ChangeEvent/RunAttempt rows (epoch seconds)."""
    from sync.models import RunAttempt, SyncRun

    by_version = {c.version_uid: c for c in commits}
    runs = {r.change_event.source_version: r for r in
            SyncRun.objects.filter(change_event__source_version__in=list(by_version)).select_related("change_event")}
    attempts: dict[int, list] = {}
    for a in RunAttempt.objects.filter(run__in=[r.pk for r in runs.values()]).order_by("started_at", "pk"):
        attempts.setdefault(a.run_id, []).append(a)
    rows = []
    for v, c in by_version.items():
        run = runs.get(v)
        row = {"version_uid": v, "site": c.site, "commit_start": c.started, "commit_end": c.ended,
               "status": run.status if run else "not_detected"}
        if run:
            row["detected"] = run.change_event.detected_at.timestamp()
            att = attempts.get(run.pk, [])
            if att:
                row["first_step"] = att[0].started_at.timestamp()
                row["steps"] = {a.step: (a.finished_at - a.started_at).total_seconds() for a in att}
                row["outcomes"] = {a.step: a.outcome for a in att}
                writes = [a for a in att if a.step == "write" and a.outcome in ("ok", "skipped_noop", "skipped_adopt")]
                if writes:
                    row["written"] = writes[-1].finished_at.timestamp()
            if run.finished_at:
                row["finished"] = run.finished_at.timestamp()
        rows.append(row)
    return {r["version_uid"]: r for r in rows}


def dump(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    return path


def host_info() -> dict:
    import platform

    return {"cpus": os.cpu_count(), "python": platform.python_version(), "loadavg_at_start": loadavg(),
            "mem_total_mb": int(Path("/proc/meminfo").read_text().split()[1]) // 1024,
            "when": datetime.now(timezone.utc).isoformat(timespec="seconds")}


# --- where the CPU goes ----------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_table(engine: Engine | None) -> dict[int, tuple[str, float]]:
    ours = {}
    if engine is not None:
        for name, p in engine.procs.items():
            role = "engine.worker" if name in ("w1", "w2") else f"engine.{name}"
            ours[p.pid] = role
            for child in _children(p.pid):
                ours[child] = role
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])
        if pid in ours:
            role = ours[pid]
        elif pid == os.getpid():
            role = "bench (load generator, probes)"
        elif "hapi-fhir" in cmd:
            role = "hapi"
        elif "ehrbase" in cmd and "java" in cmd:
            role = "ehrbase"
        elif stat.split("(", 1)[1].startswith("postgres"):
            role = "postgres"
        else:
            role = "other (not ours)"
        table[pid] = (role, ticks / _TICK)
    return table


class CpuMeter:
    """CPU seconds per role (engine processes, HAPI, EHRbase, PostgreSQL, everyone else) between two snapshots."""

    def __init__(self, engine: Engine | None):
        self.engine, self.start = engine, _cpu_table(engine)
        self.t0 = time.monotonic()

    def read(self) -> dict:
        end, wall = _cpu_table(self.engine), time.monotonic() - self.t0
        roles: dict[str, float] = {}
        for pid, (role, secs) in end.items():
            before = self.start.get(pid)
            delta = secs - (before[1] if before else 0.0)
            roles[role] = roles.get(role, 0.0) + max(0.0, delta)
        return {"wall_s": round(wall, 1), "cpu_s": {k: round(v, 1) for k, v in sorted(roles.items(), key=lambda x: -x[1])},
                "cores_busy": round(sum(roles.values()) / wall, 2) if wall else None}


def tree_state() -> dict:
    """The code the engine ran: HEAD and any uncommitted engine files (other engineers edit the tree)."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--short", "sync", "audit", "conflictdesk"], cwd=ROOT, capture_output=True,
                           text=True).stdout.split("\n")
    return {"head": head, "uncommitted_engine_files": [d.strip() for d in dirty if d.strip()]}
