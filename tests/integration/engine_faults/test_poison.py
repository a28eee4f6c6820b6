"""A poison run: its write step takes the worker down every time (SIGKILL, three times in a row).

Without a claim count it would be re-claimed after every lease forever, blocking every later
run of its record. With it, the fourth claim dead-letters it as ``crash_loop`` with its step;
re-driven once the cause is gone, it syncs exactly once.
"""
from __future__ import annotations

import time

import pytest

from sync.actions import do_redrive_dead_letter
from sync.models import DeadLetter, RunAttempt, SyncRun
from tests.harness import commit, now, wait_for
from tests.harness.checks import LEASE_SECONDS, assert_survived, synced

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KILLS = 3  # CONFLICTDESK_CRASH_LOOP_CLAIMS, the default
# Every HAPI request waits this long in the proxy: a window to kill the worker in, shorter than
# the worker's HTTP timeout (5 s, checks.worker_env), so the step never fails on its own.
HOLD_MS = 3500


def _transaction_posts(proxy) -> set[int]:
    return {e.seq for e in proxy.events("delay") if e.method == "POST" and (e.path or "").rstrip("/").endswith("/fhir")}


def _kill_in_the_write(worker, proxy, run_q, claim: int) -> None:
    """Wait until our run's ``claim``-th claim is in its write with its transaction held in the proxy,
    then SIGKILL the worker (process group: pool, beat and all)."""
    at_write = run_q.filter(step="write", status="running", claims=claim)
    deadline, before = time.monotonic() + 120, set()
    while time.monotonic() < deadline:  # the posts seen while that claim was still short of its write
        seen = _transaction_posts(proxy)
        if at_write.exists():
            break
        before = seen
        time.sleep(0.02)
    else:
        raise AssertionError("the run never reached its write")
    wait_for(lambda: _transaction_posts(proxy) - before, timeout=HOLD_MS / 1000, every=0.02,
             what="our transaction to be held in the proxy")
    worker.kill()


def test_a_worker_killed_three_times_in_the_same_step_dead_letters_the_run_as_crash_loop(
    worker, hapi_proxy, site, cdr, fhir, ehr
):
    started = now()
    hapi_proxy.delay(HOLD_MS)
    ref = commit(cdr, ehr, 102)
    run_q = SyncRun.objects.filter(change_event__source_version=ref.version_uid)
    for kill in range(KILLS):
        worker.start()  # a fresh worker: the sweeper re-sends the run once its lease lapses
        _kill_in_the_write(worker, hapi_proxy, run_q, claim=kill + 1)
        run = run_q.get()
        assert (run.status, run.step, run.claims) == (SyncRun.Status.RUNNING, "write", kill + 1)
    worker.start()
    letter = wait_for(lambda: DeadLetter.objects.filter(run__change_event__source_version=ref.version_uid).first(),
                      timeout=4 * LEASE_SECONDS + 30, every=0.25, what="the crash_loop dead letter")
    assert (letter.cause, letter.step) == (DeadLetter.Cause.CRASH_LOOP, "write")
    last = RunAttempt.objects.filter(run=letter.run).order_by("started_at", "pk").last()
    assert (last.step, last.outcome, last.error_class) == ("write", "dead_letter", "CrashLoop")
    # No write attempt was ever recorded: each ended with its worker.
    assert not RunAttempt.objects.filter(run=letter.run, step="write").exclude(outcome="dead_letter").exists()
    hapi_proxy.clear()
    do_redrive_dead_letter(letter, acting_user=None)
    link = wait_for(lambda: synced(ref), timeout=60, what="the re-driven run to sync")
    # The killed transactions may have reached HAPI (the proxy forwards after its delay): the
    # conditional writes make each resource exist once, written once.
    assert_survived(site, fhir, started, [ref], [link])
