"""Checkpoints at external effects (invariant 6): three commits per forward run, a crash anywhere
replays the pure steps from the last commit to the same bytes, every step keeps its attempt row
and its audit event, and the run's events are appended in one chained batch."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.chain import canonical_json
from audit.models import AuditEvent
from audit.verify import verify_all
from sync.models import EngineWrite, RecordLink, RunAttempt, Step, SyncRun
from sync.workflow import forward
from sync.workflow.runner import advance

STEPS = [s.value for s in Step]
ACTIONS = ["sync.detect", "sync.validate_source", "guard.checked", "sync.transform", "sync.validate_target",
           "sync.check_conflict", "sync.write", "sync.audit", "sync.acknowledge"]
VO_B = "22222222-2222-4222-8222-222222222222"


class WorkerDied(BaseException):
    """A SIGKILL as the runner sees it: nothing it can catch or record."""


def production_counts(queries) -> tuple[int, int]:
    """(SQL statements, commits) as production would make them.

    The test runs inside one transaction, so each top-level ``atomic`` is a SAVEPOINT here and a
    BEGIN ... COMMIT there (no statement of its own); a write outside any is an autocommit.
    Savepoints nested in those are real statements in production too and are counted.
    """
    depth, statements, commits = 0, 0, 0
    for q in queries:
        sql = q["sql"].lstrip().upper()
        if sql.startswith("SAVEPOINT"):
            depth += 1
            if depth == 1:
                commits += 1
                continue
        elif sql.startswith("RELEASE SAVEPOINT"):
            depth -= 1
            if depth == 0:
                continue
        elif depth == 0 and sql.split(None, 1)[0] in ("INSERT", "UPDATE", "DELETE"):
            commits += 1
        statements += 1
    return statements, commits


def _lapse(run):
    SyncRun.objects.filter(pk=run.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))


def _actions(run) -> list[str]:
    return list(AuditEvent.objects.filter(run_id=run.pk).order_by("partition_seq").values_list("action", flat=True))


def _assert_chained(run):
    events = list(AuditEvent.objects.filter(run_id=run.pk).order_by("partition_seq"))
    assert [e.partition_seq for e in events] == list(range(events[0].partition_seq, events[0].partition_seq + len(events)))
    assert all(b.prev_hash == a.hash for a, b in zip(events, events[1:]))
    assert not [r.broken.describe() for r in verify_all() if r.broken]


def test_a_forward_run_commits_three_times_in_at_most_25_statements(engine, django_capture_on_commit_callbacks):
    # the patient's first record (its central Patient and link), another new record, an update
    for make in (lambda: engine.commit(36.9), lambda: engine.commit(37.1, vo=VO_B),
                 lambda: engine.commit(37.4, version=2, vo=VO_B)):
        run = make()
        with django_capture_on_commit_callbacks(execute=True), CaptureQueriesContext(connection) as ctx:
            assert advance(run.pk, "w1") == SyncRun.Status.DONE
        statements, commits = production_counts(ctx.captured_queries)
        print(f"run {run.pk}: {statements} statements, {commits} commits")
        assert commits <= 3, commits
        assert statements <= 25, [q["sql"][:90] for q in ctx.captured_queries]
        assert list(RunAttempt.objects.filter(run=run).values_list("step", flat=True)) == STEPS
        assert _actions(run) == ACTIONS
        _assert_chained(run)


def test_the_plan_commits_before_the_write_and_holds_no_computed_resources(engine, monkeypatch):
    seen = {}
    real_write = forward.STEPS[Step.WRITE]

    def write(ctx):
        stored = SyncRun.objects.get(pk=ctx.run.pk)
        seen.update(step=stored.step, status=stored.status, checkpoint=stored.checkpoint, pending=stored.pending_audit,
                    attempts=list(RunAttempt.objects.filter(run=stored).values_list("step", flat=True)),
                    events=AuditEvent.objects.filter(run_id=stored.pk).count())
        return real_write(ctx)

    monkeypatch.setitem(forward.STEPS, Step.WRITE, write)
    run = engine.commit(37.1)
    assert engine.drive(run) == SyncRun.Status.DONE
    assert (seen["step"], seen["status"]) == (Step.WRITE, SyncRun.Status.RUNNING)
    assert seen["attempts"] == STEPS[:5]
    assert seen["events"] == 0  # deferred to the write's commit, then appended in one batch
    cp = seen["checkpoint"]
    assert cp["source_payload"]["content"][0]["value"] == 37.1 and cp["plan"] == "write"
    assert cp["written_hash"] and cp["content_hash"] and len(seen["pending"]) == 6
    assert not {"resources", "provenance", "content"} & set(cp)  # replayed, never stored
    assert SyncRun.objects.get(pk=run.pk).pending_audit is None


@pytest.mark.parametrize("step,when", [(s, "after") for s in STEPS] + [(Step.WRITE.value, "before")])
def test_a_crash_anywhere_replays_from_the_last_commit_to_the_same_bytes(engine, monkeypatch, step, when):
    """The worker dies in ``step`` (after it did its work, or, for the write, before sending it); a
    second worker replays from the last commit. Every transform pass and every bundle is the same
    JSON, byte for byte, nothing is written twice, and each step has one attempt and one event."""
    outputs = {"mapped": [], "bundle": []}
    real_map, real_build = forward._map, forward.build_transaction

    def mapping_pass(ctx, **kw):
        mapped = real_map(ctx, **kw)
        outputs["mapped"].append(canonical_json({k: mapped[k] for k in ("resources", "provenance", "content")}))
        return mapped

    def building(*args):
        built = real_build(*args)
        outputs["bundle"].append(canonical_json(built[0]))
        return built

    monkeypatch.setattr(forward, "_map", mapping_pass)
    monkeypatch.setattr(forward, "build_transaction", building)
    real_step, died = forward.STEPS[step], []

    def dying(ctx):
        if when == "before" and not died:
            died.append(step)
            raise WorkerDied()
        result = real_step(ctx)
        if not died:
            died.append(step)
            raise WorkerDied()
        return result

    monkeypatch.setitem(forward.STEPS, step, dying)
    run = engine.commit(37.1)
    with pytest.raises(WorkerDied):
        engine.drive(run, "w1")
    _lapse(run)
    assert engine.drive(run, "w2") == SyncRun.Status.DONE
    assert len(set(outputs["mapped"])) == 1  # every pass, replays included, mapped the same bytes
    assert len(outputs["mapped"]) >= (2 if STEPS.index(step) >= STEPS.index("transform") else 1)
    assert len(set(outputs["bundle"])) == 1
    sent = [canonical_json(b) for b in engine.fhir.transactions]
    assert set(sent) == set(outputs["bundle"])  # what was sent is what was planned, every time
    assert len(sent) == (2 if (step, when) in {("write", "after"), ("audit", "after"), ("acknowledge", "after")} else 1)
    assert engine.fhir.count("Observation") == 1 and engine.fhir.count("Provenance") == 1
    link = RecordLink.objects.get()
    assert link.openehr_version_uid == run.change_event.source_version
    assert EngineWrite.objects.filter(run=run).count() == 1
    attempts = list(RunAttempt.objects.filter(run=run).values_list("step", "outcome"))
    assert [s for s, _ in attempts] == STEPS and {o for _, o in attempts} <= {"ok", "write"}
    assert _actions(run) == ACTIONS
    _assert_chained(run)
    audit = AuditEvent.objects.get(run_id=run.pk, action="sync.audit")
    run.refresh_from_db()
    assert audit.written_hash and audit.readback_hash and audit.source_hash


def test_the_read_back_comes_from_the_write_answer_and_a_sample_is_vread(engine, settings):
    vreads = []
    real = engine.fhir.vread_many
    engine.fhir.vread_many = lambda refs: vreads.append(refs) or real(refs)
    settings.CONFLICTDESK_READBACK_VREAD_RATE = 0.0
    run = engine.commit(37.1)
    assert engine.drive(run) == SyncRun.Status.DONE
    first = AuditEvent.objects.get(run_id=run.pk, action="sync.audit")
    assert vreads == [] and first.detail["readback"] == "answer" and first.outcome == "ok"
    settings.CONFLICTDESK_READBACK_VREAD_RATE = 1.0
    run2 = engine.commit(37.5, version=2)
    assert engine.drive(run2) == SyncRun.Status.DONE
    second = AuditEvent.objects.get(run_id=run2.pk, action="sync.audit")
    assert len(vreads) == 1 and second.detail["readback"] == "answer+vread" and second.outcome == "ok"


def test_a_server_that_stores_other_than_it_answers_is_caught_by_the_vread(engine):
    real = engine.fhir.vread_many

    def tampered(refs):
        out = real(refs)
        out[0]["valueQuantity"]["value"] = 99.9
        return out

    engine.fhir.vread_many = tampered
    run = engine.commit(37.1)
    assert engine.drive(run) == SyncRun.Status.DONE
    event = AuditEvent.objects.get(run_id=run.pk, action="sync.audit")
    assert event.outcome == "readback_differs" and event.detail["vread_differs"] is True


def test_a_replay_that_maps_to_other_bytes_dead_letters(engine, monkeypatch):
    """The mapping changed between the plan and the write (a deploy): never write what was not planned."""
    real_step = forward.STEPS[Step.WRITE]
    passes = []

    def dying_write(ctx):
        if not passes:
            passes.append(1)
            raise WorkerDied()
        return real_step(ctx)

    monkeypatch.setitem(forward.STEPS, Step.WRITE, dying_write)
    run = engine.commit(37.1)
    with pytest.raises(WorkerDied):
        engine.drive(run, "w1")
    _lapse(run)
    real_to_fhir = engine.services.mapping.to_fhir

    def changed(*a, **kw):
        result = real_to_fhir(*a, **kw)
        result.resources[0]["status"] = "amended"
        return result

    engine.services.mapping.to_fhir = changed
    assert engine.drive(run, "w2") == SyncRun.Status.DEAD_LETTER
    assert run.dead_letter.rule == "replay.deterministic" and engine.fhir.transactions == []


def test_events_deferred_to_the_write_are_appended_when_the_run_dead_letters_instead(engine, settings, monkeypatch):
    """A run that never reaches its write's commit (poisoned there) still puts every event in the chain."""
    settings.CONFLICTDESK_CRASH_LOOP_CLAIMS = 2
    engine.fhir.faults.add("transaction", WorkerDied(), times=2)
    run = engine.commit(37.1)
    for worker in ("w1", "w2"):
        with pytest.raises(WorkerDied):
            engine.drive(run, worker)
        _lapse(run)
    assert engine.drive(run, "w3") == SyncRun.Status.DEAD_LETTER
    assert _actions(run) == ACTIONS[:6] + ["sync.write"]  # the plan's events, then the crash loop's
    assert SyncRun.objects.get(pk=run.pk).pending_audit is None
    _assert_chained(run)


def test_a_reverse_run_commits_three_times_with_its_events_in_one_ordered_chain(engine, django_capture_on_commit_callbacks):
    from .test_reverse import central_change, edit_centrally

    engine.drive(engine.commit(37.1))
    r = RecordLink.objects.get().fhir_resources[0]
    edited = edit_centrally(engine, engine.fhir.read(r["type"], r["id"]), 39.0)
    run = central_change(engine, f"Observation/{edited['id']}", edited["meta"]["versionId"])
    with django_capture_on_commit_callbacks(execute=True), CaptureQueriesContext(connection) as ctx:
        assert advance(run.pk, "w1") == SyncRun.Status.DONE
    statements, commits = production_counts(ctx.captured_queries)
    print(f"reverse run: {statements} statements, {commits} commits")
    assert commits <= 3
    assert _actions(run) == ACTIONS
    _assert_chained(run)
