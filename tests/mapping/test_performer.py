"""Who performed it: FHIR performer <-> the entry's other_participations 'performer' (issue 21, hooks_performer.py).

The performer must live in the openEHR entry itself, not only in the feeder audit that keeps the FHIR
source: once a site edits the entry, the feeder audit no longer applies and only what the entry holds
comes back.  So each case maps from FHIR, drops every feeder audit (what an edit at the site amounts to),
maps forward again and compares the performer."""
import copy

import pytest

from sync.mapping import from_fhir, to_fhir

from .conftest import corpus_files, load

NURSE = {"reference": "Practitioner/nurse-7", "display": "Nurse Ana Kovač"}
LAB = {"reference": "Organization/lab-3", "display": "Central laboratory"}
PERFORMER = {"_type": "DV_TEXT", "value": "performer"}
UID = "aaaaaaaa-0000-4000-8000-000000000321::x::1"


def _corpus(name: str) -> dict:
    return load(next(iter(corpus_files(f"fhir/{name}"))))


def _administration() -> dict:
    return {"resourceType": "MedicationAdministration", "id": "ma", "status": "completed",
            "subject": {"reference": "Patient/1"}, "medicationCodeableConcept": {"text": "Tamoxifen 20 mg"},
            "effectiveDateTime": "2025-03-01T10:00:00+01:00"}


# (seed, the performer element as sent, the performer as it must come back after a site edit)
CASES = {
    "Observation (vital sign)": (lambda: _corpus("observation_vitals_heart_rate.json"), [NURSE], [NURSE]),
    "Observation (vital sign), two performers": (lambda: _corpus("observation_vitals_body_weight.json"),
                                                 [NURSE, LAB], [NURSE, LAB]),
    "Procedure": (lambda: _corpus("procedure_biopsy.json"),
                  [{"function": {"text": "primary surgeon"}, "actor": NURSE}], [{"actor": NURSE}]),
    "MedicationAdministration": (_administration, [{"actor": NURSE}], [{"actor": NURSE}]),
}


def _without_feeder_audit(node):
    """The composition as if a site had edited every entry: no feeder audit left to re-apply."""
    if isinstance(node, dict):
        return {k: _without_feeder_audit(v) for k, v in node.items() if k != "feeder_audit"}
    if isinstance(node, list):
        return [_without_feeder_audit(v) for v in node]
    return node


def _entries(comp: dict) -> list[dict]:
    return [e for e in comp["content"] if isinstance(e, dict) and e.get("_type") != "SECTION"] + \
        [e for s in comp["content"] if s.get("_type") == "SECTION" for e in s.get("items", [])]


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_fhir_performer_lives_in_the_entry_and_survives_an_edit_at_the_site(case):
    seed, sent_performer, back_performer = CASES[case]
    sent = {**seed(), "performer": sent_performer}
    comp = from_fhir([copy.deepcopy(sent)], template_id="t").composition
    [entry] = _entries(comp)
    held = [p for p in entry.get("other_participations", []) if p["function"] == PERFORMER]
    assert [p["performer"]["external_ref"]["id"]["value"] for p in held] == \
        [(p.get("actor") or p)["reference"] for p in sent_performer]
    edited = {**_without_feeder_audit(comp), "uid": {"value": UID}}
    made = to_fhir(edited, site="s", ehr_id="e", patient_ref="Patient/1").resources
    [twin] = [r for r in made if r["resourceType"] == sent["resourceType"]]
    assert twin["performer"] == back_performer


def _bp_entry(participations: list[dict]) -> dict:
    """A site's blood pressure with two readings (two events: two Observations) and its participations."""
    sent = [{**_corpus("observation_vitals_blood_pressure.json"), "id": f"bp{i}",
             "effectiveDateTime": f"2025-03-01T1{i}:00:00+01:00"} for i in (1, 2)]
    comp = _without_feeder_audit(from_fhir(sent, template_id="t").composition)
    first, second = _entries(comp)
    first["data"]["events"] += second["data"]["events"]  # one entry, two readings
    first["other_participations"] = copy.deepcopy(participations)
    return {**comp, "content": [first], "uid": {"value": UID}}


def test_a_site_performer_reaches_every_observation_of_the_entry_and_comes_back_once():
    nurse = {"_type": "PARTICIPATION", "function": PERFORMER,
             "performer": {"_type": "PARTY_IDENTIFIED", "name": "Nurse Ana Kovač",
                           "external_ref": {"_type": "PARTY_REF", "namespace": "fhir", "type": "PERSON",
                                            "id": {"_type": "GENERIC_ID", "value": "Practitioner/nurse-7",
                                                   "scheme": "fhir"}}}}
    comp = _bp_entry([nurse])
    made = [r for r in to_fhir(comp, site="s", ehr_id="e", patient_ref="Patient/1").resources
            if r["resourceType"] == "Observation"]
    assert len(made) >= 2 and all(r["performer"] == [NURSE] for r in made)
    back = _without_feeder_audit(from_fhir(made, template_id="t").composition)
    held = [p for e in _entries(back) for p in e.get("other_participations", []) if p["function"] == PERFORMER]
    assert len(held) == len(_entries(back)) == 1  # one entry, its performer once, not once per reading


@pytest.mark.parametrize("function,performer", [
    ("witness", {"_type": "PARTY_IDENTIFIED", "name": "Dr Witness"}),  # another role: not the performer
    ("performer", {"_type": "PARTY_SELF"}),  # the patient's own reading: no reference invented for it
])
def test_a_participation_that_is_not_a_named_performer_is_not_sent_as_one(function, performer):
    comp = _bp_entry([{"_type": "PARTICIPATION", "function": {"_type": "DV_TEXT", "value": function},
                       "performer": performer}])
    made = [r for r in to_fhir(comp, site="s", ehr_id="e", patient_ref="Patient/1").resources
            if r["resourceType"] == "Observation"]
    assert made and all("performer" not in r for r in made)
