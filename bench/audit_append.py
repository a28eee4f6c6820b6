"""Audit append throughput: `.venv/bin/python bench/audit_append.py [--events N] [--writers W]`.

Creates its own scratch database (``bench_<dbname>_audit``, audit tables
only, dropped at the end, never the dev database), then times concurrent writers in forked
processes, each calling ``record_event`` the way the engine does:

* spread: every writer on its own partition (sites working side by side);
* hot: every writer on one partition (the worst case: the head lock
  serialises them);
* batch10/batch50: ``record_events`` with 10 or 50 events per transaction
  (a step leaving one event per resource of a FHIR transaction), on
  separate partitions and (batch10-hot) on one;
* spread-async-commit: spread with ``synchronous_commit = off`` in the
  writers' sessions, to show what waiting for the WAL flush costs.

Then it splits the cost of one lone append (hashing in Python, a bare SQL
round trip, the append rolled back, the append committed) with one writer,
and times ``audit_verify`` over everything written. Prints a table and writes bench/results/audit_append.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "audit_append.json"
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "conflictdesk.settings")
os.environ.setdefault("DJANGO_DEBUG", "1")  # development defaults (the settings are production unless asked)

import django  # noqa: E402
import psycopg  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402

settings.DEBUG = False  # as in production: no per-query logging in the cursor

from django.core.management import call_command  # noqa: E402
from django.db import connection, connections, transaction  # noqa: E402

from audit.chain import event_hash  # noqa: E402
from audit.record import record_event, record_events, system_actor  # noqa: E402
from audit.verify import verify_all  # noqa: E402

DETAIL = {"step": "write", "attempt": 1, "entries": 3}


def _event(i: int) -> dict:
    return dict(
        action="sync.write", outcome="ok", actor=system_actor(),
        source="site:bench", source_object=f"obs-{i}", source_version=f"obs-{i}::bench::1",
        destination="central", destination_object=f"Observation/{i}", destination_version="1",
        patient_link_id=i % 997, record_key=f"bench/{i}", run_id=i,
        source_hash="a" * 64, written_hash="b" * 64, readback_hash="b" * 64, detail=DETAIL,
    )


def _writer(partition: str, events: int, per_tx: int, start, done, async_commit: bool = False) -> None:
    connection.ensure_connection()
    if async_commit:
        with connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit TO off")
    start.wait()
    for first in range(0, events, per_tx):
        with transaction.atomic():
            if per_tx == 1:
                record_event(partition=partition, **_event(first))
            else:
                record_events([_event(i) for i in range(first, min(first + per_tx, events))], partition=partition)
    connection.close()
    done.put(os.getpid())


def run_scenario(name: str, writers: int, events: int, per_tx: int, hot: bool, async_commit: bool = False) -> dict:
    connections.close_all()  # each forked writer opens its own connection
    ctx = multiprocessing.get_context("fork")
    start, done = ctx.Barrier(writers + 1), ctx.Queue()
    procs = [
        ctx.Process(target=_writer, args=("bench:hot" if hot else f"bench:{name}:{w}", events, per_tx, start, done, async_commit))
        for w in range(writers)
    ]
    for p in procs:
        p.start()
    start.wait()
    began = time.perf_counter()
    for _ in procs:
        done.get(timeout=600)
    elapsed = time.perf_counter() - began
    for p in procs:
        p.join()
        if p.exitcode:
            raise SystemExit(f"writer failed in {name}")
    total = writers * events
    return {"scenario": name, "writers": writers, "events": total, "events_per_tx": per_tx,
            "partitions": 1 if hot else writers, "synchronous_commit": "off" if async_commit else "server default", "seconds": round(elapsed, 3), "events_per_s": round(total / elapsed)}


@contextmanager
def scratch_database():
    """A fresh database holding only the audit tables, dropped afterwards.

    Only ``audit`` is migrated, so the figure does not depend on (or wait for)
    the other apps' migrations; the dev and test databases are never touched.
    """
    params = connection.settings_dict
    name = f"bench_{params['NAME']}_audit"
    admin = psycopg.connect(dbname="postgres", host=params["HOST"], port=params["PORT"] or None,
                            user=params["USER"], password=params["PASSWORD"], autocommit=True)
    admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
    admin.execute(f'CREATE DATABASE "{name}"')
    connections.close_all()
    params["NAME"] = name
    try:
        call_command("migrate", "audit", verbosity=0)
        yield
    finally:
        connections.close_all()
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()


class _Rollback(Exception):
    pass


def _per_event_us(action, n: int) -> float:
    began = time.perf_counter()
    for i in range(n):
        action(i)
    return round((time.perf_counter() - began) / n * 1e6, 1)


def cost_split(n: int) -> dict:
    """Microseconds for one event appended alone by one idle writer, split by where they go."""
    sample = {"partition": "p", "partition_seq": 1, "occurred_at": datetime.now(timezone.utc), **_event(0),
              "prev_hash": "0" * 64}

    def round_trip(i):
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")

    def rolled_back(i):
        try:
            with transaction.atomic():
                record_event(partition="bench:split", **_event(i))
                raise _Rollback
        except _Rollback:
            pass

    split = {
        "hash_us": _per_event_us(lambda i: event_hash(sample), n),
        "sql_round_trip_us": _per_event_us(round_trip, n),
        # Committed first, so the head row exists and the rolled-back appends do not create it each time.
        "append_committed_us": _per_event_us(lambda i: record_event(partition="bench:split", **_event(i)), n),
        "append_rolled_back_us": _per_event_us(rolled_back, n),
    }
    split["commit_us"] = round(split["append_committed_us"] - split["append_rolled_back_us"], 1)
    return split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2500, help="Events per writer per scenario.")
    parser.add_argument("--writers", type=int, default=4)
    args = parser.parse_args()

    load_before = [round(x, 2) for x in os.getloadavg()]
    with scratch_database():
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            synchronous_commit = cursor.fetchone()[0]
        scenarios = [
            run_scenario("spread", args.writers, args.events, 1, hot=False),
            run_scenario("hot", args.writers, args.events, 1, hot=True),
            run_scenario("batch10", args.writers, args.events, 10, hot=False),
            run_scenario("batch10-hot", args.writers, args.events, 10, hot=True),
            run_scenario("batch50", args.writers, args.events, 50, hot=False),
            # Not a setting for the audit to change: measured to show what waiting for the WAL flush costs.
            run_scenario("spread-async-commit", args.writers, args.events, 1, hot=False, async_commit=True),
        ]
        split = cost_split(1000)
        began = time.perf_counter()
        reports = verify_all()
        verify_seconds = time.perf_counter() - began
        assert all(r.broken is None for r in reports), [r.broken.describe() for r in reports if r.broken]
        verified = sum(r.events for r in reports)

    result = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "synchronous_commit": synchronous_commit,
                    "load_average_before": load_before, "load_average_after": [round(x, 2) for x in os.getloadavg()]},
        "target_events_per_s": 5000,
        "scenarios": scenarios,
        "cost_per_event_one_writer": split,
        "verify": {"events": verified, "seconds": round(verify_seconds, 3),
                   "events_per_s": round(verified / verify_seconds)},
    }
    for s in scenarios:
        print(f"{s['scenario']:>19}: {s['writers']} writers, {s['partitions']} partitions, "
              f"{s['events_per_tx']} events/tx: {s['events_per_s']:>6} events/s ({s['events']} in {s['seconds']} s)")
    print("one writer, per event (us):", json.dumps(split))
    print(f"verify: {result['verify']['events_per_s']} events/s over {verified} events, every chain whole")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
