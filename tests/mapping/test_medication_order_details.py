"""CLUSTER.medication.v2 in a medication order's 'Medication details' slot (at0143, INSTRUCTION.medication_order.v3
and v2) <-> a Medication of its own named by MedicationRequest.medicationReference (issue 18), as the administration
and statement rows already do: an order named by its details cluster alone (no medication item) reaches FHIR with
the Medication, both ways; an order with a medication item keeps medicationCodeableConcept (the cluster then stays
in the residue); a central order naming a Medication of its own (not made from a cluster) still gives the medication
item; hypothesis round trip; HAPI $validate."""
import copy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync.mapping import compare_clinical, from_fhir, to_fhir, to_openehr, validate_fhir
from sync.mapping import datatypes as dt
from sync.mapping.engine import entry_skeleton
from sync.mapping.residue import strip
from sync.mapping.spec import registry
from tests.mapping.entry_trip import trip, same as _same

from .hapi import hapi_errors

# The rows this module proves (sync.mapping.coverage reads it; tests/mapping/test_coverage.py checks it).
COVERS = {"CLUSTER.medication.v2": "forward reverse hapi"}

ARGS = dict(site="s", ehr_id="e", patient_ref="Patient/1")
UID = {"_type": "OBJECT_VERSION_ID", "value": "9d0a7c35-0000-4000-8000-000000000020::gen::1"}
MED = "openEHR-EHR-CLUSTER.medication.v2"
ORDERS = ("openEHR-EHR-INSTRUCTION.medication_order.v3", "openEHR-EHR-INSTRUCTION.medication_order.v2")


def _el(node, name, value):
    return {"_type": "ELEMENT", "name": {"_type": "DV_TEXT", "value": name}, "archetype_node_id": node, "value": value}


def _details(name="Paclitaxel 6 mg/ml concentrate for solution for infusion", form=None, batch=None):
    items = [_el("at0132", "Name", name if isinstance(name, dict) else {"_type": "DV_TEXT", "value": name})]
    if form:
        items.append(_el("at0071", "Form", form))
    if batch:
        items.append(_el("at0150", "Batch ID", {"_type": "DV_TEXT", "value": batch}))
    return {"_type": "CLUSTER", "name": {"_type": "DV_TEXT", "value": "Medication details"}, "archetype_node_id": MED,
            "archetype_details": {"_type": "ARCHETYPED", "archetype_id": {"_type": "ARCHETYPE_ID", "value": MED},
                                  "rm_version": "1.0.4"}, "items": items}


def _order(*activities, archetype=ORDERS[0], narrative="Paclitaxel weekly"):
    entry = entry_skeleton(registry()[archetype], "en")
    entry["narrative"] = {"_type": "DV_TEXT", "value": narrative}
    entry["activities"] = [{"_type": "ACTIVITY", "name": {"_type": "DV_TEXT", "value": "Order"},
                            "archetype_node_id": "at0001", "action_archetype_id": "openEHR-EHR-ACTION.medication.v1",
                            "description": {"_type": "ITEM_TREE", "name": {"_type": "DV_TEXT", "value": "Tree"},
                                            "archetype_node_id": "at0002", "items": items}} for items in activities]
    return entry


def _composition(*entries) -> dict:
    return {"_type": "COMPOSITION", "name": {"_type": "DV_TEXT", "value": "Orders"}, "uid": dict(UID),
            "archetype_node_id": "openEHR-EHR-COMPOSITION.encounter.v1",
            "language": dt.code_phrase("ISO_639-1", "en"), "territory": dt.code_phrase("ISO_3166-1", "DE"),
            "category": dt.coded_text("event", "openehr", "433"), "composer": {"_type": "PARTY_SELF"},
            "content": list(entries)}


def _trip(comp):
    return trip(comp, ARGS)




def _of(resources, rt):
    return [r for r in resources if r["resourceType"] == rt]


INDICATION = _el("at0018", "Clinical indication", dt.coded_text("Malignant neoplasm of breast", "ICD10", "C50.9"))
INFUSION = dt.coded_text("Concentrate for solution for infusion", "EDQM", "11211000")


@pytest.mark.parametrize("archetype", ORDERS)
def test_an_order_named_by_its_details_cluster_names_a_medication_and_comes_back(archetype):
    comp = _composition(_order([_details(form=INFUSION, batch="B-2025-17"), INDICATION], archetype=archetype))
    res, back = _trip(comp)
    [request], [medication] = _of(res, "MedicationRequest"), _of(res, "Medication")
    assert request["medicationReference"] == {"reference": f"Medication/{medication['id']}"}
    assert "medicationCodeableConcept" not in request
    assert medication["code"] == {"text": "Paclitaxel 6 mg/ml concentrate for solution for infusion"}
    assert medication["form"]["coding"][0]["code"] == "11211000" and medication["batch"] == {"lotNumber": "B-2025-17"}
    assert "subject" not in medication and "patient" not in medication
    assert validate_fhir(request) == [] and validate_fhir(medication) == []
    assert _same(comp, back) == []


def test_each_activity_names_its_own_medication():
    comp = _composition(_order([_details("Paclitaxel 6 mg/ml")], [_details("Trastuzumab 150 mg powder")]))
    res, back = _trip(comp)
    requests, medications = _of(res, "MedicationRequest"), _of(res, "Medication")
    names = {m["id"]: m["code"]["text"] for m in medications}
    assert [names[r["medicationReference"]["reference"].split("/")[1]] for r in requests] == \
        ["Paclitaxel 6 mg/ml", "Trastuzumab 150 mg powder"]
    assert _same(comp, back) == []


def test_the_standard_elements_alone_give_the_cluster_back():
    comp = _composition(_order([_details(form=INFUSION)]))
    res, _ = _trip(comp)
    back = to_openehr([strip(r) for r in res], template_id="t")
    [activity] = back["content"][0]["activities"]
    [cluster] = [i for i in activity["description"]["items"] if i.get("archetype_node_id") == MED]
    values = {i["archetype_node_id"]: i["value"]["value"] for i in cluster["items"] if "value" in i}
    assert values == {"at0132": "Paclitaxel 6 mg/ml concentrate for solution for infusion",
                      "at0071": "Concentrate for solution for infusion"}
    assert not [i for i in activity["description"]["items"] if i.get("archetype_node_id") == "at0070"]


def test_with_a_medication_item_the_order_keeps_its_concept_and_the_cluster_travels_in_the_residue():
    item = _el("at0070", "Medication item", dt.coded_text("paclitaxel", "ATC", "L01CD01"))
    comp = _composition(_order([item, _details()]))
    res, back = _trip(comp)
    [request] = _of(res, "MedicationRequest")
    assert not _of(res, "Medication") and "medicationReference" not in request
    assert request["medicationCodeableConcept"]["coding"][0]["code"] == "L01CD01"
    assert _same(comp, back) == []


def test_a_central_order_naming_a_medication_of_its_own_still_gives_the_medication_item():
    born_med = {"resourceType": "Medication", "id": "m-1",
                "code": {"coding": [{"system": "http://www.whocc.no/atc", "code": "L01CD01", "display": "paclitaxel"}]}}
    born = {"resourceType": "MedicationRequest", "id": "mr-1", "status": "active", "intent": "order",
            "subject": {"reference": "Patient/1"}, "medicationReference": {"reference": "Medication/m-1"},
            "requester": {"display": "Dr. Example"}}
    out = from_fhir([copy.deepcopy(born), copy.deepcopy(born_med)], template_id="t")
    [entry] = [e for e in out.composition["content"] if "medication_order" in e["archetype_node_id"]]
    items = entry["activities"][0]["description"]["items"]
    assert [i["value"]["defining_code"]["code_string"] for i in items if i["archetype_node_id"] == "at0070"] == \
        ["L01CD01"]
    assert not [i for i in items if i.get("archetype_node_id") == MED]


# ------------------------------------------------------------------ property
TEXT = st.text(alphabet=st.characters(whitelist_categories=("Lu", "Ll", "Nd", "Zs")), min_size=1, max_size=16) \
    .map(str.strip).filter(bool)


@st.composite
def orders(draw):
    activities = []
    for _ in range(draw(st.integers(1, 3))):
        items = []
        if draw(st.booleans()):
            items.append(_el("at0070", "Medication item", {"_type": "DV_TEXT", "value": draw(TEXT)}))
        if draw(st.booleans()) or not items:
            items.append(_details(draw(TEXT), form=draw(st.sampled_from([None, INFUSION])),
                                  batch=draw(st.one_of(st.none(), TEXT))))
        if draw(st.booleans()):
            items.append(INDICATION)
        activities.append(items)
    return _composition(_order(*activities, archetype=draw(st.sampled_from(ORDERS)), narrative=draw(TEXT)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(orders())
def test_round_trip_property(comp):
    res, back = _trip(comp)
    assert all(validate_fhir(r) == [] for r in res)
    named = sum(1 for a in comp["content"][0]["activities"]
                if not [i for i in a["description"]["items"] if i["archetype_node_id"] == "at0070"])
    assert len(_of(res, "Medication")) == named
    assert _same(comp, back) == []
    again = [r for r in to_fhir({**copy.deepcopy(back), "uid": dict(UID)}, **ARGS).resources
             if r["resourceType"] not in ("Encounter", "Composition")]
    assert sorted(compare_clinical(strip(a), strip(b)) == [] for a, b in
                  zip(sorted(res, key=lambda r: r["id"]), sorted(again, key=lambda r: r["id"]))) == [True] * len(res)


# ------------------------------------------------------------------ HAPI
@pytest.mark.integration
def test_hapi_validates_the_order_and_its_medication(fhir_base_url):
    res, _ = _trip(_composition(_order([_details(form=INFUSION, batch="B-1"), INDICATION]),
                                _order([_details("Trastuzumab 150 mg powder")], archetype=ORDERS[1])))
    assert len(_of(res, "Medication")) == 2 and len(_of(res, "MedicationRequest")) == 2
    assert {r["id"]: hapi_errors(fhir_base_url, r) for r in res} == {r["id"]: [] for r in res}
