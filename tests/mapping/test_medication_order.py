"""INSTRUCTION.medication_order.v2/v3 <-> MedicationRequest: dosage, timing, mCODE rule, round trips."""
import copy
import json
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync.mapping import compare_clinical, from_fhir, rmpath, to_fhir, to_openehr, validate_fhir
from sync.mapping import datatypes as dt
from sync.mapping.engine import entry_skeleton
from sync.mapping.fidelity import element_path
from sync.mapping.hooks_medication import oncology
from sync.mapping.residue import strip
from sync.mapping.spec import SPEC_DIR, registry

from .conftest import CORPUS, load
from .test_procedure import hapi_errors

# The rows this module proves (sync.mapping.coverage reads it; tests/mapping/test_coverage.py checks it).
COVERS = {"INSTRUCTION.medication_order.v2": "forward reverse hapi",
          "INSTRUCTION.medication_order.v3": "forward reverse hapi"}

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ONCOLOGY = FIXTURES / "oncology" / "oncology_encounter.composition.json"
V2 = FIXTURES / "medication" / "medication_order.v2.composition.json"  # corpus FLAT committed to EHRbase
V3 = "openEHR-EHR-INSTRUCTION.medication_order.v3"
MEDREQ = "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-cancer-related-medication-request"
FHIR = [CORPUS / "fhir" / n for n in ("medicationrequest_0301.json", "mcode_medication_request_placeholder_codes.json")]


def _fwd(comp, patient="Patient/1"):
    return [r for r in to_fhir(comp, site="s", ehr_id="e", patient_ref=patient).resources
            if r["resourceType"] == "MedicationRequest"]


def _orders(comp):
    return [e for _, e in rmpath.entries(comp) if "INSTRUCTION.medication_order" in e.get("archetype_node_id", "")]


def test_v2_and_v3_files_map_alike():
    def body(name):
        doc = yaml.safe_load((SPEC_DIR / "instruction" / name).read_text())
        return doc["mappings"], doc["preprocessor"]
    assert body("medication_order.v2.yml") == body("medication_order.v3.yml")


def test_the_oncology_fixture_is_a_cancer_related_medication_request():
    [mr] = _fwd(json.loads(ONCOLOGY.read_text(encoding="utf-8")))
    assert MEDREQ in mr["meta"]["profile"]
    assert (mr["status"], mr["intent"]) == ("active", "order")
    assert mr["medicationCodeableConcept"]["coding"][0] == {
        "system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "313195",
        "display": "tamoxifen 20 MG Oral Tablet"}
    [dosage] = mr["dosageInstruction"]
    assert dosage["route"]["coding"][0]["code"] == "26643006"
    assert dosage["doseAndRate"][0]["doseQuantity"] == {"value": 1.0, "unit": "tablet",
                                                        "system": "http://unitsofmeasure.org", "code": "1"}
    rep = dosage["timing"]["repeat"]
    assert (rep["frequency"], rep["period"], rep["periodUnit"]) == (1, 1, "d")
    assert rep["boundsPeriod"] == {"start": "2025-03-15T08:00:00+01:00", "end": "2030-03-15T08:00:00+01:00"}
    assert mr["reasonCode"][0]["text"].startswith("Hormone receptor positive breast cancer")


def test_the_v2_corpus_order_splits_per_activity_and_round_trips():
    comp = load(V2)
    res = _fwd(comp)
    assert [r["medicationCodeableConcept"]["text"] for r in res] == ["Lorem ipsum0", "Lorem ipsum1"]
    assert all(validate_fhir(r) == [] for r in res)
    assert compare_clinical(comp, to_openehr(res, template_id="t", base_composition=comp)) == []
    assert compare_clinical({"content": _orders(comp)}, {"content": to_openehr(res, template_id="t")["content"]}) == []


@pytest.mark.parametrize("path", [ONCOLOGY, V2], ids=lambda p: p.name)
def test_compositions_round_trip_without_a_base(path):
    comp = load(path)
    back = to_openehr(_fwd(comp), template_id="t")
    assert compare_clinical({"content": _orders(comp)}, {"content": back["content"]}) == []


def test_fhir_born_order_keeps_dose_route_timing():
    mr = {"resourceType": "MedicationRequest", "id": "m", "status": "active", "intent": "order",
          "subject": {"reference": "Patient/1"},
          "medicationCodeableConcept": {"coding": [{"system": "http://www.whocc.no/atc", "code": "L02BA01",
                                                    "display": "tamoxifen"}], "text": "tamoxifen"},
          "dosageInstruction": [{"text": "20 mg daily",
                                 "route": {"coding": [{"system": "http://snomed.info/sct", "code": "26643006",
                                                       "display": "Oral route"}], "text": "Oral route"},
                                 "timing": {"repeat": {"boundsPeriod": {"start": "2025-03-15T08:00:00+01:00"},
                                                       "frequency": 1, "period": 1, "periodUnit": "d"}},
                                 "doseAndRate": [{"doseQuantity": {"value": 20, "unit": "mg",
                                                                   "system": "http://unitsofmeasure.org",
                                                                   "code": "mg"}}]}]}
    out = from_fhir([mr], template_id="t")
    [order] = _orders(out.composition)
    assert order["archetype_node_id"] == V3
    act = order["activities"][0]
    assert act["timing"] == {"_type": "DV_PARSABLE", "value": "R/2025-03-15T08:00:00+01:00/P1D", "formalism": "ISO8601"}
    comp = {**copy.deepcopy(out.composition), "uid": {"value": "aaaaaaaa-0000-4000-8000-000000000001::x::1"}}
    [twin] = _fwd(comp)
    assert MEDREQ in twin["meta"]["profile"]  # ATC L02
    diffs = [d for d in compare_clinical(mr, strip(twin)) if d["kind"] != "dictionary_item_added"]
    assert diffs == [] and not [x for x in out.losses if x.kind == "dropped"]


@pytest.mark.parametrize("path", FHIR, ids=lambda p: p.name)
def test_corpus_fhir_round_trips_what_is_not_reported_lost(path):
    orig = load(path)
    out = from_fhir([orig], template_id="t")
    comp = {**copy.deepcopy(out.composition), "uid": {"value": "aaaaaaaa-0000-4000-8000-000000000001::x::1"}}
    [twin] = _fwd(comp, orig["subject"]["reference"])
    assert validate_fhir(twin) == []
    lost = [x.path.split(":", 1)[1] for x in out.losses if x.path.startswith(f"MedicationRequest/{orig['id']}:")]
    for d in compare_clinical(orig, strip(twin)):
        if d["kind"] in ("dictionary_item_added", "iterable_item_added"):
            continue
        element = element_path(d["path"])
        assert any(element.startswith(x) or x.startswith(element) for x in lost), (path.name, element)
    if path.name == "medicationrequest_0301.json":  # contained Medication -> medication item
        assert twin["medicationReference"] == orig["medicationReference"] and twin["contained"] == orig["contained"]
        assert twin["dosageInstruction"][0]["route"]["coding"] == orig["dosageInstruction"][0]["route"]["coding"]


@pytest.mark.parametrize("iso,q", [("P5Y", {"value": 5, "unit": "a"}), ("PT8H", {"value": 8, "unit": "h"}),
                                   ("P2W", {"value": 2, "unit": "wk"}), ("PT30M", {"value": 30, "unit": "min"})])
def test_durations(iso, q):
    got = dt.duration_to_fhir(iso)
    assert (got["value"], got["code"]) == (q["value"], q["unit"]) and dt.duration_from_fhir(got) == iso
    assert dt.duration_to_fhir("P1Y2M") is None


def test_the_oncology_lists():
    assert oncology.is_cancer_condition(dt.coded_text("x", "ICD-10-GM", "C50.4"))
    assert oncology.is_cancer_condition({"_type": "DV_TEXT", "value": "Mammakarzinom links"})
    assert not oncology.is_cancer_condition(dt.coded_text("Rib pain", "SNOMED-CT", "297217002"))
    assert oncology.is_anticancer_agent(dt.coded_text("x", "ATC", "L01XC03"))
    assert oncology.is_anticancer_agent({"_type": "DV_TEXT", "value": "Letrozol 2,5 mg"})
    assert not oncology.is_anticancer_agent({"_type": "DV_TEXT", "value": "Paracetamol 500 mg"})


# ------------------------------------------------------------------ generated orders
text = st.text(alphabet=st.characters(whitelist_categories=("Lu", "Ll", "Zs")), min_size=1, max_size=15) \
    .map(str.strip).filter(bool)


def _el(node, name, value):
    return {"_type": "ELEMENT", "name": {"_type": "DV_TEXT", "value": name}, "archetype_node_id": node, "value": value}


def _cluster(arch, name, items):
    return {"_type": "CLUSTER", "name": {"_type": "DV_TEXT", "value": name}, "archetype_node_id": arch,
            "archetype_details": {"_type": "ARCHETYPED", "archetype_id": {"_type": "ARCHETYPE_ID", "value": arch},
                                  "rm_version": "1.0.4"}, "items": items}


@st.composite
def activity(draw):
    items = [_el("at0070", "Medication item", draw(st.one_of(
        text.map(lambda t: {"_type": "DV_TEXT", "value": t}),
        st.sampled_from([dt.coded_text("tamoxifen 20 MG Oral Tablet", "RxNorm", "313195"),
                         dt.coded_text("Paracetamol", "ATC", "N02BE01")]))))]
    for node, label in (("at0018", "Clinical indication"), ("at0009", "Overall directions description"),
                        ("at0167", "Comment"), ("at0148", "Therapeutic intent")):
        if draw(st.booleans()):
            items.append(_el(node, label, {"_type": "DV_TEXT", "value": draw(text)}))
    if draw(st.booleans()):
        items.append(_el("at0091", "Route", dt.coded_text("Oral route", "SNOMED-CT", "26643006")))
    for _ in range(draw(st.integers(0, 2))):
        dosage = [_el("at0144", "Dose amount", {"_type": "DV_QUANTITY", "magnitude": draw(st.integers(1, 500)) * 1.0,
                                                "units": draw(st.sampled_from(["mg", "1", "ml"]))})]
        if draw(st.booleans()):
            dosage.append(_el("at0145", "Dose unit", {"_type": "DV_TEXT", "value": "tablet"}))
        direction = [_cluster("openEHR-EHR-CLUSTER.dosage.v1", "Dosage", dosage)]
        if draw(st.booleans()):
            direction.append(_el("at0178", "Order start date/time",
                                 {"_type": "DV_DATE_TIME", "value": "2025-03-15T08:00:00+01:00"}))
        if draw(st.booleans()):
            direction.append(_el("at0066", "Direction duration",
                                 {"_type": "DV_DURATION", "value": draw(st.sampled_from(["P5Y", "P14D", "PT12H"]))}))
        items.append(_cluster("openEHR-EHR-CLUSTER.therapeutic_direction.v1", "Therapeutic direction", direction))
    act = {"_type": "ACTIVITY", "name": {"_type": "DV_TEXT", "value": "Order"}, "archetype_node_id": "at0001",
           "description": {"_type": "ITEM_TREE", "name": {"_type": "DV_TEXT", "value": "Tree"},
                           "archetype_node_id": "at0002", "items": items},
           "action_archetype_id": "openEHR-EHR-ACTION.medication.v1"}
    if draw(st.booleans()):
        act["timing"] = {"_type": "DV_PARSABLE", "formalism": "ISO8601", "value": draw(st.sampled_from(
            ["R/2025-03-15T08:00:00+01:00/P1D", "R10/PT8H", "R/P1W", "R1", "R/2025-01-01T00:00:00Z/P1M"]))}
    return act


@st.composite
def orders(draw):
    e = entry_skeleton(registry()[V3], "en")
    e["narrative"] = {"_type": "DV_TEXT", "value": draw(text)}
    e["activities"] = draw(st.lists(activity(), min_size=1, max_size=3))
    return {"_type": "COMPOSITION", "name": {"_type": "DV_TEXT", "value": "Orders"},
            "uid": {"_type": "OBJECT_VERSION_ID", "value": "9d0a7c35-0000-4000-8000-000000000003::gen::1"},
            "archetype_node_id": "openEHR-EHR-COMPOSITION.encounter.v1",
            "language": dt.code_phrase("ISO_639-1", "en"), "territory": dt.code_phrase("ISO_3166-1", "DE"),
            "category": dt.coded_text("event", "openehr", "433"), "composer": {"_type": "PARTY_SELF"},
            "content": [e]}


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(orders())
def test_generated_orders_round_trip(comp):
    res = _fwd(comp)
    assert len(res) == len(comp["content"][0]["activities"])
    assert all(validate_fhir(r) == [] for r in res)
    back = to_openehr(res, template_id="t")
    assert compare_clinical({"content": comp["content"]}, {"content": back["content"]}) == []
    again = _fwd({**copy.deepcopy(back), "uid": comp["uid"]})
    assert [compare_clinical(a, b) for a, b in zip(res, again)] == [[]] * len(res)


@pytest.mark.integration
def test_hapi_validates_medication_requests(fhir_base_url):
    for comp in (json.loads(ONCOLOGY.read_text(encoding="utf-8")), load(V2)):
        for r in _fwd(comp):
            assert hapi_errors(fhir_base_url, r) == [], r["id"]
