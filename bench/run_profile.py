"""Profile forward runs in process: `.venv/bin/python bench/run_profile.py [--runs 20] [--top 25]`.

Real EHRbase (site 1, :8101) and real HAPI, a scratch database, no Celery: each
run is a new vital-signs composition committed at the site, its ChangeEvent and
SyncRun made as detection makes them, and ``advance`` called in this process.
One warm-up run first (the patient's central Patient and link, the template
cache, the HTTP clients). Per measured run: SQL statements (a Django
``execute_wrapper``: every statement the ORM or a cursor sends, savepoints
included), commits (transactions committed: Django's ``commit`` calls plus
statements run in autocommit mode that write), the worker's CPU seconds
(``time.process_time``) and wall time. The last run (``--profiled N``: the last N)
is profiled with cProfile: ``--timer wall`` (``--top`` functions by cumulative time:
where a run waits) or ``--timer cpu`` (process time, by own time: where the
worker's CPU goes; profiling inflates the run's own CPU figures). Every run's CPU is also split by
phase without a profiler (``PhaseClock``: the claim, each step, the commits, the driver's SQL share;
medians in ``cpu_ms_per_run_by_phase_median``). Writes bench/results/run_profile_<label>.json.

CPU split (``bench/cpu_split.py``): per run, the CPU milliseconds of each component, in two
phases: ``load_generator`` (the site commit and the ChangeEvent/SyncRun rows, as detection
makes them: not the engine's work) and ``engine_run`` (``advance``): this process, its own
PostgreSQL backend, HAPI's JVM and its database backends, the site's EHRbase JVM and its
backends. The servers are shared on this machine, so their figures include anyone else's
requests in the same windows: an idle window before each run (``--idle`` s) measures that
background, and the file has the figures both as measured and net of it, with the load
average and each JVM's flags.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("CONFLICTDESK_LOG_LEVEL", "WARNING")
from bench import cpu_split  # noqa: E402
from tests import harness as E  # noqa: E402

_WRITES = ("INSERT", "UPDATE", "DELETE", "WITH")


class Counter:
    """SQL statements and commits on the default connection while installed."""

    def __init__(self, connection):
        self.connection, self.statements, self.commits, self.kinds = connection, 0, 0, {}

    def __call__(self, execute, sql, params, many, context):
        self.statements += 1
        head = sql.lstrip().split(None, 1)[0].upper()
        self.kinds[head] = self.kinds.get(head, 0) + 1
        if self.connection.get_autocommit() and head in _WRITES:
            self.commits += 1  # a write in autocommit mode is its own transaction
        return execute(sql, params, many, context)

    def __enter__(self):
        self._commit = self.connection.commit
        counter = self

        def commit():
            counter.commits += 1
            return counter._commit()

        self.connection.commit = commit
        self._wrap = self.connection.execute_wrapper(self)
        self._wrap.__enter__()
        return self

    def __exit__(self, *exc):
        self._wrap.__exit__(*exc)
        self.connection.commit = self._commit


class PhaseClock:
    """This process's CPU time per phase of a run while installed: the claim, each step, the commits.

    Wraps the functions the runner looks up at call time (``state.claim_run``, the step table,
    ``commits.commit``), so the engine is unchanged. ``sql`` is the part of every phase spent from the
    statement's send to its answer in the driver (psycopg's own CPU; Django's query building is in the
    phase). A step's HTTP requests are in the step. The process clock counts every thread: the lease
    heartbeat renews once per ``CONFLICTDESK_LEASE_HEARTBEAT_SECONDS``, a sub-millisecond share.
    """

    def __init__(self):
        self.runs: list[dict[str, float]] = []
        self.current: dict[str, float] = {}

    def timed(self, name: str, fn):
        def wrapper(*args, **kwargs):
            t0 = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.current[name] = self.current.get(name, 0.0) + time.process_time() - t0
        return wrapper

    def sql(self, execute, sql, params, many, context):
        t0 = time.process_time()
        try:
            return execute(sql, params, many, context)
        finally:
            self.current["sql"] = self.current.get("sql", 0.0) + time.process_time() - t0

    def install(self, connection):
        from sync.workflow import commits, forward, state

        state.claim_run = self.timed("claim", state.claim_run)
        commits.commit = self.timed("commits", commits.commit)
        for step, fn in list(forward.STEPS.items()):
            forward.STEPS[step] = self.timed(f"step.{step}", fn)
        self._wrap = connection.execute_wrapper(self.sql)
        self._wrap.__enter__()

    def next_run(self):
        if self.current:
            self.runs.append(self.current)
        self.current = {}

    def summary(self) -> dict[str, float]:
        """Median CPU ms per run of each phase (``sql`` overlaps the others)."""
        self.next_run()
        names = sorted({k for r in self.runs for k in r})
        return {k: round(statistics.median(r.get(k, 0.0) for r in self.runs) * 1000, 2) for k in names}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--idle", type=float, default=0.5, help="seconds of the idle window before each run")
    ap.add_argument("--label", default="after", help="results file: bench/results/run_profile_<label>.json")
    ap.add_argument("--profiled", type=int, default=1, help="the last N runs are profiled (one profile for all)")
    ap.add_argument("--timer", choices=("wall", "cpu"), default="wall",
                    help="cProfile's clock: wall (where a run waits) or cpu (process time: where the worker's CPU "
                         "goes; sorted by own time)")
    ap.add_argument("--stats", help="also write the raw profile here (pstats / snakeviz)")
    args = ap.parse_args()
    with E.scratch_database("profile"):
        _profile(args)


def _profile(args) -> None:
    from django.db import connection

    from sync.clients.openehr import OpenEHRClient
    from sync.identity import record_key
    from sync.models import ChangeEvent, Direction, RunAttempt, SyncRun
    from sync.workflow import dispatch
    from sync.workflow.runner import advance
    from tests.harness.vitals import template_opt

    dispatch.send = lambda run_id, countdown: None  # no broker: this process drives the runs
    url = E.SITE_URL.format(port=8101)
    [(site, [ehr])] = E.setup_sites([url], 30, 1, f"p{os.getpid()}")
    cdr = OpenEHRClient(url)
    cdr.upload_template(template_opt())  # the runs commit its FLAT vital signs; a fresh CDR lacks it

    def one(systolic: float):
        ref = E.commit(cdr, ehr, systolic)
        event = ChangeEvent.objects.create(
            direction=Direction.TO_FHIR, source=f"site:{site.name}", site=site, source_object_id=ref.uid,
            source_version=ref.version_uid, version_number=1, ehr_id=ehr)
        return SyncRun.objects.create(change_event=event, direction=Direction.TO_FHIR, site=site,
                                      record_key=record_key(site.name, ref.uid))

    warm = one(120)
    assert advance(warm.pk, "profile") == SyncRun.Status.DONE, "warm-up run did not finish"
    hapi, ehrbase = E.listener(8090), E.listener(8101)
    site_db = Path(__file__).resolve().parents[1] / ".run" / "ehrbase-site1.db"  # the database site 1 runs on
    split = cpu_split.Split({
        "engine": lambda: [os.getpid()],
        "engine_postgres": cpu_split.own_backend(connection),
        "hapi": lambda: hapi,
        "hapi_postgres": cpu_split.backends(connection, "hapi"),
        "ehrbase": lambda: ehrbase,
        "ehrbase_postgres": cpu_split.backends(
            connection, site_db.read_text().strip() if site_db.exists() else "ehrbase_site1"),
    })
    load_before = E.loadavg()
    rows = []
    phases = PhaseClock()
    phases.install(connection)
    profile = cProfile.Profile(time.process_time) if args.timer == "cpu" else cProfile.Profile()
    for i in range(args.runs):
        with split.window("idle"):  # nothing asked of anyone: the shared servers' background rate
            time.sleep(args.idle)
        with split.window("load_generator"):
            run = one(121 + i)
        phases.next_run()  # only ``advance`` below is counted
        profiled = i >= args.runs - args.profiled
        with split.window("engine_run"), Counter(connection) as counter:
            cpu, wall = time.process_time(), time.perf_counter()
            if profiled:
                profile.enable()
            status = advance(run.pk, "profile")
            if profiled:
                profile.disable()
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        assert status == SyncRun.Status.DONE, status
        steps = RunAttempt.objects.filter(run=run).count()
        rows.append({"statements": counter.statements, "commits": counter.commits, "cpu_ms": cpu * 1000,
                     "wall_ms": wall * 1000, "attempt_rows": steps, "kinds": counter.kinds})
    if args.stats:
        profile.dump_stats(args.stats)
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime" if args.timer == "cpu" else "cumulative").print_stats(args.top)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    result = {
        "commit": commit,
        "dirty": bool(subprocess.run(["git", "status", "--porcelain", "sync/workflow"], capture_output=True,
                                     text=True).stdout.strip()),
        "runs": args.runs,
        "statements_per_run": _summary([r["statements"] for r in rows]),
        "commits_per_run": _summary([r["commits"] for r in rows]),
        "cpu_ms_per_run": _summary([r["cpu_ms"] for r in rows]),
        "cpu_ms_per_run_by_phase_median": phases.summary(),
        "wall_ms_per_run": _summary([r["wall_ms"] for r in rows]),
        "statement_kinds_last_run": rows[-1]["kinds"],
        "attempt_rows_per_run": rows[-1]["attempt_rows"],
        "cpu_ms_per_run_by_component": split.per_run_ms(args.runs),
        "cpu_ms_per_run_by_component_net_of_background": split.net_ms(args.runs),
        "loadavg_before_after": [load_before, E.loadavg()],
        "host": E.host_info(),
    }
    print(out.getvalue())
    print(json.dumps({k: v for k, v in result.items() if k != "host"}, indent=2))
    E.dump(f"run_profile_{args.label}", {**result, "profile_top": out.getvalue().splitlines()[:args.top + 12]})


def _summary(values):
    return {"median": round(statistics.median(values), 2), "min": round(min(values), 2),
            "max": round(max(values), 2)}


if __name__ == "__main__":
    main()
