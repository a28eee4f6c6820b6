"""FHIR leaves a result's, a procedure's or an administration's time optional; the openEHR RM does not
(HISTORY.origin, EVENT.time, ACTION.time are 1..1).  No time is made up: the entry is declared 'refused',
named by the resource it came from, so the report never calls the file round-tripped and the engine
dead-letters the run for a person (tests/engine/test_reverse.py) before EHRbase would refuse it
(tests/mapping/test_pathology_ehrbase.py holds the check to EHRbase's own refusal)."""
import pytest

from sync.mapping import from_fhir, rmcheck

PATIENT = {"reference": "Patient/1"}
VITAL = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}
UNDATED = {
    "Observation": ({"resourceType": "Observation", "id": "hr", "status": "final", "subject": PATIENT,
                     "category": [VITAL], "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                     "valueQuantity": {"value": 60, "unit": "/min", "system": "http://unitsofmeasure.org",
                                       "code": "/min"}},
                    "effectiveDateTime", ["rm.HISTORY.origin", "rm.POINT_EVENT.time"]),
    "Procedure": ({"resourceType": "Procedure", "id": "p", "status": "completed", "subject": PATIENT,
                   "code": {"text": "Core needle biopsy"}}, "performedDateTime", ["rm.ACTION.time"]),
    "MedicationAdministration": ({"resourceType": "MedicationAdministration", "id": "ma", "status": "completed",
                                  "subject": PATIENT, "medicationCodeableConcept": {"text": "Tamoxifen 20 mg"},
                                  "effectivePeriod": {}}, "effectiveDateTime", ["rm.ACTION.time"]),
    "MedicationStatement": ({"resourceType": "MedicationStatement", "id": "ms", "status": "active",
                             "subject": PATIENT, "medicationCodeableConcept": {"text": "Ibuprofen"}},
                            "effectiveDateTime", ["rm.HISTORY.origin", "rm.POINT_EVENT.time"]),
}


@pytest.mark.parametrize("rtype", sorted(UNDATED))
def test_an_undated_resource_is_refused_by_name_and_nothing_is_made_up(rtype):
    resource, _, rules = UNDATED[rtype]
    out = from_fhir([resource], template_id="t")
    assert [m.rule for m in rmcheck.missing(out.composition)] == rules
    [refused] = [x for x in out.losses if x.kind == "refused"]
    assert refused.path == f"{rtype}/{resource['id']}"
    assert all(r.split(".", 1)[1] in refused.reason for r in rules)


@pytest.mark.parametrize("rtype", sorted(UNDATED))
def test_the_same_resource_with_its_time_is_not_refused(rtype):
    resource, element, _ = UNDATED[rtype]
    dated = {**{k: v for k, v in resource.items() if k != "effectivePeriod"}, element: "2025-03-01T10:00:00+01:00"}
    out = from_fhir([dated], template_id="t")
    assert rmcheck.missing(out.composition) == [] and [x for x in out.losses if x.kind == "refused"] == []


def test_a_condition_has_no_required_time():
    cond = {"resourceType": "Condition", "id": "c", "subject": PATIENT, "code": {"text": "Breast cancer"}}
    assert rmcheck.missing(from_fhir([cond], template_id="t").composition) == []


def test_the_missing_node_is_named_by_its_path_under_the_entry():
    out = from_fhir([UNDATED["Observation"][0]], template_id="t")
    [origin, time] = rmcheck.missing(out.composition)
    assert origin.entry == time.entry and origin.entry.startswith("/content[openEHR-EHR-OBSERVATION.")
    assert origin.path.startswith(origin.entry + "/data[") and time.path.startswith(origin.path + "/events[")
