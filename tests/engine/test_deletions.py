"""Deletions in the engine's own terms: which element says entered-in-error, and the forward run that sets it."""
import json

import pytest

from sync.identity import provenance_id
from sync.mapping import fhirmodel
from sync.mapping.composition import RESOURCES as COMPOSITION_LEVEL
from sync.mapping.from_fhir import PART_ONLY
from sync.mapping.spec import registry
from sync.models import RecordLink, SyncRun
from sync.workflow.deletion import is_retired, marking, retired
from sync.workflow.removal import nothing_left, without_keys
from sync.workflow.result import ValidationFailed

from tests.fixtures import REPO_DIR

from .conftest import VO

XVER_AE = "http://hl7.org/fhir/5.0/StructureDefinition/extension-AdverseEvent.status"
STANDINS = REPO_DIR / "deploy" / "hapi-fhir" / "src" / "main" / "resources" / "fhir-standins"


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


def test_an_adverse_event_is_marked_by_r5s_status_as_the_cross_version_modifier_extension():
    """R4's AdverseEvent has no status: R5's, carried by HL7's xver extension, a modifier (never read as live)."""
    ae = {"resourceType": "AdverseEvent", "actuality": "actual",
          "modifierExtension": [{"url": XVER_AE, "valueCode": "completed"}]}
    marked = retired(ae)
    assert marked["modifierExtension"] == [{"url": XVER_AE, "valueCode": "entered-in-error"}]  # replaced, not doubled
    assert marked["actuality"] == "actual" and is_retired(marked)
    assert not is_retired(ae) and not is_retired({"resourceType": "AdverseEvent", "actuality": "actual"})
    assert ae["modifierExtension"][0]["valueCode"] == "completed"  # the input is left as it was
    # someone else's modifier extension is kept beside it
    other = {"url": "https://example.org/other", "valueBoolean": True}
    assert retired({**ae, "modifierExtension": [other]})["modifierExtension"][0] == other


def test_every_type_the_mapping_makes_has_a_way_to_say_entered_in_error():
    """From the mapping registry, not a list kept here: a new mapped type with no way would dead-letter deletions."""
    made = {s.resource for s in registry().values() if s.resource and fhirmodel.is_resource(s.resource)}
    made |= {*COMPOSITION_LEVEL, *PART_ONLY}
    ways = {t: marking(t) for t in sorted(made)}
    assert "AdverseEvent" in made and not [t for t, how in ways.items() if how is None]
    for rtype in ("ClinicalImpression", "Consent", "EpisodeOfCare"):  # R4's own status, read from the model
        assert ways[rtype] == ("code", "status") and is_retired(retired({"resourceType": rtype, "status": "active"}))
    extension = {t: how[1] for t, how in ways.items() if how[0] == "extension"}
    assert extension == {"AdverseEvent": XVER_AE}
    # HAPI's validator does not resolve R5 cross-version URLs itself: each one has its stand-in definition
    for rtype, url in extension.items():
        sd = json.loads((STANDINS / f"StructureDefinition-extension-{rtype}.status.json").read_text())
        assert sd["url"] == url and sd["context"] == [{"type": "element", "expression": rtype}]
        assert sd["differential"]["element"][0]["isModifier"] is True


def test_a_type_whose_r4_status_cannot_say_entered_in_error_gets_no_extension():
    assert marking("Patient") is None and marking("Provenance") is None and marking("NoSuchType") is None


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


def test_without_keys_drops_only_the_cluster_a_cluster_made_resource_came_from():
    """A central entered-in-error AdverseEvent (a diagnosis' CTCAE grading) takes the grading out, not the diagnosis."""
    dx, ctcae = "openEHR-EHR-EVALUATION.problem_diagnosis.v1", "openEHR-EHR-CLUSTER.ctcae.v1"

    def diagnosis(n):
        return {"_type": "EVALUATION", "archetype_node_id": dx, "v": n, "data": {
            "archetype_node_id": "at0001", "items": [
                {"_type": "ELEMENT", "archetype_node_id": "at0002", "v": f"name{n}"},
                {"_type": "CLUSTER", "archetype_node_id": ctcae, "v": f"grade{n}"}]}}

    composition = {"content": [diagnosis(1), diagnosis(2)]}
    key = f"site1|{VO}|/content[{dx}]:1/data[at0001]/items[{ctcae}]"  # the second diagnosis' grading
    out = without_keys(composition, [key])
    assert [e["v"] for e in out["content"]] == [1, 2]  # both diagnoses stay
    assert [i["v"] for i in out["content"][0]["data"]["items"]] == ["name1", "grade1"]
    assert [i["v"] for i in out["content"][1]["data"]["items"]] == ["name2"]
    # the diagnosis itself (the Condition's key) still takes the whole entry
    assert [e["v"] for e in without_keys(composition, [f"site1|{VO}|/content[{dx}]"])["content"]] == [2]


def test_a_type_without_an_identifier_search_is_created_by_put_on_an_id_fixed_by_its_key():
    """R4 has no AdverseEvent?identifier (HAPI-0488 on a conditional create): a PUT a replay repeats exactly."""
    from sync.workflow.bundle import build_transaction

    src = "urn:conflictdesk:source"
    ae = {"resourceType": "AdverseEvent", "id": "ae1", "actuality": "actual",
          "identifier": {"system": src, "value": f"site1|{VO}|/content[x]/items[openEHR-EHR-CLUSTER.ctcae.v1]"}}
    cond = {"resourceType": "Condition", "id": "c1",
            "identifier": [{"system": src, "value": f"site1|{VO}|/content[x]"}],
            "evidence": [{"detail": [{"reference": "AdverseEvent/ae1"}]}]}
    bundle, keys = build_transaction([cond, ae], None, {}, f"{VO}::site1::1")
    again, _ = build_transaction([cond, ae], None, {}, f"{VO}::site1::1")
    by_type = {e["resource"]["resourceType"]: e for e in bundle["entry"]}
    put = by_type["AdverseEvent"]
    assert put["request"]["method"] == "PUT" and "ifNoneExist" not in put["request"]
    assert put["request"]["url"] == f"AdverseEvent/{put['resource']['id']}" == put["fullUrl"]
    assert again["entry"][1]["request"]["url"] == put["request"]["url"]  # the same id on a replay
    assert by_type["Condition"]["request"]["ifNoneExist"].startswith("identifier=")
    assert by_type["Condition"]["resource"]["evidence"][0]["detail"][0]["reference"] == put["fullUrl"]


def test_the_central_removal_check_keeps_only_the_removals_of_types_whose_edits_do_not_flow_back(settings):
    from types import SimpleNamespace

    from sync.detection import _carried, removal_types

    types = removal_types()
    assert "AdverseEvent" in types and "MedicationStatement" in types
    assert "ImagingStudy" in types  # made by a hook beside its file's DiagnosticReport (hooks.MAKES)
    assert not set(types) & {*settings.CONFLICTDESK_FLOWBACK_TYPES, "Encounter", "Composition", "List", "Specimen"}

    def entry(rtype, resource=None, deleted=False):
        return SimpleNamespace(resource_type=rtype, resource=resource, deleted=deleted)

    ae = {"resourceType": "AdverseEvent", "actuality": "actual"}
    assert not _carried(entry("AdverseEvent", ae))  # an edit: no change for the sites
    assert _carried(entry("AdverseEvent", retired(ae)))  # entered-in-error: a removal
    assert _carried(entry("AdverseEvent", None, deleted=True))  # a DELETE
    assert _carried(entry("Observation", {"resourceType": "Observation", "status": "final"}))  # flow-back: every version


def test_the_deletion_schedule_runs_the_central_removal_check_too(db, monkeypatch):
    from sync import detection, tasks

    monkeypatch.setattr(detection, "check_deletions", lambda site: 0)
    monkeypatch.setattr(detection, "poll_central_removals", lambda: 3)
    assert tasks.check_deletions() == 3

    def down():
        raise ConnectionError("central server down")

    monkeypatch.setattr(detection, "poll_central_removals", down)
    assert tasks.check_deletions() == 0  # logged, read again from the same cursor next pass
