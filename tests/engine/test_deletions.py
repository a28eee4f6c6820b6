"""Deletions in the engine's own terms: which element says entered-in-error, and the forward run that sets it."""
import pytest

from sync.identity import provenance_id
from sync.models import RecordLink, SyncRun
from sync.workflow.deletion import is_retired, retired
from sync.workflow.removal import nothing_left, without_keys
from sync.workflow.result import ValidationFailed

from .conftest import VO


@pytest.mark.parametrize("resource, element, value", [
    ({"resourceType": "Observation", "status": "final"}, "status", "entered-in-error"),
    ({"resourceType": "Goal", "lifecycleStatus": "active"}, "lifecycleStatus", "entered-in-error"),
    ({"resourceType": "MedicationRequest", "status": "active"}, "status", "entered-in-error"),
])
def test_each_type_is_marked_in_its_own_status_element(resource, element, value):
    marked = retired(resource)
    assert marked[element] == value and is_retired(marked) and not is_retired(resource)
    assert resource[element] != value  # the input is left as it was


def test_a_condition_is_marked_in_its_verification_status_and_loses_its_clinical_status():
    condition = {"resourceType": "Condition", "clinicalStatus": {"coding": [{"code": "active"}]},
                 "verificationStatus": {"coding": [{"code": "confirmed"}]}}
    marked = retired(condition)
    assert marked["verificationStatus"]["coding"][0]["code"] == "entered-in-error"
    assert "clinicalStatus" not in marked and is_retired(marked)  # R4 con-5


def test_a_type_without_an_entered_in_error_status_stops_the_run_by_name():
    with pytest.raises(ValidationFailed) as raised:
        retired({"resourceType": "Patient"})
    assert raised.value.rule == "deletion.status"


def test_a_deleted_resource_counts_as_retired():
    assert is_retired(None)


def test_only_the_composition_level_left_means_nothing_left():
    assert nothing_left([{"resourceType": "Encounter"}, {"resourceType": "Composition"}])
    assert not nothing_left([{"resourceType": "Encounter"}, {"resourceType": "Observation"}])


def test_without_keys_drops_exactly_the_entry_a_key_came_from():
    obs = "openEHR-EHR-OBSERVATION.body_temperature.v2"
    composition = {"content": [{"archetype_node_id": "openEHR-EHR-SECTION.vital_signs.v1", "items": [
        {"_type": "OBSERVATION", "archetype_node_id": obs, "v": 1},
        {"_type": "OBSERVATION", "archetype_node_id": "openEHR-EHR-OBSERVATION.pulse.v2", "v": 2}]}]}
    key = f"site1|{VO}|/content[openEHR-EHR-SECTION.vital_signs.v1]/items[{obs}]/data[at0002]"
    out = without_keys(composition, [key])
    assert [e["v"] for e in out["content"][0]["items"]] == [2]
    assert len(composition["content"][0]["items"]) == 2  # the input is left as it was


def test_a_site_deletion_marks_the_record_entered_in_error_in_one_transaction(engine):
    engine.drive(engine.commit(37.1, version=1))
    link = RecordLink.objects.get()
    run = engine.commit(None, version=2)
    run.change_event.change_type = "deleted"  # as the deletion check records it
    run.change_event.save()
    engine.openehr.compositions[f"{VO}::site1::2"] = None  # the site's deletion version has no content
    assert engine.drive(run) == SyncRun.Status.DONE
    r = link.fhir_resources[0]
    assert is_retired(engine.fhir.read(r["type"], r["id"]))
    bundle = engine.fhir.transactions[-1]
    methods = [e["request"]["method"] for e in bundle["entry"]]
    assert "DELETE" not in methods  # never a physical delete
    deleted_by = f"Provenance/{provenance_id(f'{VO}::site1::2|deleted')}"
    assert any(e["request"].get("url") == deleted_by for e in bundle["entry"])
    link.refresh_from_db()
    assert link.deleted and link.openehr_version_uid == f"{VO}::site1::2"
