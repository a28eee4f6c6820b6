"""What the engine fault tests check after each fault, and the worker settings they run with.

Real EHRbase, real HAPI, a real Celery worker subprocess (``engine.Worker``, with
its embedded beat) on the test database. The shared servers are reached through
``faultproxy.FaultProxy`` (in the test's process), whose ``down`` and ``delay``
make the network faults; the broker is a ``broker.PrivateRedis`` the tests start
and restart. Every wait is bounded. Imports Django models: tests only.
"""
from __future__ import annotations

import os
from datetime import timedelta

from django.conf import settings

from audit.verify import verify_all
from sync.clients.errors import NotFound
from sync.identity import SOURCE_SYSTEM, provenance_id
from sync.mapping.identifiers import source_identifier_value
from sync.models import RecordLink, RunAttempt, SyncRun
from sync.workflow.reconcile import reconcile_site

from .database import db_url_of
from .engine import engine_env
from .waits import now, wait_for

LEASE_SECONDS = 6
# How late a retry may start is not a guess at the machine: ``start_lag_bound`` derives it from
# the mechanism and what this test's own runs measured. ``slack`` overrides it (a fault of our
# own database: PostgreSQL down delays every start by the outage).
RETRY_SLACK_SECONDS = None
# Celery's worker fires an ETA timer from its event loop, which sleeps exactly until the next
# timer is due; this is the loop's own latency (a wake-up and a pool write), not a tick to wait for.
TIMER_SECONDS = 0.05


def worker_env(database: dict, broker_url: str, fhir_url: str) -> dict:
    """The worker's settings: the test database, the private broker, HAPI as the test reaches it, fast timers."""
    return engine_env(
        db_url_of(database), broker_url, fhir_url,
        CONFLICTDESK_SWEEP_SECONDS=1,
        CONFLICTDESK_REDISPATCH_AFTER_SECONDS=3,
        CONFLICTDESK_RUN_LEASE_SECONDS=LEASE_SECONDS,
        CONFLICTDESK_HTTP_TIMEOUT_SECONDS=5,
        CONFLICTDESK_LOG_LEVEL="INFO",
    )


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
        key = source_identifier_value(fhir.read(r["type"], r["id"]))
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


def _stretches():
    """Each claim's work as (run id, first attempt's start, last attempt's finish): one task on one pool process."""
    attempts = list(RunAttempt.objects.exclude(worker="").order_by("run_id", "started_at", "pk")
                    .values_list("run_id", "worker", "started_at", "finished_at", "outcome"))
    longest_attempt = max(((f - s).total_seconds() for _, _, s, f, _ in attempts if f), default=0.0)
    stretches, current = [], None
    for run_id, worker, started, finished, outcome in attempts:
        if current and current[0] == (run_id, worker):  # the same claim goes on
            current[2] = finished
        else:
            current = [(run_id, worker), started, finished]
            stretches.append(current)
        if outcome == "transient":  # the claim ends: the run waits for its retry
            current = None
    return [(key[0], s, f) for key, s, f in stretches], longest_attempt


class StartLagBound:
    """How late each retry may start, from the mechanism and what this test's own runs measured.

    A retry is due at ``next_attempt_at``. Its hint is a countdown sent when that transaction
    commits, and the claim refuses an early one: the lag is never negative. Late, it adds up from

    1. the commit and send of the hint, and the claim path (the record's advisory lock, the run's
       row lock, one query, one update, then the run's re-read): transactions lighter than a step's
       own commit, each bounded by the longest step attempt the test recorded (``2 x attempt``);
    2. the worker's ETA timer (``TIMER_SECONDS``: its event loop sleeps until the timer is due);
    3. a free pool process: the retry waits for the tasks running at its due time and for those
       that took a process before it while it waited (retries due earlier, runs sent earlier),
       ``k`` of them, measured from the attempts; on ``c`` processes that is at most
       ``ceil((k + c) / c)`` task lengths, a task being one claim's stretch of steps (the longest
       the test recorded).

    So a retry that waited with a process free, or behind nothing, must have started within
    ``2 x attempt + timer + one task``; only queueing the test can see explains more.
    """

    def __init__(self, concurrency: int | None = None):
        self.stretches, self.longest_attempt = _stretches()
        self.longest_task = max(((f - s).total_seconds() for _, s, f in self.stretches), default=0.0)
        # The run pool's processes: what engine.Worker starts (-c).
        self.concurrency = concurrency or int(os.environ.get("CONFLICTDESK_TEST_WORKER_CONCURRENCY", "2"))
        self.worst = None  # (lag, its bound, tasks ahead) of the retry closest to its bound

    def __call__(self, run_id: int, due, started) -> tuple[float, int]:
        ahead = sum(1 for other, s, _ in self.stretches if other != run_id and due <= s < started)
        c = self.concurrency
        bound = 2 * self.longest_attempt + TIMER_SECONDS + -(-(ahead + c) // c) * self.longest_task
        return bound, ahead

    def check(self, run_id: int, lag: float, due, started) -> None:
        bound, ahead = self(run_id, due, started)
        assert 0 <= lag <= bound, (run_id, lag, bound, ahead)
        if self.worst is None or bound - lag < self.worst[1] - self.worst[0]:
            self.worst = (lag, bound, ahead)

    def parts(self) -> dict:
        return {"longest_attempt": round(self.longest_attempt, 3), "longest_task": round(self.longest_task, 3),
                "timer": TIMER_SECONDS,
                "closest (lag, bound, tasks ahead)": tuple(round(x, 3) for x in self.worst) if self.worst else None}


_last_bound: StartLagBound | None = None


def start_lag_bound() -> tuple[float, dict]:
    """The bound for a retry that waited behind nothing (see ``StartLagBound``), and the parts of the
    last check (``retry_gaps``): which retry came closest to its own bound."""
    b = _last_bound or StartLagBound()
    return 2 * b.longest_attempt + TIMER_SECONDS + b.longest_task, b.parts()


def retry_gaps(runs, slack: float | None = RETRY_SLACK_SECONDS) -> list[tuple[float, float]]:
    """(scheduled, observed) for every retry of these runs, after checking each streak's schedule.

    A streak is the consecutive transient failures of one step; its scheduled delays must be
    the engine's schedule from the start (1, 2, 4, ... s), ending in a dead letter after the
    seventh attempt, and each next attempt must start that long after the failure: never
    early (its recorded start lag is >= 0), late by at most what ``StartLagBound`` derives for
    it (or ``slack``, when a fault of our own database delays everything).
    """
    global _last_bound
    schedule = [float(s) for s in settings.CONFLICTDESK_RETRY_DELAYS]
    bound = _last_bound = StartLagBound()
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
            lag = after.start_lag_seconds
            assert lag is not None, (run.pk, before.step, "no start lag recorded")
            if slack is not None:
                assert 0 <= lag <= slack, (run.pk, before.step, before.scheduled_delay_seconds, lag, slack)
            else:
                due = after.started_at - timedelta(seconds=lag)
                bound.check(run.pk, lag, due, after.started_at)
            assert observed >= before.scheduled_delay_seconds, (run.pk, before.step, observed)  # never early
            gaps.append((before.scheduled_delay_seconds, round(observed, 2)))
    return gaps


def max_start_lag(runs) -> float:
    lags = RunAttempt.objects.filter(run__in=runs, start_lag_seconds__isnull=False).values_list(
        "start_lag_seconds", flat=True)
    return max(lags, default=0.0)


def runs_of(refs):
    return list(SyncRun.objects.filter(change_event__source_version__in=[r.version_uid for r in refs]))


def assert_survived(site, fhir, started, refs, links, *, slack: float | None = RETRY_SLACK_SECONDS):
    """The issue's after-the-fault checks: every version accounted for, nothing twice, the chain intact."""
    for ref, link in zip(refs, links):
        assert_one_of_each(fhir, link, ref)
    assert_reconciled(site, started, refs)
    assert_audit_chain_verifies()
    return retry_gaps(runs_of(refs), slack)
