"""Site -> central runs: happy path, idempotent writes, echo suppression, three-way conflicts."""
from django.core import mail

from audit.models import AuditEvent
from sync.models import ChangeEvent, Conflict, DeadLetter, EngineWrite, PatientLink, RecordLink, RunAttempt, Step, SyncRun

from .fakes import transient


def test_it_syncs_a_new_composition_with_provenance(engine):
    run = engine.commit(37.1)
    assert engine.drive(run) == SyncRun.Status.DONE
    assert engine.fhir.count("Observation") == 1 and engine.fhir.count("Provenance") == 1
    assert engine.fhir.count("Patient") == 1
    link = RecordLink.objects.get()
    assert link.openehr_version_uid == run.change_event.source_version
    assert [r["version"] for r in link.fhir_resources] == ["1"]
    assert run.change_event.status == ChangeEvent.Status.SYNCED
    assert PatientLink.objects.get().fhir_patient_id == "1"
    assert EngineWrite.objects.filter(destination="central", object_id=f"Observation/{link.fhir_resources[0]['id']}").exists()
    assert list(RunAttempt.objects.filter(run=run).values_list("step", flat=True)) == [s.value for s in Step]
    audit = AuditEvent.objects.get(run_id=run.pk, action="sync.audit")
    assert audit.source_hash and audit.written_hash and audit.readback_hash


def test_a_second_version_updates_with_if_match(engine):
    engine.drive(engine.commit(37.1, version=1))
    run = engine.drive(run2 := engine.commit(38.0, version=2)) and run2
    assert run.status == SyncRun.Status.DONE
    put = engine.fhir.transactions[-1]["entry"][0]["request"]
    assert put["method"] == "PUT" and put["ifMatch"] == 'W/"1"'
    assert engine.fhir.count("Observation") == 1
    assert RecordLink.objects.get().fhir_resources[0]["version"] == "2"


def test_a_later_version_waits_for_the_earlier_one(engine):
    first, second = engine.commit(37.1, version=1), engine.commit(38.0, version=2)
    assert engine.drive(second) == SyncRun.Status.WAITING
    assert engine.drive(first) == SyncRun.Status.DONE
    assert (second.pk, None) in engine.sent  # finishing the first wakes the second
    assert engine.drive(second) == SyncRun.Status.DONE
    obs_id = RecordLink.objects.get().fhir_resources[0]["id"]
    assert engine.fhir.read("Observation", obs_id)["valueQuantity"]["value"] == 38.0


def test_our_own_write_coming_back_is_an_echo(engine):
    run = engine.commit(37.1)
    EngineWrite.objects.create(destination="site:site1", object_id=run.change_event.source_object_id,
                               version=run.change_event.source_version)
    assert engine.drive(run) == SyncRun.Status.DONE
    assert run.change_event.status == ChangeEvent.Status.ECHO
    assert engine.fhir.transactions == []


def test_a_write_retried_after_a_crash_creates_nothing_twice(engine):
    run = engine.commit(37.1)
    engine.fhir.faults.add("vread", RuntimeError("worker died after the write"))
    engine.drive(run)  # write committed, audit failed: retry scheduled
    assert run.status == SyncRun.Status.RETRY_WAIT and run.step == Step.AUDIT
    # Simulate a crash that lost the write step's checkpoint: the run redoes the write.
    SyncRun.objects.filter(pk=run.pk).update(step=Step.WRITE, status=SyncRun.Status.PENDING, next_attempt_at=None)
    assert engine.drive(run) == SyncRun.Status.DONE
    assert engine.fhir.count("Observation") == 1 and engine.fhir.count("Provenance") == 1


def test_it_resumes_from_every_step(engine):
    # A run is committed at audit or acknowledge only by a failure there, whose commit keeps what
    # they read (the write's answer); crashes in every step are in test_checkpoints.py.
    resumable = [s for s in Step if s not in (Step.AUDIT, Step.ACKNOWLEDGE)]
    for i, step in enumerate(resumable):
        run = engine.commit(37.0 + i, version=i + 1)
        assert engine.drive(run) == SyncRun.Status.DONE
        # Replay from `step` as if the worker died right before it committed.
        SyncRun.objects.filter(pk=run.pk).update(step=step, status=SyncRun.Status.RUNNING,
                                                 lease_owner="dead-worker", lease_expires_at=None)
        run.change_event.status = ChangeEvent.Status.PENDING
        run.change_event.save()
        assert engine.drive(run, worker="w2") == SyncRun.Status.DONE, step
    assert engine.fhir.count("Observation") == 1
    assert engine.fhir.count("Provenance") == len(resumable)  # one per source version, never two


def test_a_live_lease_keeps_other_workers_out(engine):
    run = engine.commit(37.1)
    from django.utils import timezone
    from datetime import timedelta

    SyncRun.objects.filter(pk=run.pk).update(status=SyncRun.Status.RUNNING, lease_owner="w1",
                                             lease_expires_at=timezone.now() + timedelta(minutes=1))
    assert engine.drive(run, worker="w2") == "leased"


def test_central_edit_and_site_edit_make_a_conflict_and_write_nothing(engine):
    engine.drive(engine.commit(37.1, version=1))
    obs = engine.fhir.read("Observation", RecordLink.objects.get().fhir_resources[0]["id"])
    engine.fhir.update({**obs, "valueQuantity": {"value": 39.5, "unit": "Cel"}})
    before = len(engine.fhir.transactions)
    run = engine.commit(38.0, version=2)
    assert engine.drive(run) == SyncRun.Status.CONFLICT
    conflict = Conflict.objects.get()
    assert conflict.openehr_composition["content"][0]["value"] == 38.0
    assert conflict.fhir_resources[0]["valueQuantity"]["value"] == 39.5
    assert conflict.base_content and conflict.status == Conflict.Status.OPEN
    assert len(engine.fhir.transactions) == before
    assert run.change_event.status == ChangeEvent.Status.CONFLICT


def test_both_sides_holding_the_same_content_is_no_conflict(engine):
    engine.drive(engine.commit(37.1, version=1))
    obs = engine.fhir.read("Observation", RecordLink.objects.get().fhir_resources[0]["id"])
    engine.fhir.update({**obs, "valueQuantity": {"value": 38.0, "unit": "Cel"}})
    before = len(engine.fhir.transactions)
    assert engine.drive(engine.commit(38.0, version=2)) == SyncRun.Status.DONE
    assert len(engine.fhir.transactions) == before
    assert RecordLink.objects.get().fhir_resources[0]["version"] == "2"  # adopted as the new base


def test_a_central_change_without_clinical_difference_is_overwritten_safely(engine):
    engine.drive(engine.commit(37.1, version=1))
    obs = engine.fhir.read("Observation", RecordLink.objects.get().fhir_resources[0]["id"])
    engine.fhir.update(obs)  # new version, same content (e.g. a meta-only touch)
    assert engine.drive(engine.commit(38.0, version=2)) == SyncRun.Status.DONE
    assert engine.fhir.transactions[-1]["entry"][0]["request"]["ifMatch"] == 'W/"2"'


def test_a_409_at_write_goes_back_to_the_conflict_check(engine):
    engine.drive(engine.commit(37.1, version=1))
    obs_id = RecordLink.objects.get().fhir_resources[0]["id"]
    run = engine.commit(38.0, version=2)
    original = engine.fhir.transaction

    def edited_meanwhile(bundle, **kw):  # a clinician saves between our check and our write
        engine.fhir.transaction = original
        obs = engine.fhir.read("Observation", obs_id)
        engine.fhir.update({**obs, "valueQuantity": {"value": 40.0, "unit": "Cel"}})
        return original(bundle, **kw)

    engine.fhir.transaction = edited_meanwhile
    assert engine.drive(run) == SyncRun.Status.CONFLICT
    outcomes = list(RunAttempt.objects.filter(run=run).values_list("step", "outcome"))
    assert ("write", "stale") in outcomes and outcomes[-1] == ("check_conflict", "conflict")
    assert engine.fhir.read("Observation", obs_id)["valueQuantity"]["value"] == 40.0


def test_an_invalid_resource_dead_letters_at_once_and_waits_for_the_staff_digest(engine):
    run = engine.commit("not-a-number")
    assert engine.drive(run) == SyncRun.Status.DEAD_LETTER
    letter = DeadLetter.objects.get()
    assert letter.cause == DeadLetter.Cause.VALIDATION and letter.step == Step.VALIDATE_TARGET
    assert letter.rule == "fhir.r4.Observation" and letter.path == "Observation.valueQuantity.value"
    assert run.record_key in letter.error and letter.payload["content"][0]["value"] == "not-a-number"
    assert engine.fhir.transactions == []
    assert mail.outbox == []  # no mail per letter: the digest names it
    from conflictdesk.desk.digest import send_digest
    assert send_digest() == 1 and "1 new dead letter(s)" in mail.outbox[0].subject
    assert "not-a-number" not in mail.outbox[0].body and run.record_key not in mail.outbox[0].body


def test_invalid_data_of_a_new_patient_leaves_nothing_centrally_not_even_the_patient(engine):
    bad_units = {"_type": "DV_QUANTITY", "magnitude": 5.2, "units": "..mol/l"}
    run = engine.commit(37.1, content={"other_details": bad_units})
    assert engine.drive(run) == SyncRun.Status.DEAD_LETTER
    letter = DeadLetter.objects.get()
    assert (letter.step, letter.rule, letter.path) == (Step.VALIDATE_SOURCE, "rm.dv_quantity.units.ucum", "/other_details/units")
    assert engine.fhir.count("Patient") == 0 and not PatientLink.objects.exists()
    assert engine.fhir.transactions == []


def test_an_unmapped_archetype_dead_letters_as_unmapped(engine):
    run = engine.commit(1, archetype="openEHR-EHR-OBSERVATION.unknown.v1")
    assert engine.drive(run) == SyncRun.Status.DEAD_LETTER
    letter = DeadLetter.objects.get()
    assert (letter.cause, letter.rule, letter.path) == (DeadLetter.Cause.UNMAPPED, "registry", "/content[0]")


def test_a_transient_fault_is_retried_then_succeeds(engine):
    engine.fhir.faults.add("transaction", transient(), times=2)
    run = engine.commit(37.1)
    assert engine.drive(run) == SyncRun.Status.RETRY_WAIT
    assert engine.sent[-1] == (run.pk, 1.0)
    SyncRun.objects.filter(pk=run.pk).update(next_attempt_at=None)
    assert engine.drive(run) == SyncRun.Status.RETRY_WAIT
    assert engine.sent[-1] == (run.pk, 2.0)
    SyncRun.objects.filter(pk=run.pk).update(next_attempt_at=None)
    assert engine.drive(run) == SyncRun.Status.DONE
    assert run.attempt == 0
