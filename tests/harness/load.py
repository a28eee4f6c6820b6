"""Load on the real EHRbase, and what the engine made of it.

``LoadGenerator`` commits vital-signs compositions at a fixed rate over several
sites (the benchmarks' and the latency test's load); ``SteadyLoad`` commits one
every ``period`` s at one EHR until stopped (the fault tests' background load).
``held`` is the benchmarks' definition of a rate the engine holds, and
``held_latency_bound`` what that definition implies for latency. Django is
imported inside the functions: a benchmark imports this before settings exist.
"""
from __future__ import annotations

import random
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

from .report import log
from .stats import summary
from .vitals import template_opt, vitals

TERMINAL = ("done", "dead_letter", "conflict")

# --- held: the benchmarks' definition ----------------------------------------------------

# A rate the engine holds on this 2-core box with every server on it (bench/e2e_latency.py --held-rate):
# bench/throughput.py holds 6/s for ten minutes; 2/s leaves room for the rest of a test run.
HELD_RATE = 2.0
HELD_FINISHED_SHARE = 0.9


def backlog_allowance(rate: float) -> float:
    """The backlog (committed, not yet finished) a held step may end with: 2 s of load, at least 3 events."""
    return max(3, 2 * rate)


def held(committed: int, finished: int, rate: float) -> bool:
    """bench/throughput.py's test of a step: the engine finished at least 90 % of what was committed
    during the step, and the backlog at its end is within ``backlog_allowance(rate)``."""
    return finished >= HELD_FINISHED_SHARE * committed and committed - finished <= backlog_allowance(rate)


def held_latency_bound(detect_period: float, rate: float) -> float:
    """The latest an event reaches the central server when the engine holds ``rate``.

    It is detected within one detection period (the site's poll interval, plus the
    beat tick when beat drives polling), and a held engine has at most
    ``backlog_allowance(rate)`` events ahead of it, which it finishes at ``rate``
    events per second or faster, then its own: ``(allowance + 1) / rate``.
    """
    return detect_period + (backlog_allowance(rate) + 1) / rate


def finished_count(version_uids) -> int:
    from sync.models import SyncRun

    return SyncRun.objects.filter(change_event__source_version__in=list(version_uids), status__in=TERMINAL).count()


def done_count(version_uids) -> int:
    """Runs of these commits that are DONE: what a rate counts (a dead-lettered run ended, but synced nothing)."""
    from sync.models import SyncRun

    return SyncRun.objects.filter(change_event__source_version__in=list(version_uids), status="done").count()


# --- sites, patients ------------------------------------------------------------------------

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


# --- a fixed rate over several sites ----------------------------------------------------------

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


def warm_up(sites, timeout: float = 300) -> bool:
    """One commit per EHR, one at a time per site, synced before anything is measured; True when every run is done.

    Creates each central Patient and warms every worker process; sequential so
    the first runs of one new patient never race on HAPI's conditional create.
    """
    gen = LoadGenerator(sites, rate=4, seconds=max(len(e) for _, e in sites) * len(sites) / 4, threads=1, seed=-1)
    gen.run()
    versions = [c.version_uid for c in gen.commits]
    synced = wait_done(versions, timeout, what="warm-up")
    done = done_count(versions)
    log(f"warm-up: {len(gen.commits)} commits, {done} runs done")
    return synced and not gen.failures and done == len(versions)  # a run that ended otherwise (dead letter): no


def wait_done(version_uids: list[str], timeout: float, what: str = "runs") -> bool:
    from sync.models import SyncRun

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if finished_count(version_uids) >= len(version_uids):
            return True
        time.sleep(0.5)
    counts = {}
    for status in SyncRun.objects.filter(change_event__source_version__in=version_uids).values_list("status", flat=True):
        counts[status] = counts.get(status, 0) + 1
    log(f"{what}: timed out after {timeout:.0f} s; runs by status {counts} of {len(version_uids)} commits")
    return False


def run_timings(commits: list[Commit]) -> dict:
    """Per-event timings from SyncRun/ChangeEvent/RunAttempt rows (epoch seconds), by version uid."""
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


# --- a steady trickle at one EHR ---------------------------------------------------------------

def commit(cdr, ehr, systolic: float):
    """One corpus vital-signs composition (template vital_signs_ehrn) with this systolic value."""
    from sync.clients.openehr import template_id_of

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
        from sync.clients.openehr import OpenEHRClient, template_id_of

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
