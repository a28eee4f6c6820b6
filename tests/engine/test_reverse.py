"""Central -> site runs: linked records updated with If-Match, central-born records created once,
three-way conflicts, echoes, and the composition checked against the site's web template first."""
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

from sync.clients.errors import PreconditionFailed
from sync.identity import composition_uid_for, record_key
from sync.mapping.provenance import ENGINE_DEVICE
from sync.models import (ChangeEvent, Conflict, DeadLetter, Direction, EngineWrite, PatientLink, RecordLink, RunAttempt,
                         SyncRun)
from sync.workflow import template_check

from .conftest import EHR, VO
from .fakes import transient, web_template


def central_change(engine, ref: str, version: str) -> SyncRun:
    """The ChangeEvent + SyncRun detection records for one central version."""
    event = ChangeEvent.objects.create(
        direction=Direction.TO_OPENEHR, source="central", source_object_id=ref, source_version=version,
        version_number=int(version),
    )
    rtype, rid = ref.split("/")
    link = RecordLink.objects.filter(fhir_resources__contains=[{"type": rtype, "id": rid}]).first()
    key = record_key("site1", link.versioned_object_uid) if link else f"central:{ref}"
    return SyncRun.objects.create(change_event=event, direction=Direction.TO_OPENEHR, record_key=key)


@pytest.fixture
def linked(engine):
    """Site v1 (37.1) synced; returns the central Observation."""
    engine.drive(engine.commit(37.1, version=1))
    r = RecordLink.objects.get().fhir_resources[0]
    return engine.fhir.read(r["type"], r["id"])


def edit_centrally(engine, obs, value):
    return engine.fhir.update({**obs, "valueQuantity": {"value": value, "unit": "Cel"}}).resource


def dead_letter_of_an_edit(engine, linked) -> DeadLetter:
    """A central edit's run, which must dead-letter with nothing written at the site: its dead letter."""
    edited = edit_centrally(engine, linked, 39.0)
    run = central_change(engine, f"Observation/{linked['id']}", edited["meta"]["versionId"])
    assert engine.drive(run) == SyncRun.Status.DEAD_LETTER
    assert engine.openehr.writes == []
    return DeadLetter.objects.get(run=run)


def site_value(engine, vo=VO):
    return engine.openehr.compositions[engine.openehr.latest(vo)]["content"][0]["value"]


def test_a_central_edit_updates_the_site_composition_with_if_match(engine, linked):
    edited = edit_centrally(engine, linked, 39.0)
    run = central_change(engine, f"Observation/{linked['id']}", edited["meta"]["versionId"])
    assert engine.drive(run) == SyncRun.Status.DONE
    assert engine.openehr.writes == [f"{VO}::site1::2"] and site_value(engine) == 39.0
    link = RecordLink.objects.get()
    assert link.openehr_version_uid == f"{VO}::site1::2" and link.fhir_resources[0]["version"] == "2"
    assert EngineWrite.objects.filter(destination="site:site1", object_id=VO, version=f"{VO}::site1::2").exists()
    assert list(RunAttempt.objects.filter(run=run).values_list("outcome", flat=True)) == ["ok"] * 8


def test_our_own_central_write_coming_back_is_an_echo(engine, linked):
    run = central_change(engine, f"Observation/{linked['id']}", "1")  # version 1 is the engine's write
    assert engine.drive(run) == SyncRun.Status.DONE
    assert run.change_event.status == ChangeEvent.Status.ECHO and engine.openehr.writes == []


def test_a_record_born_centrally_is_created_once_at_each_site_of_the_patient(engine, linked):
    engine.site.template_ids = ["vitals"]
    engine.site.save()
    patient = PatientLink.objects.get().fhir_patient_id
    new = engine.fhir.create({"resourceType": "Observation", "status": "final", "code": {"text": "temp"},
                              "subject": {"reference": f"Patient/{patient}"},
                              "valueQuantity": {"value": 36.2, "unit": "Cel"}}).resource
    run = central_change(engine, f"Observation/{new['id']}", "1")
    create = engine.openehr.create_composition

    def answer_lost(ehr_id, composition):  # the site commits, the answer never arrives
        engine.openehr.create_composition = create
        create(ehr_id, composition)
        raise transient()

    engine.openehr.create_composition = answer_lost
    assert engine.drive(run) == SyncRun.Status.RETRY_WAIT
    SyncRun.objects.filter(pk=run.pk).update(next_attempt_at=None)
    assert engine.drive(run) == SyncRun.Status.DONE
    uid = composition_uid_for(f"Observation/{new['id']}", "site1")
    assert engine.openehr.writes == [f"{uid}::site1::1"]  # the retried create found the first one
    link = RecordLink.objects.get(versioned_object_uid=uid)
    assert link.fhir_resources[0]["id"] == new["id"] and link.template_id == "vitals"


def test_a_site_and_central_edit_of_one_record_is_a_conflict_and_nothing_is_written(engine, linked):
    engine.openehr.update_composition(EHR, f"{VO}::site1::1", engine.openehr.compositions[f"{VO}::site1::1"] | {
        "content": [{"archetype_node_id": "openEHR-EHR-OBSERVATION.body_temperature.v2", "value": 38.4}]})
    engine.openehr.writes.clear()
    edited = edit_centrally(engine, linked, 39.0)
    run = central_change(engine, f"Observation/{linked['id']}", edited["meta"]["versionId"])
    assert engine.drive(run) == SyncRun.Status.CONFLICT
    conflict = Conflict.objects.get()
    assert conflict.openehr_composition["content"][0]["value"] == 38.4
    assert conflict.fhir_resources[0]["valueQuantity"]["value"] == 39.0
    assert engine.openehr.writes == [] and site_value(engine) == 38.4


def test_a_reverse_conflict_records_who_changed_the_central_side_and_when(engine, linked):
    """The central side's "who and when": the changed version's meta.lastUpdated and the person of the
    Provenance stored with it (its Practitioner read for the name); the engine's own and an older one not."""
    engine.openehr.update_composition(EHR, f"{VO}::site1::1", engine.openehr.compositions[f"{VO}::site1::1"] | {
        "content": [{"archetype_node_id": "openEHR-EHR-OBSERVATION.body_temperature.v2", "value": 38.4}]})
    edited = edit_centrally(engine, linked, 39.0)
    ref = f"Observation/{linked['id']}"
    engine.fhir.store[("Observation", linked["id"])][-1]["meta"]["lastUpdated"] = "2026-11-20T10:42:00.000+00:00"

    def stored(resource, at):
        engine.fhir._put(resource)["meta"]["lastUpdated"] = at
        engine.fhir.store[(resource["resourceType"], resource["id"])][-1]["meta"]["lastUpdated"] = at

    stored({"resourceType": "Practitioner", "id": "onc1", "name": [{"given": ["Ada"], "family": "Osei"}]},
           "2026-01-01T00:00:00+00:00")
    stored({"resourceType": "Provenance", "id": "older", "target": [{"reference": ref}],
            "agent": [{"who": {"reference": "Practitioner/x", "display": "Dr. Before"}}]}, "2026-11-19T08:00:00+00:00")
    stored({"resourceType": "Provenance", "id": "engine", "target": [{"reference": ref}],
            "agent": [{"who": {"reference": ENGINE_DEVICE}}, {"who": {"reference": "Practitioner/y", "display": "Dr. Y"}}]},
           "2026-11-20T10:42:00.000+00:00")
    stored({"resourceType": "Provenance", "id": "edit", "target": [{"reference": ref}],  # HAPI drops the version
            "recorded": "2026-11-20T10:41:58+00:00", "agent": [{"who": {"reference": "Practitioner/onc1"}}]},
           "2026-11-20T10:42:00.500+00:00")
    run = central_change(engine, ref, edited["meta"]["versionId"])
    assert engine.drive(run) == SyncRun.Status.CONFLICT
    conflict = Conflict.objects.get()
    assert conflict.fhir_changed_by == "Ada Osei"
    assert conflict.fhir_changed_at == datetime(2026, 11, 20, 10, 42, tzinfo=timezone.utc)


def test_a_site_already_holding_the_central_content_is_adopted_without_a_write(engine, linked):
    engine.openehr.update_composition(EHR, f"{VO}::site1::1", engine.openehr.compositions[f"{VO}::site1::1"] | {
        "content": [{"archetype_node_id": "openEHR-EHR-OBSERVATION.body_temperature.v2", "value": 39.0}]})
    engine.openehr.writes.clear()
    edited = edit_centrally(engine, linked, 39.0)
    assert engine.drive(central_change(engine, f"Observation/{linked['id']}", edited["meta"]["versionId"])) == "done"
    assert engine.openehr.writes == []
    assert RecordLink.objects.get().openehr_version_uid == f"{VO}::site1::2"


def test_a_site_commit_between_check_and_write_goes_back_to_the_check(engine, linked):
    edited = edit_centrally(engine, linked, 39.0)
    run = central_change(engine, f"Observation/{linked['id']}", edited["meta"]["versionId"])
    engine.openehr.faults.add("update_composition", PreconditionFailed(method="PUT", path="/x", status=412))
    assert engine.drive(run) == SyncRun.Status.DONE  # re-checked: the site had not really moved, written
    outcomes = list(RunAttempt.objects.filter(run=run, step="write").values_list("outcome", flat=True))
    assert outcomes == ["stale", "ok"] and site_value(engine) == 39.0


def test_a_composition_with_a_node_the_template_lacks_is_dead_lettered_before_the_write(engine, linked):
    engine.openehr.templates["vitals"] = web_template("openEHR-EHR-OBSERVATION.pulse.v2")
    template_check.clear_cache()
    letter = dead_letter_of_an_edit(engine, linked)
    assert (letter.cause, letter.step, letter.rule) == ("validation", "validate_target", "template.vitals")
    assert letter.path == "/content[openEHR-EHR-OBSERVATION.body_temperature.v2]"


def test_a_site_without_the_template_dead_letters(engine, linked):
    del engine.openehr.templates["vitals"]
    edited = edit_centrally(engine, linked, 39.0)
    run = central_change(engine, f"Observation/{linked['id']}", edited["meta"]["versionId"])
    assert engine.drive(run) == SyncRun.Status.DEAD_LETTER
    assert DeadLetter.objects.get(run=run).rule == "site.template" and engine.openehr.writes == []


def test_the_web_template_is_fetched_once_per_template(engine, linked):
    obs = linked
    for value in (39.0, 39.5, 40.0):
        obs = edit_centrally(engine, obs, value)
        assert engine.drive(central_change(engine, f"Observation/{obs['id']}", obs["meta"]["versionId"])) == "done"
    assert engine.openehr.template_fetches == 1 and site_value(engine) == 40.0


def central_deletion(linked) -> SyncRun:
    """The run detection records for the central DELETE of ``linked`` (its version 2)."""
    event = ChangeEvent.objects.create(direction=Direction.TO_OPENEHR, source="central", change_type="deleted",
                                       source_object_id=f"Observation/{linked['id']}", source_version="2",
                                       version_number=2)
    return SyncRun.objects.create(change_event=event, direction=Direction.TO_OPENEHR,
                                  record_key=record_key("site1", VO))


def test_a_central_deletion_deletes_the_site_composition_it_was_all_of(engine, linked):
    engine.fhir.store[("Observation", linked["id"])].append(None)  # deleted centrally: version 2
    run = central_deletion(linked)
    assert engine.drive(run) == SyncRun.Status.DONE
    assert engine.openehr.writes == [f"{VO}::site1::2"] and engine.openehr.compositions[f"{VO}::site1::2"] is None
    link = RecordLink.objects.get()
    assert link.deleted and link.openehr_version_uid == f"{VO}::site1::2"
    assert EngineWrite.objects.filter(destination="site:site1", object_id=VO, version=f"{VO}::site1::2").exists()


def test_a_central_deletion_over_a_site_edit_is_a_conflict_and_deletes_nothing(engine, linked):
    site_now = engine.openehr.compositions[f"{VO}::site1::1"]
    engine.openehr.update_composition(EHR, f"{VO}::site1::1", {**site_now, "content": [
        {**site_now["content"][0], "value": 38.5}]})  # edited at the site since the last sync
    engine.openehr.writes.clear()
    engine.fhir.store[("Observation", linked["id"])].append(None)
    run = central_deletion(linked)
    assert engine.drive(run) == SyncRun.Status.CONFLICT
    conflict = Conflict.objects.get(run=run)
    assert engine.openehr.writes == [] and conflict.status == "open" and conflict.deleted_on == "central"


def test_a_central_edit_of_a_record_deleted_at_the_site_is_a_conflict_not_a_dead_letter(engine, linked):
    engine.openehr.delete_composition(EHR, f"{VO}::site1::1")
    engine.openehr.writes.clear()
    edited = edit_centrally(engine, linked, 39.4)
    run = central_change(engine, f"Observation/{linked['id']}", edited["meta"]["versionId"])
    assert engine.drive(run) == SyncRun.Status.CONFLICT
    conflict = Conflict.objects.get(run=run)
    assert conflict.deleted_on == "site" and conflict.openehr_composition == {}
    assert conflict.openehr_version_uid == f"{VO}::site1::2" and engine.openehr.writes == []


def test_a_composition_missing_an_event_time_is_dead_lettered_before_the_write(engine, linked):
    """A central result sent without an effective time maps to an event without one (nothing is made up):
    the run stops at validate_target naming the RM rule and the node, not at EHRbase's 400 after the write."""
    mapping = engine.services.mapping
    made, back = mapping.from_fhir, mapping.map_back

    def undated(entry):
        return {**entry, "_type": "OBSERVATION", "data": {"_type": "HISTORY", "archetype_node_id": "at0002",
                "events": [{"_type": "POINT_EVENT", "archetype_node_id": "at0003"}]}}

    def from_fhir(*a, **kw):
        out = made(*a, **kw)
        return SimpleNamespace(composition={**out.composition, "content": [undated(out.composition["content"][0])]},
                               losses=out.losses)

    mapping.from_fhir = from_fhir
    mapping.map_back = lambda *a, **kw: ([undated(e) for e in back(*a, **kw)[0]], {})
    temperature = "openEHR-EHR-OBSERVATION.body_temperature.v2"
    engine.openehr.templates["vitals"] = web_template(temperature)  # the template has the event: only the RM fails
    engine.openehr.templates["vitals"]["tree"]["children"][0]["children"] = [
        {"id": "any_event", "nodeId": "at0003", "aqlPath": f"/content[{temperature}]/data[at0002]/events[at0003]"}]
    template_check.clear_cache()
    letter = dead_letter_of_an_edit(engine, linked)
    assert (letter.cause, letter.step, letter.rule) == ("validation", "validate_target", "rm.HISTORY.origin")
    assert letter.path == "/content[openEHR-EHR-OBSERVATION.body_temperature.v2]/data[at0002]"
