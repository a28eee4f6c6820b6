"""Malformed compositions (site -> central) and FHIR resources (central -> site) through the runner.

For every drawn case: ``advance`` returns (a worker never crashes), the run
ends at once (never through the transient retry schedule), no error text (dead
letter, attempt rows, audit details, staff mail, log lines) repeats a string
the mutation injected, and either it is a dead letter whose error names the
record and whose rule and path are set and the destination was not written (a
transaction the central fake refused as a whole counts as no write), or the
mutation left a document the engine cannot tell from a valid one (a self
reference, an unbound code, an optional element dropped, a node the mapping
does not read): then it synced whole, every entry R4-valid, in one
transaction. ``bench/results/fuzz.json`` counts the two apart (written when
``CONFLICTDESK_FUZZ_RESULTS`` names it). A control test first
proves the unmutated seeds sync, so a dead letter below is the mutation's.
"""
from __future__ import annotations

import json
import logging
import time

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from audit.models import AuditEvent
from sync.models import DeadLetter, RunAttempt, SyncRun
from sync.workflow.runner import advance

from .conftest import PATIENT_ID
from .mutations import (
    COMPOSITION_SEEDS, FHIR_CATEGORIES, OPENEHR_CATEGORIES, RESOURCE_SEEDS, Case, composition_seed,
    malformed_composition, malformed_resource, resource_seed,
)

MAX_DRIVES = 9  # the first try plus every retry of the schedule, and some slack


def drive(engine, run) -> tuple[str, int, str | None]:
    """Advance until the run ends, fast-forwarding retry waits; (status, drives, exception raised)."""
    status, raised = "", None
    for n in range(1, MAX_DRIVES + 1):
        try:
            with engine.capture(execute=True):
                status = advance(run.pk, "fuzz-worker")
        except BaseException as exc:  # noqa: BLE001 - exactly what must never happen
            return "raised", n, f"{type(exc).__name__}: {str(exc)[:200]}"
        if status != SyncRun.Status.RETRY_WAIT:
            return status, n, raised
        SyncRun.objects.filter(pk=run.pk).update(next_attempt_at=None)
    return status, MAX_DRIVES, raised


def texts_of(engine, run, log: list[str], mails_before: int) -> list[str]:
    out = list(RunAttempt.objects.filter(run=run).values_list("error_detail", flat=True))
    letter = DeadLetter.objects.filter(run=run).first()
    if letter:
        out += [letter.error, letter.rule, letter.path]
    out += [json.dumps(d, ensure_ascii=False) for d in AuditEvent.objects.filter(run_id=run.pk).values_list("detail", flat=True)]
    out += [m.body + m.subject for m in engine.mail.outbox[mails_before:]]
    return out + log


def check(engine, direction: str, case: Case, make_run, writes_before) -> None:
    """Run one case, classify its outcome, record it; never raises (failures are collected)."""
    handler = _LOG
    handler.lines.clear()
    mails_before = len(engine.mail.outbox)
    started = time.perf_counter()
    run = make_run(case)
    status, drives, raised = drive(engine, run)
    engine.results.seconds[direction] += time.perf_counter() - started
    run.refresh_from_db()
    letter = DeadLetter.objects.filter(run=run).first()
    problems = []
    if raised:
        problems.append(f"raised out of the runner: {raised}")
    tolerated = letter is None and status == SyncRun.Status.DONE and not raised
    if letter is None and not tolerated:
        problems.append(f"no dead letter (status {status})")
    elif letter is not None:
        if drives > 1 or letter.cause == DeadLetter.Cause.TRANSIENT_EXHAUSTED:
            problems.append(f"dead-lettered only after {drives} drives ({letter.cause}, step {letter.step})")
        if run.record_key not in letter.error:
            problems.append("error does not name the record")
        if not letter.rule or not letter.path:
            problems.append(f"rule/path missing (rule={letter.rule!r}, path={letter.path[:80]!r}, step {letter.step})")
    leaked = [s for s in case.secrets for t in texts_of(engine, run, handler.lines, mails_before) if s in (t or "")]
    if leaked:
        problems.append("injected value in error text / log")
    written = writes_before()
    if written and not tolerated:
        problems.append(f"{written} write(s) reached the destination")
    outcome = f"dead_letter:{letter.cause}:{letter.step}" if letter else f"status:{status}"
    if tolerated:
        # Still valid after the mutation as far as the engine can tell (R4 validation of every
        # entry by the strict fake, template paths at the site): synced whole, in one write.
        outcome = "synced_whole_as_valid"
    failure = None
    if problems:
        where = f"{case.seed} {case.note[:80]}".strip()
        failure = f"{where}: " + "; ".join(problems) + (f" [first attempt: {_first_error(run)}]" if letter is None or drives > 1 else "")
        outcome = "FAILED:" + outcome
    engine.results.add(direction, case.category, outcome, failure)


def _first_error(run) -> str:
    attempt = RunAttempt.objects.filter(run=run).exclude(error_class="").order_by("pk").first()
    return f"{attempt.step} {attempt.error_class}" if attempt else "-"


_LOG = None


@pytest.fixture(autouse=True)
def leak_log():
    global _LOG
    from .conftest import LeakLog

    _LOG = LeakLog()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(_LOG)
    root.setLevel(logging.DEBUG)
    yield _LOG
    root.removeHandler(_LOG)
    root.setLevel(old_level)


def _assert_clean(engine, direction: str, category: str) -> None:
    counts = engine.results.counts[direction][category]
    failures = engine.results.failures.get(f"{direction}/{category}", [])
    tried = sum(counts.values())
    print(f"{direction}/{category}: {tried} tried, outcomes {dict(counts)}")
    assert tried > 0
    assert not failures, f"{len(failures)} of {tried} failed, e.g.:\n" + "\n".join(failures[:8])


# ------------------------------------------------------------------ controls
def test_the_unmutated_seeds_sync_both_ways(fuzz_engine):
    """Without a mutation every seed reaches DONE: the harness itself dead-letters nothing."""
    for name in COMPOSITION_SEEDS:
        body = json.dumps(composition_seed(name, "00000000-0000-4000-8000-000000000000")).encode()
        run = fuzz_engine.commit(body)
        status, _, raised = drive(fuzz_engine, run)
        assert (status, raised) == (SyncRun.Status.DONE, None), (name, _first_error(run))
    for name in RESOURCE_SEEDS:
        doc = resource_seed(name)
        doc.pop("text", None)
        doc["id"], doc["meta"] = "fuzz-1", {"versionId": "1"}
        for key in ("subject", "patient"):
            if key in doc:
                doc[key] = {"reference": f"Patient/{PATIENT_ID}"}
        run = fuzz_engine.central(json.dumps(doc).encode(), doc["resourceType"])
        status, _, raised = drive(fuzz_engine, run)
        assert (status, raised) == (SyncRun.Status.DONE, None), (name, _first_error(run))
        assert fuzz_engine.openehr.writes, name
        fuzz_engine.openehr.writes.clear()


# ------------------------------------------------------------------ site -> central
@pytest.mark.parametrize("category", OPENEHR_CATEGORIES)
def test_malformed_compositions_dead_letter(fuzz_engine, category):
    engine = fuzz_engine

    @given(case=malformed_composition(category))
    def one(case):
        before = engine.fhir.writes()

        def make_run(c):
            return engine.commit(c.body)

        check(engine, "openehr_to_fhir", case, make_run, lambda: engine.fhir.writes() - before)

    one()
    _assert_clean(engine, "openehr_to_fhir", category)


# ------------------------------------------------------------------ central -> site
@pytest.mark.parametrize("category", FHIR_CATEGORIES)
def test_malformed_resources_dead_letter(fuzz_engine, category):
    engine = fuzz_engine

    @given(case=malformed_resource(category))
    def one(case):
        before = len(engine.openehr.writes)

        def make_run(c):
            rtype = json.loads(resource_body_type(c))
            return engine.central(c.body, rtype)

        check(engine, "fhir_to_openehr", case, make_run, lambda: len(engine.openehr.writes) - before)

    one()
    _assert_clean(engine, "fhir_to_openehr", category)


def resource_body_type(case: Case) -> str:
    """The resource type the central change event names (the seed's: HAPI's URL, not the body, says it)."""
    return json.dumps(resource_seed(case.seed)["resourceType"])
