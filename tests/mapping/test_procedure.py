"""ACTION.procedure.v1 <-> Procedure: ISM states, mCODE surgical rule, corpus and fixture round trips."""
import copy
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync.mapping import compare_clinical, from_fhir, to_fhir, to_openehr, validate_fhir
from sync.mapping import datatypes as dt
from sync.mapping.engine import entry_skeleton
from sync.mapping.fidelity import element_path
from sync.mapping.hooks_procedure import ISM_EXT
from sync.mapping.residue import strip
from sync.mapping.spec import registry

from .conftest import CORPUS, load
from .hapi import hapi_errors  # strict: meta.profile kept (HAPI has mCODE STU4 loaded)

# The rows this module proves (sync.mapping.coverage reads it; tests/mapping/test_coverage.py checks it).
COVERS = {"ACTION.procedure.v1": "forward reverse hapi"}

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "oncology" / "oncology_encounter.composition.json"
ARCH = "openEHR-EHR-ACTION.procedure.v1"
SURGERY = "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-cancer-related-surgical-procedure"
STATES = {"524": ("initial", "unknown", "at0034"), "526": ("planned", "preparation", "at0004"),
          "527": ("postponed", "on-hold", "at0038"), "528": ("cancelled", "not-done", "at0039"),
          "529": ("scheduled", "preparation", "at0036"), "245": ("active", "in-progress", "at0068"),
          "530": ("suspended", "on-hold", "at0040"), "531": ("aborted", "stopped", "at0041"),
          "532": ("completed", "completed", "at0043"), "533": ("expired", "not-done", "at0043")}
COMPOSITIONS = [CORPUS / "openehr" / "compositions" / n for n in
                ("kds_procedure.patient3-3.composition.json", "ips.composition.json")] + [FIXTURE]
FHIR = [CORPUS / "fhir" / n for n in ("procedure_biopsy.json", "procedure_chemotherapy_f201.json",
                                      "mcode_procedure_brachytherapy.json", "onko_procedure_surgery.json",
                                      "kds_procedure.patient3-3.bundle.json")]


def _el(node, name, value):
    return {"_type": "ELEMENT", "name": {"_type": "DV_TEXT", "value": name}, "archetype_node_id": node, "value": value}


def _wrap(entry):
    return {"_type": "COMPOSITION", "name": {"_type": "DV_TEXT", "value": "Procedures"},
            "uid": {"_type": "OBJECT_VERSION_ID", "value": "9d0a7c35-0000-4000-8000-000000000002::gen::1"},
            "archetype_node_id": "openEHR-EHR-COMPOSITION.encounter.v1",
            "language": dt.code_phrase("ISO_639-1", "en"), "territory": dt.code_phrase("ISO_3166-1", "DE"),
            "category": dt.coded_text("event", "openehr", "433"), "composer": {"_type": "PARTY_SELF"},
            "content": [entry]}


def _procedure(code="532", name=None, indication=None, careflow=True):
    e = entry_skeleton(registry()[ARCH], "en")
    e["time"] = {"_type": "DV_DATE_TIME", "value": "2025-02-27T09:00:00+01:00"}
    items = [_el("at0002", "Procedure name", name or dt.coded_text("Lumpectomy of breast", "SNOMED-CT", "392021009"))]
    if indication:
        items.append(_el("at0070", "Indication", indication))
    e["description"] = {"_type": "ITEM_TREE", "name": {"_type": "DV_TEXT", "value": "Tree"},
                        "archetype_node_id": "at0001", "items": items}
    text, _, step = STATES[code]
    e["ism_transition"] = {"_type": "ISM_TRANSITION", "current_state": dt.coded_text(text, "openehr", code)}
    if careflow:
        e["ism_transition"]["careflow_step"] = dt.coded_text("step", "local", step)
    return e


def _fwd(comp, patient="Patient/1"):
    return to_fhir(comp, site="s", ehr_id="e", patient_ref=patient).resources


def _entry(comp):
    return next(e for e in comp["content"] if e.get("archetype_node_id") == ARCH)


@pytest.mark.parametrize("code", sorted(STATES))
def test_it_maps_every_ism_state_and_keeps_it_exactly(code):
    comp = _wrap(_procedure(code))
    [proc] = _fwd(comp)
    assert proc["status"] == STATES[code][1]
    ext = next(e for e in proc["extension"] if e["url"] == ISM_EXT)
    parts = {x["url"]: x["valueCoding"] for x in ext["extension"]}
    assert parts["currentState"]["code"] == code and parts["careflowStep"]["code"] == STATES[code][2]
    back = to_openehr([proc], template_id="t")
    assert compare_clinical({"content": comp["content"]}, {"content": back["content"]}) == []
    assert validate_fhir(proc) == []


def test_a_status_edited_in_fhir_wins_over_the_kept_state():
    [proc] = _fwd(_wrap(_procedure("527")))  # postponed -> on-hold
    proc["status"] = "completed"
    ism = _entry(to_openehr([proc], template_id="t"))["ism_transition"]
    assert ism["current_state"]["defining_code"]["code_string"] == "532"
    assert ism["careflow_step"]["defining_code"]["code_string"] == "at0043"


def test_fhir_born_status_gets_the_default_state_and_careflow_step():
    proc = {"resourceType": "Procedure", "id": "p", "status": "on-hold", "subject": {"reference": "Patient/1"},
            "code": {"text": "Mastectomy"}, "performedDateTime": "2025-01-01T10:00:00Z"}
    entry = _entry(from_fhir([proc], template_id="t").composition)
    assert entry["ism_transition"]["current_state"]["defining_code"]["code_string"] == "530"
    assert entry["ism_transition"]["careflow_step"]["defining_code"]["code_string"] == "at0040"
    assert entry["time"]["value"] == "2025-01-01T10:00:00Z"


def test_entered_in_error_has_no_ism_state_and_the_status_is_kept_in_the_feeder_audit():
    proc = {"resourceType": "Procedure", "id": "p", "status": "entered-in-error", "subject": {"reference": "Patient/1"},
            "code": {"text": "Biopsy"}, "performedDateTime": "2025-01-01T10:00:00Z"}
    out = from_fhir([proc], template_id="t")
    assert "ism_transition" not in _entry(out.composition)
    assert not out.losses  # the sender's status comes back from the entry's feeder audit (issue 21)
    assert '"entered-in-error"' in _entry(out.composition)["feeder_audit"]["original_content"]["value"]


def test_the_oncology_fixture_is_a_cancer_related_surgical_procedure():
    comp = json.loads(FIXTURE.read_text(encoding="utf-8"))
    proc = next(r for r in _fwd(comp) if r["resourceType"] == "Procedure")
    assert SURGERY in proc["meta"]["profile"]
    assert proc["status"] == "completed" and proc["code"]["coding"][0]["code"] == "392021009"
    assert proc["category"]["coding"][0]["code"] == "387713003"
    assert proc["bodySite"][0]["coding"][0]["code"] == "80248007"
    assert proc["reasonCode"][0]["text"] == "Invasive ductal carcinoma of left breast"
    assert proc["performedDateTime"] == "2025-02-27T09:00:00+01:00"


@pytest.mark.parametrize("name,indication,expected", [
    (dt.coded_text("Mastectomy", "SNOMED-CT", "69031006"), dt.coded_text("Breast cancer", "ICD-10", "C50.9"), True),
    ({"_type": "DV_TEXT", "value": "Partielle Exzision der Mamma"}, {"_type": "DV_TEXT", "value": "Mammakarzinom"},
     True),
    (dt.coded_text("Partielle Exzision", "OPS", "5-870"), dt.coded_text("x", "ICD-10-GM", "C50.4"), True),
    (dt.coded_text("Appendectomy", "SNOMED-CT", "80146002"), dt.coded_text("Appendicitis", "ICD-10", "K35.8"), False),
    (dt.coded_text("Chemotherapy", "SNOMED-CT", "367336001"), dt.coded_text("Breast cancer", "ICD-10", "C50.9"),
     False),
])
def test_the_mcode_surgical_rule(name, indication, expected):
    [proc] = _fwd(_wrap(_procedure(name=name, indication=indication)))
    assert (SURGERY in (proc.get("meta") or {}).get("profile", [])) is expected


@pytest.mark.parametrize("path", COMPOSITIONS, ids=lambda p: p.name)
def test_corpus_compositions_round_trip(path):
    comp = load(path)
    comp.setdefault("uid", {"_type": "OBJECT_VERSION_ID", "value": "0b5e3c4e-1111-4222-8333-944444444444::t::1"})
    procs = [r for r in _fwd(comp) if r["resourceType"] == "Procedure"]
    assert procs and all(validate_fhir(r) == [] for r in procs)
    back = to_openehr(procs, template_id="t")
    assert compare_clinical({"content": [_entry_any(comp)]}, {"content": back["content"]}) == []


def _entry_any(comp):
    from sync.mapping import rmpath
    return next(e for _, e in rmpath.entries(comp) if e.get("archetype_node_id") == ARCH)


def _resources(doc):
    return [e["resource"] for e in doc["entry"]] if doc["resourceType"] == "Bundle" else [doc]


@pytest.mark.parametrize("path", FHIR, ids=lambda p: p.name)
def test_corpus_fhir_round_trips_what_is_not_reported_lost(path):
    procs = [r for r in _resources(load(path)) if r["resourceType"] == "Procedure"]
    out = from_fhir(procs, template_id="t")
    comp = copy.deepcopy(out.composition)
    comp["uid"] = {"value": "aaaaaaaa-0000-4000-8000-000000000001::x::1"}
    fwd = [r for r in _fwd(comp, procs[0]["subject"]["reference"]) if r["resourceType"] == "Procedure"]
    assert len(fwd) == len(procs)
    for orig, twin in zip(procs, fwd):
        assert validate_fhir(twin) == []
        lost = {x.path.split(":", 1)[1] for x in out.losses if x.path.startswith(f"Procedure/{orig['id']}:")}
        for d in compare_clinical(orig, strip(twin)):
            if d["kind"] in ("dictionary_item_added", "iterable_item_added"):
                continue
            element = element_path(d["path"])
            assert any(element.startswith(x.split("[")[0].split(".")[0]) for x in lost), (path.name, element)
        # the clinical core survives: code, body site, time
        if "code" not in " ".join(lost):  # (text may be added from the display: openEHR needs one)
            assert [(c.get("system"), c["code"]) for c in orig["code"]["coding"]] == \
                [(c.get("system"), c["code"]) for c in twin["code"]["coding"]]
        for key in ("performedDateTime", "note"):
            if key in orig and key not in " ".join(lost):
                assert twin[key] == orig[key]
        for a, b in zip(orig.get("bodySite", []), twin.get("bodySite", [])):
            assert [(c.get("system"), c["code"]) for c in a["coding"]] == \
                [(c.get("system"), c["code"]) for c in b["coding"]]  # display/version: reported losses


@st.composite
def procedures(draw):
    code = draw(st.sampled_from(sorted(STATES)))
    text = st.text(alphabet=st.characters(whitelist_categories=("Lu", "Ll", "Zs")), min_size=1, max_size=15) \
        .map(str.strip).filter(bool)
    name = draw(st.one_of(text.map(lambda t: {"_type": "DV_TEXT", "value": t}),
                          st.sampled_from([dt.coded_text("Lumpectomy", "SNOMED-CT", "392021009"),
                                           dt.coded_text("Biopsy", "SNOMED-CT", "86273004")])))
    e = _procedure(code, name=name, careflow=draw(st.booleans()))
    items = e["description"]["items"]
    for node, label in (("at0070", "Indication"), ("at0063", "Body site"), ("at0048", "Outcome"),
                        ("at0005", "Comment"), ("at0014", "Reason"), ("at0072", "Intent")):
        if draw(st.booleans()):
            items.append(_el(node, label, {"_type": "DV_TEXT", "value": draw(text)}))
    if draw(st.booleans()):
        items.append(_el("at0073", "Start datetime", {"_type": "DV_DATE_TIME", "value": "2025-01-01T10:00:00Z"}))
        if draw(st.booleans()):
            items.append(_el("at0060", "End datetime", {"_type": "DV_DATE_TIME", "value": "2025-01-01T11:30:00Z"}))
    return _wrap(e)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(procedures())
def test_generated_procedures_round_trip(comp):
    res = _fwd(comp)
    assert all(validate_fhir(r) == [] for r in res)
    back = to_openehr(res, template_id="t")
    assert compare_clinical({"content": comp["content"]}, {"content": back["content"]}) == []
    again = _fwd({**copy.deepcopy(back), "uid": comp["uid"]})
    assert [compare_clinical(a, b) for a, b in zip(res, again)] == [[]] * len(res)


@pytest.mark.integration
def test_hapi_validates_procedures(fhir_base_url):
    comps = [load(p) for p in COMPOSITIONS] + [_wrap(_procedure(c)) for c in ("527", "531")]
    for comp in comps:
        comp.setdefault("uid", {"_type": "OBJECT_VERSION_ID", "value": "0b5e3c4e-1111-4222-8333-944444444444::t::1"})
        for r in _fwd(comp):
            if r["resourceType"] == "Procedure":
                assert hapi_errors(fhir_base_url, r) == [], r["id"]
