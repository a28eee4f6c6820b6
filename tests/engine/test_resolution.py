"""A clinician's Resolution runs as a new SyncRun: If-Match on both sides, or a new conflict if either moved."""
import pytest
from django.contrib.auth import get_user_model

from audit.models import AuditEvent
from audit.partitions import record_partition
from sync.actions import do_start_resolution_run
from sync.models import Conflict, EngineWrite, RecordLink, Resolution, RunAttempt, SyncRun

from .conftest import VO
from .fakes import transient


@pytest.fixture
def conflict(engine):
    """Site v1 synced (37.1); then centre -> 39.5 and site v2 -> 38.0: an open conflict."""
    engine.drive(engine.commit(37.1, version=1))
    obs = engine.fhir.read("Observation", RecordLink.objects.get().fhir_resources[0]["id"])
    engine.fhir.update({**obs, "valueQuantity": {"value": 39.5, "unit": "Cel"}})
    assert engine.drive(engine.commit(38.0, version=2)) == SyncRun.Status.CONFLICT
    return Conflict.objects.get(status=Conflict.Status.OPEN)


def decide(engine, conflict, choice, value=None):
    """What the desk stores: chosen resources, their record, the versions decided on; conflict resolved."""
    site = engine.openehr.compositions[conflict.openehr_version_uid]
    central = conflict.fhir_resources[0]
    if choice == Resolution.Choice.KEEP_SITE:
        resources = [engine.services_mapping.to_fhir(site, site="site1", ehr_id="ehr-1", patient_ref="Patient/1").resources[0]]
    else:
        resources = [{**central, "valueQuantity": {"value": value if value is not None else 39.5, "unit": "Cel"}}]
    content = {
        "resources": resources,
        "expected": {
            "openehr": conflict.openehr_version_uid,
            "fhir": {f"{r['type']}/{r['id']}": r["version"] for r in conflict.fhir_versions},
        },
    }
    if choice == Resolution.Choice.KEEP_SITE:
        content["openehr_composition"] = site
    user, _ = get_user_model().objects.get_or_create(username="dr@example.org", email="dr@example.org")
    resolution = Resolution.objects.create(conflict=conflict, choice=choice, reason="checked", content=content,
                                           decided_by=user)
    Conflict.objects.filter(pk=conflict.pk).update(status=Conflict.Status.RESOLVED)
    return resolution


def start_resolution_run(resolution):
    """What a decision does once it stored the Resolution: the clinician who decided is the actor."""
    return do_start_resolution_run(resolution, acting_user=resolution.decided_by)


def central_value(engine):
    obs_id = RecordLink.objects.get().fhir_resources[0]["id"]
    return engine.fhir.read("Observation", obs_id)


def site_latest(engine):
    uid = engine.openehr.latest(VO)
    return uid, engine.openehr.compositions[uid]["content"][0]["value"]


@pytest.fixture(autouse=True)
def _mapping_handle(engine):
    from sync.workflow.services import get_services

    engine.services_mapping = get_services().mapping


def test_keep_site_writes_the_centre_only_with_if_match(engine, conflict):
    run = start_resolution_run(decide(engine, conflict, Resolution.Choice.KEEP_SITE))
    assert engine.drive(run) == SyncRun.Status.DONE
    put = engine.fhir.transactions[-1]["entry"][0]["request"]
    assert put["method"] == "PUT" and put["ifMatch"] == 'W/"2"'
    assert central_value(engine)["valueQuantity"]["value"] == 38.0
    assert site_latest(engine) == (conflict.openehr_version_uid, 38.0) and engine.openehr.writes == []
    link = RecordLink.objects.get()
    assert link.openehr_version_uid == conflict.openehr_version_uid and link.fhir_resources[0]["version"] == "3"
    assert link.base_content[next(iter(link.base_content))]["valueQuantity"]["value"] == 38.0
    assert EngineWrite.objects.filter(destination="central", version="3", run=run).exists()


def test_keep_central_writes_the_site_only_with_if_match(engine, conflict):
    before = len(engine.fhir.transactions)
    run = start_resolution_run(decide(engine, conflict, Resolution.Choice.KEEP_CENTRAL))
    assert engine.drive(run) == SyncRun.Status.DONE
    assert len(engine.fhir.transactions) == before
    uid, value = site_latest(engine)
    assert value == 39.5 and uid.endswith("::3") and engine.openehr.writes == [uid]
    assert EngineWrite.objects.filter(destination="site:site1", object_id=VO, version=uid, run=run).exists()
    link = RecordLink.objects.get()
    assert link.openehr_version_uid == uid and link.fhir_resources[0]["version"] == "2"


def test_a_merge_writes_both_sides(engine, conflict):
    run = start_resolution_run(decide(engine, conflict, Resolution.Choice.MERGE, value=38.5))
    assert engine.drive(run) == SyncRun.Status.DONE
    assert site_latest(engine)[1] == 38.5 and central_value(engine)["valueQuantity"]["value"] == 38.5
    outcomes = list(RunAttempt.objects.filter(run=run, step="write").values_list("outcome", flat=True))
    assert outcomes == ["site_written", "ok"]
    assert AuditEvent.objects.filter(run_id=run.pk, action="sync.resolution.start", actor="dr@example.org").exists()
    assert AuditEvent.objects.filter(run_id=run.pk, action="sync.audit", partition=record_partition("site:site1", run.record_key)).exists()


def test_a_side_that_moved_since_the_decision_opens_a_new_conflict(engine, conflict):
    resolution = decide(engine, conflict, Resolution.Choice.MERGE, value=38.5)
    obs = central_value(engine)
    engine.fhir.update({**obs, "valueQuantity": {"value": 41.0, "unit": "Cel"}})  # edited again meanwhile
    before = len(engine.fhir.transactions)
    run = start_resolution_run(resolution)
    assert engine.drive(run) == SyncRun.Status.CONFLICT
    new = Conflict.objects.get(status=Conflict.Status.OPEN)
    assert new.run == run and new.fhir_resources[0]["valueQuantity"]["value"] == 41.0
    assert new.fhir_versions[0]["version"] == "3" and new.openehr_version_uid == conflict.openehr_version_uid
    assert len(engine.fhir.transactions) == before and engine.openehr.writes == []


def test_a_site_that_moved_opens_a_new_conflict_too(engine, conflict):
    resolution = decide(engine, conflict, Resolution.Choice.KEEP_CENTRAL)
    engine.commit(36.0, version=3)  # the site committed again after the decision
    run = start_resolution_run(resolution)
    assert engine.drive(run) == SyncRun.Status.WAITING  # behind the site's own run of the record
    SyncRun.objects.filter(change_event__source_version=f"{VO}::site1::3").update(status=SyncRun.Status.CONFLICT)
    assert engine.drive(run) == SyncRun.Status.CONFLICT
    assert Conflict.objects.get(status=Conflict.Status.OPEN).openehr_version_uid == f"{VO}::site1::3"
    assert engine.openehr.writes == []


def test_a_side_already_holding_the_chosen_content_is_no_conflict(engine, conflict):
    resolution = decide(engine, conflict, Resolution.Choice.MERGE, value=38.5)
    obs = central_value(engine)
    engine.fhir.update({**obs, "valueQuantity": {"value": 38.5, "unit": "Cel"}})  # someone typed the same
    run = start_resolution_run(resolution)
    before = len(engine.fhir.transactions)
    assert engine.drive(run) == SyncRun.Status.DONE
    assert len(engine.fhir.transactions) == before  # centre already right: only the site written
    assert RecordLink.objects.get().fhir_resources[0]["version"] == "3"


def test_a_site_write_whose_checkpoint_was_lost_is_not_repeated(engine, conflict):
    engine.fhir.faults.add("transaction", transient(), times=1)
    run = start_resolution_run(decide(engine, conflict, Resolution.Choice.MERGE, value=38.5))
    assert engine.drive(run) == SyncRun.Status.RETRY_WAIT
    assert run.checkpoint["site_written"].endswith("::3")
    # As if the worker died after EHRbase accepted the site write but before its step committed.
    checkpoint = {k: v for k, v in run.checkpoint.items() if k != "site_written"}
    SyncRun.objects.filter(pk=run.pk).update(step="write", checkpoint={**checkpoint, "site_plan": "write"},
                                             status=SyncRun.Status.PENDING, next_attempt_at=None)
    assert engine.drive(run) == SyncRun.Status.DONE
    assert len(engine.openehr.writes) == 1  # the stale If-Match went back to the check, which saw our write
    assert central_value(engine)["valueQuantity"]["value"] == 38.5
    assert RecordLink.objects.get().openehr_version_uid == engine.openehr.writes[0]


def test_starting_twice_gives_one_run_and_one_event(engine, conflict):
    resolution = decide(engine, conflict, Resolution.Choice.KEEP_SITE)
    run = start_resolution_run(resolution)
    assert start_resolution_run(resolution) == run
    assert SyncRun.objects.filter(resolution=resolution).count() == 1
    assert AuditEvent.objects.filter(action="sync.resolution.start", run_id=run.pk).count() == 1


def test_an_invalid_merge_is_dead_lettered_before_anything_is_written(engine, conflict):
    run = start_resolution_run(decide(engine, conflict, Resolution.Choice.MERGE, value="high"))
    assert engine.drive(run) == SyncRun.Status.DEAD_LETTER
    assert run.dead_letter.rule == "fhir.r4.Observation" and engine.openehr.writes == []
