"""EVALUATION.problem_diagnosis.v1 <-> Condition, with CLUSTER.tnm(-pathological).v1 -> mCODE STU4 staging."""
import copy
import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync.mapping import compare_clinical, from_fhir, to_fhir, to_openehr, validate_fhir
from sync.mapping import datatypes as dt
from sync.mapping.engine import entry_skeleton
from sync.mapping.hooks_tnm import category_key, codemap
from sync.mapping.residue import strip
from sync.mapping.spec import registry

from .conftest import corpus_files, load
from .hapi import hapi_errors  # strict: meta.profile kept (HAPI has mCODE STU4 loaded)

# The rows this module proves (sync.mapping.coverage reads it; tests/mapping/test_coverage.py checks it).
COVERS = {"EVALUATION.problem_diagnosis.v1": "forward reverse hapi"}

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "oncology" / "oncology_encounter.composition.json"
MCODE = "http://hl7.org/fhir/us/mcode/StructureDefinition/"
PD = "openEHR-EHR-EVALUATION.problem_diagnosis.v1"


def _fixture():
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


def _diagnosis_resources(res):
    return [r for r in res.resources if r["resourceType"] == "Condition" or "mcode-tnm" in json.dumps(r.get("meta"))]


def test_it_maps_the_oncology_fixture_to_mcode_staging():
    res = to_fhir(_fixture(), site="s", ehr_id="e", patient_ref="Patient/1")
    out = _diagnosis_resources(res)
    cond = next(r for r in out if r["resourceType"] == "Condition")
    assert MCODE + "mcode-primary-cancer-condition" in cond["meta"]["profile"]
    assert cond["verificationStatus"]["coding"][0]["code"] == "confirmed"
    assert cond["code"]["text"] == "Malignant neoplasm of female breast"
    ids = {f"{r['resourceType']}/{r['id']}" for r in res.resources}
    groups = [x["reference"] for s in cond["stage"] for x in s["assessment"]]
    assert len(groups) == 2 and set(groups) <= ids  # references resolve inside the result
    by_ref = {f"{r['resourceType']}/{r['id']}": r for r in res.resources}
    clinical, patho = (by_ref[g] for g in groups)
    assert clinical["code"]["coding"][0]["code"] == "21908-9" and patho["code"]["coding"][0]["code"] == "21902-2"
    assert clinical["valueCodeableConcept"] == {"text": "IIB"}
    assert clinical["method"]["coding"][0]["code"] == "C188404" and clinical["method"]["text"].startswith("UICC")
    # T, N, M and the histologic grade G (LOINC 33732-9) of each classification
    for group, codes in ((clinical, ["21905-5", "21906-3", "21907-1", "33732-9"]),
                         (patho, ["21899-0", "21900-6", "21901-4", "33732-9"])):
        assert group["focus"] == [{"reference": f"Condition/{cond['id']}"}]
        members = [by_ref[m["reference"]] for m in group["hasMember"]]
        assert [m["code"]["coding"][0]["code"] for m in members] == codes
        assert all(m["focus"] == group["focus"] for m in members)
    t = by_ref[clinical["hasMember"][0]["reference"]]
    assert t["valueCodeableConcept"]["text"] == "cT2"
    assert {"system": "http://snomed.info/sct", "code": "1228929004"}.items() <= \
        t["valueCodeableConcept"]["coding"][0].items()
    pn = by_ref[patho["hasMember"][1]["reference"]]
    assert pn["valueCodeableConcept"] == {"text": "pN1a"}  # not in the code map: text only, nothing invented
    grade = by_ref[patho["hasMember"][3]["reference"]]
    assert grade["valueCodeableConcept"] == {"text": "G2"}  # never translated to low/intermediate/high
    assert "meta" not in grade and "method" not in grade  # no mCODE grade code, no TNM edition as its method
    for r in out:
        assert validate_fhir(r) == []
        assert r["identifier"][0]["value"].startswith("s|")
    assert any("tnm-pathological.v1]/items[at0007]" in x.path for x in res.losses)  # R0 kept, reported


def test_the_fixture_round_trips_with_and_without_base():
    c = _fixture()
    res = to_fhir(c, site="s", ehr_id="e", patient_ref="Patient/1")
    assert compare_clinical(c, to_openehr(res.resources, template_id="t", base_composition=c)) == []
    mine = [r for r in res.resources if r["resourceType"] in ("Condition", "Observation")
            and ("problem_diagnosis" in r["identifier"][0]["value"])]
    back = to_openehr(mine, template_id="t")
    want = [e for e in c["content"] if e["archetype_node_id"] == PD]
    assert compare_clinical({"content": want}, {"content": [e for e in back["content"]
                                                             if e["archetype_node_id"] == PD]}) == []


def test_code_map_keys_and_prefixes():
    assert category_key("cT2", "T", False) == "cT2"
    assert category_key("T2", "T", True) == "pT2"
    assert category_key("ypN1a", "N", True) == "pN1a"
    assert category_key("cM0", "M", True) == "cM0"
    assert category_key("N1", "T", False) is None
    assert len(set(codemap()["T"].values())) == len(codemap()["T"])  # one code per category: reversible


FHIR_FILES = ["condition_malignancy_f202.json", "onko_condition_primary_tumor.json", "kds_diagnosis.patient1.bundle.json",
              "mcode_cancer_stage_group.json", "mcode_tnm_staging.bundle.json", "onko_tnm_*.json"]


def _resources(doc):
    return [e["resource"] for e in doc["entry"]] if doc["resourceType"] == "Bundle" else [doc]


@pytest.mark.parametrize("name", FHIR_FILES)
def test_corpus_fhir_round_trips_or_reports(name):
    """FHIR -> openEHR -> FHIR: every element that changed is named in the loss list."""
    resources = [r for f in corpus_files(f"fhir/{name}") for r in _resources(load(f))
                 if r["resourceType"] in ("Condition", "Observation")]
    out = from_fhir(resources, template_id="t")
    comp = copy.deepcopy(out.composition)
    comp["uid"] = {"value": "aaaaaaaa-0000-4000-8000-000000000001::x::1"}
    fwd = [r for r in to_fhir(comp, site="s", ehr_id="e", patient_ref="Patient/x").resources
           if r["resourceType"] in ("Condition", "Observation")]
    for r in fwd:
        assert validate_fhir(r) == []
    lost = {x.path for x in out.losses}
    for orig in resources:
        twin = _twin(orig, fwd)
        assert twin is not None, orig["id"]
        mine = {x.split(":", 1)[1] for x in lost if x.startswith(f"{orig['resourceType']}/{orig['id']}:")}
        twin = {**strip(twin), "subject": orig.get("subject")}  # the caller supplies the patient
        for d in compare_clinical(orig, twin):
            if d["kind"] in ("dictionary_item_added", "iterable_item_added"):
                continue
            element = re.sub(r"\['([^']*)'\]", r".\1", d["path"].replace("root", "", 1)).lstrip(".")
            assert any(element == m or element.startswith((m + ".", m + "[")) for m in mine), (name, element)


def _twin(orig, fwd):
    if orig["resourceType"] == "Condition":
        return next(r for r in fwd if r["resourceType"] == "Condition")
    codes = {(c["system"], c["code"]) for c in orig["code"]["coding"]}  # a code comes back in its own system
    return next((r for r in fwd if r["resourceType"] == "Observation"
                 and (r["code"]["coding"][0]["system"], r["code"]["coding"][0]["code"]) in codes), None)


def test_mcode_bundle_keeps_staging_values():
    doc = load(next(iter(corpus_files("fhir/mcode_tnm_staging.bundle.json"))))
    comp = from_fhir(_resources(doc), template_id="t").composition
    entry = comp["content"][0]
    assert entry["archetype_node_id"] == PD
    name, cl = entry["data"]["items"]
    assert name["archetype_node_id"] == "at0002" and "value" not in name  # no Condition sent: no diagnosis made up
    assert name["null_flavour"]["defining_code"]["code_string"] == "271"
    assert cl["archetype_node_id"] == "openEHR-EHR-CLUSTER.tnm.v1"
    vals = {i["archetype_node_id"]: i["value"]["value"] for i in cl["items"]}
    assert vals == {"at0031": "3C", "at0003": "cT3", "at0004": "cN3", "at0005": "cM0", "at0032": "444256004"}


# ------------------------------------------------------------------ properties
NAMES = st.text(alphabet=st.characters(whitelist_categories=("Lu", "Ll", "Zs")), min_size=1, max_size=12) \
    .map(str.strip).filter(bool)
TIMES = st.sampled_from(["2024-02-21T00:00:00+01:00", "2021-12-03T16:05:19.514097+01:00", "2025-01-01T10:00:00Z"])
DIAG = st.one_of(NAMES.map(lambda n: {"_type": "DV_TEXT", "value": n}),
                 st.sampled_from(["C50.4", "I10", "D05.1", "D12.0"]).map(lambda c: dt.coded_text(c, "ICD10", c)),
                 st.just(dt.coded_text("Malignant neoplasm of breast", "SNOMED-CT", "254837009")))
CATS = {"at0003": ["cT2", "T1a", "pT3", "Tis", "ypT0", "T4b"], "at0004": ["cN1", "N0", "pN1a", "N3c"],
        "at0005": ["cM0", "M1", "pM1", "M1a"]}


def _el(node, name, value):
    return {"_type": "ELEMENT", "name": {"_type": "DV_TEXT", "value": name}, "archetype_node_id": node, "value": value}


@st.composite
def tnm_cluster(draw, arch):
    patho = "pathological" in arch
    nid = (lambda n: n + ".1") if patho else (lambda n: n)  # each CKM archetype's own node ids
    if patho and draw(st.booleans()):
        nid = (lambda n: n)  # tnm.v1's ids, as templates that derived tnm-pathological from tnm.v1 have them
    items = [_el(nid(n), n, {"_type": "DV_TEXT", "value": draw(st.sampled_from(v))}) for n, v in CATS.items()
             if draw(st.booleans())]
    if draw(st.booleans()):
        items.append(_el(nid("at0031"), "Stage grouping",
                         {"_type": "DV_TEXT", "value": draw(st.sampled_from(["IIB", "0"]))}))
    if draw(st.booleans()):
        items.append(_el("at0032", "TNM Edition", {"_type": "DV_TEXT", "value": draw(
            st.sampled_from(["UICC TNM 8th edition", "AJCC 8th", "local"]))}))
    if draw(st.booleans()):
        items.append(_el("at0007", "Residual tumour (R)", dt.coded_text("R0", "local", "at0009")))
    if not items:
        items.append(_el(nid("at0003"), "T", {"_type": "DV_TEXT", "value": "cT1"}))
    return {"_type": "CLUSTER", "name": {"_type": "DV_TEXT", "value": draw(NAMES)}, "archetype_node_id": arch,
            "archetype_details": {"_type": "ARCHETYPED", "archetype_id": {"value": arch}, "rm_version": "1.0.4"},
            "items": items}


@st.composite
def diagnosis_composition(draw):
    entry = entry_skeleton(registry()[PD], "en")
    items = [_el("at0002", "Problem/Diagnosis name", draw(DIAG))]
    for node, name in (("at0077", "Date/time of onset"), ("at0003", "Date/time clinically recognised"),
                       ("at0030", "Date/time of resolution")):
        if draw(st.booleans()):
            items.append(_el(node, name, {"_type": "DV_DATE_TIME", "value": draw(TIMES)}))
    if draw(st.booleans()):
        code, text = draw(st.sampled_from([("at0074", "Suspected"), ("at0075", "Probable"), ("at0076", "Confirmed")]))
        items.append(_el("at0073", "Diagnostic certainty", dt.coded_text(text, "local", code)))
    if draw(st.booleans()):
        code, text = draw(st.sampled_from([("at0047", "Mild"), ("at0048", "Moderate"), ("at0049", "Severe")]))
        items.append(_el("at0005", "Severity", dt.coded_text(text, "local", code)))
    if draw(st.booleans()):
        items.append(_el("at0069", "Comment", {"_type": "DV_TEXT", "value": draw(NAMES)}))
    for arch in ("openEHR-EHR-CLUSTER.tnm.v1", "openEHR-EHR-CLUSTER.tnm-pathological.v1"):
        if draw(st.booleans()):
            items.append(draw(tnm_cluster(arch)))
    entry["data"] = {"_type": "ITEM_TREE", "name": {"_type": "DV_TEXT", "value": "structure"},
                     "archetype_node_id": "at0001", "items": items}
    return {"_type": "COMPOSITION", "name": {"_type": "DV_TEXT", "value": "D"},
            "uid": {"_type": "OBJECT_VERSION_ID", "value": "9d0a7c35-0000-4000-8000-000000000002::gen::1"},
            "archetype_node_id": "openEHR-EHR-COMPOSITION.encounter.v1",
            "language": dt.code_phrase("ISO_639-1", "en"), "territory": dt.code_phrase("ISO_3166-1", "DE"),
            "category": dt.coded_text("event", "openehr", "433"), "composer": {"_type": "PARTY_SELF"},
            "content": [entry]}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(diagnosis_composition())
def test_diagnosis_round_trip(comp):
    res = to_fhir(comp, site="s", ehr_id="e", patient_ref="Patient/1")
    entries = [r for r in res.resources if r["resourceType"] in ("Condition", "Observation")]
    for r in entries:
        assert validate_fhir(r) == []
    back = to_openehr(entries, template_id="t")
    assert compare_clinical({"content": comp["content"]}, {"content": back["content"]}) == []
    again = to_fhir({**copy.deepcopy(back), "uid": comp["uid"]}, site="s", ehr_id="e", patient_ref="Patient/1")
    again = [r for r in again.resources if r["resourceType"] in ("Condition", "Observation")]
    assert [compare_clinical(a, b) for a, b in zip(entries, again)] == [[]] * len(entries)


# ------------------------------------------------------------------ HAPI
@pytest.mark.integration
def test_hapi_validates_the_fixture_diagnosis(fhir_base_url):
    res = to_fhir(_fixture(), site="s", ehr_id="e", patient_ref="Patient/1")
    for r in _diagnosis_resources(res):
        assert hapi_errors(fhir_base_url, r) == [], r["resourceType"]
