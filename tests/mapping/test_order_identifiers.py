"""Order identifiers have an openEHR home (issue 21): a lab report's, an imaging report's and a service
request's identifier typed HL7 v2-0203 FILL (filler) / PLAC (placer) <-> the archetype's receiver / requester
order identifier (DV_IDENTIFIER in the protocol).  An identifier of no such type is no order number the
archetype names: a FHIR-born one stays in the feeder audit and comes back as sent."""
import copy
import json

import pytest

from sync.mapping import compare_clinical, from_fhir, rmpath, to_fhir, validate_fhir
from sync.mapping.hooks_identifiers import V2_0203
from sync.mapping.residue import strip

from .conftest import corpus_files, load

UID = "aaaaaaaa-0000-4000-8000-000000000211::x::1"
ADDED = ("dictionary_item_added", "iterable_item_added")
SUBJECT = {"reference": "Patient/1"}


def _typed(code: str, value: str, system: str = "urn:example:orders") -> dict:
    return {"type": {"coding": [{"system": V2_0203, "code": code}]}, "system": system, "value": value}


def _protocol_ids(entry: dict) -> dict[str, dict]:
    """{at-code: DV_IDENTIFIER} of the entry's protocol."""
    return {n["archetype_node_id"]: n["value"] for _, n in rmpath.walk(entry.get("protocol") or {})
            if (n.get("value") or {}).get("_type") == "DV_IDENTIFIER"}


def _entry(composition: dict) -> dict:
    [entry] = [e for _, e in rmpath.entries(composition)]
    return entry


def _back(composition: dict, rtype: str) -> dict:
    out = to_fhir({**copy.deepcopy(composition), "uid": {"value": UID}}, site="s", ehr_id="e", patient_ref="Patient/1")
    return strip(next(r for r in out.resources if r["resourceType"] == rtype))


def _same(sent: dict, back: dict) -> list:
    return [d for d in compare_clinical(sent, {**back, "subject": sent["subject"]}) if d["kind"] not in ADDED]


SERVICE_REQUEST = {"resourceType": "ServiceRequest", "id": "sr", "status": "active", "intent": "order",
                   "code": {"text": "Adjuvant radiotherapy"}, "subject": SUBJECT}
IMAGING = {"resourceType": "DiagnosticReport", "id": "rad", "status": "final", "subject": SUBJECT,
           "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "RAD"}]}],
           "code": {"coding": [{"system": "http://loinc.org", "code": "24627-2", "display": "Chest CT"}]},
           "effectiveDateTime": "2025-02-03T10:00:00+01:00"}
CASES = {  # resource, (placer at-code, filler at-code)
    "service request": (SERVICE_REQUEST, ("at0010", "at0011")),
    "imaging report": (IMAGING, ("at0028", "at0031")),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_placer_and_filler_identifiers_are_the_archetypes_order_identifiers_and_come_back_as_sent(case):
    resource, (placer, filler) = CASES[case]
    sent = {**copy.deepcopy(resource), "identifier": [_typed("PLAC", "P-17"), _typed("FILL", "F-42", "urn:lis")]}
    out = from_fhir([copy.deepcopy(sent)], template_id="t")
    assert out.losses == []
    ids = _protocol_ids(_entry(out.composition))
    assert ids[placer] == {"_type": "DV_IDENTIFIER", "issuer": "urn:example:orders", "id": "P-17"}
    assert ids[filler] == {"_type": "DV_IDENTIFIER", "issuer": "urn:lis", "id": "F-42"}
    back = _back(out.composition, sent["resourceType"])
    assert _same(sent, back) == [] and validate_fhir(back) == []


@pytest.mark.parametrize("case", sorted(CASES))
def test_an_identifier_of_no_order_type_is_no_order_number_and_is_kept_as_sent(case):
    resource, _ = CASES[case]
    sent = {**copy.deepcopy(resource), "identifier": [{"system": "urn:example:other", "value": "X-1"},
                                                      _typed("VN", "V-9")]}  # a visit number: not the order's
    out = from_fhir([copy.deepcopy(sent)], template_id="t")
    assert _protocol_ids(_entry(out.composition)) == {}
    assert out.losses == [] and _same(sent, _back(out.composition, sent["resourceType"])) == []


@pytest.mark.parametrize("case", sorted(CASES))
def test_openehr_born_order_identifiers_say_who_assigned_them_and_round_trip_exactly(case):
    resource, (placer, filler) = CASES[case]
    sent = {**copy.deepcopy(resource), "identifier": [_typed("PLAC", "P-17"), _typed("FILL", "F-42")]}
    composition = from_fhir([sent], template_id="t").composition
    entry = _entry(composition)
    entry.pop("feeder_audit")  # as recorded at the site: no FHIR source
    next(n for _, n in rmpath.walk(entry["protocol"]) if n.get("archetype_node_id") == filler)["value"]["type"] = \
        "LIS accession"
    made = _back(composition, resource["resourceType"])
    typed = {c["code"]: i for i in made["identifier"] for c in (i.get("type") or {}).get("coding", [])}
    assert typed["PLAC"]["value"] == "P-17" and typed["FILL"]["value"] == "F-42"
    assert typed["FILL"]["type"]["text"] == "LIS accession"
    again = _entry(from_fhir([made], template_id="t", base_composition=composition).composition)
    assert _protocol_ids(again) == _protocol_ids(entry)


def test_the_kds_lab_reports_befund_id_is_the_receiver_order_identifier_and_comes_back_with_its_assigner():
    bundle = load(next(iter(corpus_files("fhir/kds_lab_report.patient1.bundle.json"))))
    resources = [e["resource"] for e in bundle["entry"]]
    [report] = [r for r in resources if r["resourceType"] == "DiagnosticReport"]
    [befund] = report["identifier"]
    out = from_fhir(copy.deepcopy(resources), template_id="t")
    ids = _protocol_ids(_entry(out.composition))
    assert ids == {"at0063": {"_type": "DV_IDENTIFIER", "issuer": befund["system"], "id": befund["value"]}}
    back = _back(out.composition, "DiagnosticReport")
    assert [i for i in back["identifier"] if i["system"] != "urn:conflictdesk:source"] == [befund]  # assigner too


def test_a_site_edit_of_the_order_number_wins_and_the_stale_detail_is_reported():
    sent = {**copy.deepcopy(SERVICE_REQUEST),
            "identifier": [_typed("FILL", "F-42"), {"system": "urn:example:other", "value": "X-1"}]}
    composition = from_fhir([copy.deepcopy(sent)], template_id="t").composition
    entry = _entry(composition)
    next(n for _, n in rmpath.walk(entry["protocol"]) if n.get("archetype_node_id") == "at0011")["value"]["id"] = "F-43"
    out = to_fhir({**composition, "uid": {"value": UID}}, site="s", ehr_id="e", patient_ref="Patient/1")
    made = strip(next(r for r in out.resources if r["resourceType"] == "ServiceRequest"))
    assert [i["value"] for i in made["identifier"] if i["system"] != "urn:conflictdesk:source"] == ["F-43"]
    assert [x.kind for x in out.losses if "identifier" in x.path] == ["stale"]
    assert json.dumps(made).count("F-42") == 0
