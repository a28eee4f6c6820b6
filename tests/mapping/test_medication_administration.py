"""ACTION.medication.v1 <-> MedicationAdministration: ISM states (+ careflow steps that say what
happened to the dose), medication, dosage, mCODE rule, corpus both ways, hypothesis, HAPI $validate."""
import copy

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
from .test_procedure import hapi_errors

# The rows this module proves (sync.mapping.coverage reads it; tests/mapping/test_coverage.py checks it).
COVERS = {"ACTION.medication.v1": "forward reverse hapi"}

ARCH = "openEHR-EHR-ACTION.medication.v1"
MCODE = "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-cancer-related-medication-administration"
# state -> (rubric, status, a careflow step of the archetype in that state)
STATES = {"524": ("initial", "unknown", None), "526": ("planned", "unknown", "at0109"),
          "527": ("postponed", "on-hold", "at0013"), "528": ("cancelled", "not-done", "at0012"),
          "529": ("scheduled", "unknown", "at0016"), "245": ("active", "in-progress", "at0004"),
          "530": ("suspended", "on-hold", "at0009"), "531": ("aborted", "stopped", "at0015"),
          "532": ("completed", "completed", "at0007"), "533": ("expired", "stopped", None)}
DEFAULTS = {"in-progress": ("245", "at0004"), "on-hold": ("530", "at0009"), "not-done": ("528", "at0012"),
            "stopped": ("531", "at0015"), "completed": ("532", "at0007")}
COMPOSITIONS = [CORPUS / "openehr" / "compositions" / n for n in
                ("ips.composition.json", "kds_medication_administration.patient1.composition.json")]
FHIR_BUNDLE = CORPUS / "fhir" / "kds_medication_administration.patient1.bundle.json"


def _el(node, name, value):
    return {"_type": "ELEMENT", "name": {"_type": "DV_TEXT", "value": name}, "archetype_node_id": node, "value": value}


def _wrap(entry):
    return {"_type": "COMPOSITION", "name": {"_type": "DV_TEXT", "value": "Medication"},
            "uid": {"_type": "OBJECT_VERSION_ID", "value": "9d0a7c35-0000-4000-8000-000000000003::gen::1"},
            "archetype_node_id": "openEHR-EHR-COMPOSITION.encounter.v1",
            "language": dt.code_phrase("ISO_639-1", "en"), "territory": dt.code_phrase("ISO_3166-1", "DE"),
            "category": dt.coded_text("event", "openehr", "433"), "composer": {"_type": "PARTY_SELF"},
            "content": [entry]}


def _action(code="532", step="default", medication=None, items=()):
    e = entry_skeleton(registry()[ARCH], "en")
    e["time"] = {"_type": "DV_DATE_TIME", "value": "2025-03-01T09:30:00+01:00"}
    med = medication if medication is not None else dt.coded_text("Letrozole 2.5 mg tablet", "SNOMED-CT", "386942001")
    e["description"] = {"_type": "ITEM_TREE", "name": {"_type": "DV_TEXT", "value": "Tree"}, "archetype_node_id": "at0017",
                        "items": ([_el("at0020", "Medication item", med)] if med else []) + list(items)}
    text, _, default_step = STATES[code]
    e["ism_transition"] = {"_type": "ISM_TRANSITION", "current_state": dt.coded_text(text, "openehr", code)}
    step = default_step if step == "default" else step
    if step:
        e["ism_transition"]["careflow_step"] = dt.coded_text("step", "local", step)
    return e


def _fwd(comp, patient="Patient/1"):
    return [r for r in to_fhir(comp, site="s", ehr_id="e", patient_ref=patient).resources
            if r["resourceType"] == "MedicationAdministration"]


def _entry(comp):
    return next(e for e in comp["content"] if e.get("archetype_node_id") == ARCH)


def _same_content(comp, back):
    return compare_clinical({"content": comp["content"]}, {"content": back["content"]})


@pytest.mark.parametrize("code", sorted(STATES))
def test_it_maps_every_ism_state_and_keeps_it_exactly(code):
    comp = _wrap(_action(code))
    [ma] = _fwd(comp)
    assert ma["status"] == STATES[code][1] and validate_fhir(ma) == []
    parts = {x["url"]: x["valueCoding"] for e in ma["extension"] if e["url"] == ISM_EXT for x in e["extension"]}
    assert parts["currentState"]["code"] == code
    assert _same_content(comp, to_openehr([ma], template_id="t")) == []


@pytest.mark.parametrize("step,status", [("at0006", "completed"), ("at0018", "not-done"), ("at0044", "in-progress")])
def test_careflow_steps_that_say_what_happened_to_the_dose(step, status):
    comp = _wrap(_action("245", step=step))
    [ma] = _fwd(comp)
    assert ma["status"] == status
    assert _same_content(comp, to_openehr([ma], template_id="t")) == []


def test_a_status_edited_in_fhir_wins_over_the_kept_state():
    [ma] = _fwd(_wrap(_action("245", step="at0006")))  # dose administered -> completed
    ma["status"] = "stopped"
    ism = _entry(to_openehr([ma], template_id="t"))["ism_transition"]
    assert (ism["current_state"]["defining_code"]["code_string"], ism["careflow_step"]["defining_code"]["code_string"]) \
        == DEFAULTS["stopped"]


@pytest.mark.parametrize("status", sorted(DEFAULTS))
def test_fhir_born_status_gets_the_default_state_and_careflow_step(status):
    ma = {"resourceType": "MedicationAdministration", "id": "m", "status": status, "subject": {"reference": "Patient/1"},
          "medicationCodeableConcept": {"text": "Paracetamol 500 mg"}, "effectiveDateTime": "2025-01-01T10:00:00Z"}
    entry = _entry(from_fhir([ma], template_id="t").composition)
    ism = entry["ism_transition"]
    assert (ism["current_state"]["defining_code"]["code_string"], ism["careflow_step"]["defining_code"]["code_string"]) \
        == DEFAULTS[status]
    assert entry["time"]["value"] == "2025-01-01T10:00:00Z"


def test_entered_in_error_has_no_ism_state_and_comes_back_from_the_feeder_audit():
    ma = {"resourceType": "MedicationAdministration", "id": "m", "status": "entered-in-error",
          "subject": {"reference": "Patient/1"}, "medicationCodeableConcept": {"text": "x"},
          "effectiveDateTime": "2025-01-01T10:00:00Z"}
    out = from_fhir([ma], template_id="t")
    assert "ism_transition" not in _entry(out.composition)
    assert not out.losses  # no ISM state for it, but the sender's status is kept in the feeder audit (issue 21)
    comp = {**copy.deepcopy(out.composition), "uid": {"value": "aaaaaaaa-0000-4000-8000-000000000001::x::1"}}
    assert _fwd(comp, "Patient/1")[0]["status"] == "entered-in-error"


def test_dosage_reason_comment_and_order_id():
    items = [_el("at0156", "Clinical indication", dt.coded_text("Breast cancer", "ICD-10", "C50.4")),
             _el("at0021", "Reason", {"_type": "DV_TEXT", "value": "nausea"}),
             _el("at0024", "Comment", {"_type": "DV_TEXT", "value": "given with food"}),
             {"_type": "CLUSTER", "name": {"_type": "DV_TEXT", "value": "Administration details"},
              "archetype_node_id": "at0140",
              "items": [_el("at0147", "Route", dt.coded_text("Oral use", "SNOMED-CT", "26643006"))]},
             {"_type": "CLUSTER", "name": {"_type": "DV_TEXT", "value": "Dosage"},
              "archetype_node_id": "openEHR-EHR-CLUSTER.dosage.v2",
              "archetype_details": {"_type": "ARCHETYPED", "archetype_id": {"_type": "ARCHETYPE_ID",
                                    "value": "openEHR-EHR-CLUSTER.dosage.v2"}, "rm_version": "1.0.4"},
              "items": [_el("at0144", "Dose amount", {"_type": "DV_QUANTITY", "magnitude": 2.5, "units": "mg"})]}]
    e = _action("245", step="at0006", items=items)
    e["protocol"] = {"_type": "ITEM_TREE", "name": {"_type": "DV_TEXT", "value": "Tree"}, "archetype_node_id": "at0030",
                     "items": [_el("at0103", "Order ID", {"_type": "DV_IDENTIFIER", "id": "MO-1", "issuer": "urn:x"})]}
    comp = _wrap(e)
    [ma] = _fwd(comp)
    assert ma["dosage"]["dose"] == {"value": 2.5, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}
    assert ma["dosage"]["route"]["coding"][0]["code"] == "26643006"
    assert ma["reasonCode"][0]["coding"][0]["code"] == "C50.4" and ma["statusReason"][0]["text"] == "nausea"
    assert ma["note"] == [{"text": "given with food"}]
    assert ma["request"]["identifier"] == {"system": "urn:x", "value": "MO-1"}
    assert MCODE in ma["meta"]["profile"]  # indication is a cancer, and letrozole an anticancer agent
    assert validate_fhir(ma) == []
    assert _same_content(comp, to_openehr([ma], template_id="t")) == []


@pytest.mark.parametrize("medication,expected", [
    (dt.coded_text("Paracetamol", "ATC", "N02BE01"), False), (dt.coded_text("Tamoxifen", "ATC", "L02BA01"), True),
    ({"_type": "DV_TEXT", "value": "Doxorubicin 60 mg/m2"}, True)])
def test_the_mcode_rule(medication, expected):
    [ma] = _fwd(_wrap(_action("532", medication=medication)))
    assert (MCODE in (ma.get("meta") or {}).get("profile", [])) is expected


def test_no_medication_item_is_a_data_absent_reason_and_comes_back_absent():
    comp = _wrap(_action("532", medication=False, items=[_el("at0024", "Comment", {"_type": "DV_TEXT", "value": "x"})]))
    [ma] = _fwd(comp)
    assert ma["medicationCodeableConcept"]["extension"][0]["valueCode"] == "unknown" and validate_fhir(ma) == []
    assert _same_content(comp, to_openehr([ma], template_id="t")) == []


@pytest.mark.parametrize("path", COMPOSITIONS, ids=lambda p: p.name)
def test_corpus_compositions_round_trip(path):
    comp = load(path)
    comp.setdefault("uid", {"_type": "OBJECT_VERSION_ID", "value": "0b5e3c4e-1111-4222-8333-944444444444::t::1"})
    res = to_fhir(comp, site="s", ehr_id="e", patient_ref="Patient/1").resources
    mas = [r for r in res if r["resourceType"] == "MedicationAdministration"]
    assert mas and all(validate_fhir(r) == [] for r in mas)
    assert compare_clinical(comp, to_openehr(res, template_id="t", base_composition=comp)) == []


def test_kds_composition_names_the_medication_from_its_cluster():
    res = to_fhir(load(COMPOSITIONS[1]) | {"uid": {"value": "0b5e3c4e-1111-4222-8333-944444444444::t::1"}},
                  site="s", ehr_id="e", patient_ref="Patient/1").resources
    [ma] = [r for r in res if r["resourceType"] == "MedicationAdministration"]
    [med] = [r for r in res if r["resourceType"] == "Medication"]  # the cluster, a Medication by reference
    assert ma["status"] == "completed" and ma["medicationReference"] == {"reference": f"Medication/{med['id']}"}
    assert med["code"]["coding"][0]["code"] == "15205222" and validate_fhir(med) == []
    assert ma["dosage"]["dose"]["value"] == 1500.0


def test_corpus_fhir_round_trips_what_is_not_reported_lost():
    resources = [e["resource"] for e in load(FHIR_BUNDLE)["entry"]]
    [orig] = [r for r in resources if r["resourceType"] == "MedicationAdministration"]
    out = from_fhir(resources, template_id="t")
    comp = {**copy.deepcopy(out.composition), "uid": {"value": "aaaaaaaa-0000-4000-8000-000000000001::x::1"}}
    [twin] = _fwd(comp, orig["subject"]["reference"])
    assert validate_fhir(twin) == []
    assert twin["status"] == "completed" and twin["medicationReference"] == orig["medicationReference"]  # as sent
    # the 30-minute infusion: the period (time - administration duration) and the rate 1500 mg / 30 min
    assert twin["effectivePeriod"] == orig["effectivePeriod"]
    assert twin["dosage"]["dose"] == orig["dosage"]["dose"]
    ratio = twin["dosage"]["rateRatio"]
    assert ratio["numerator"] == orig["dosage"]["rateRatio"]["numerator"]
    assert (ratio["denominator"]["value"], ratio["denominator"]["code"]) == (30, "min")
    lost = [x.path.split(":", 1)[1] for x in out.losses if x.path.startswith(f"MedicationAdministration/{orig['id']}:")]
    for d in compare_clinical(orig, strip(twin)):
        if d["kind"] in ("dictionary_item_added", "iterable_item_added"):
            continue
        element = element_path(d["path"])
        assert any(element.startswith(x) or x.startswith(element) for x in lost), element


# ------------------------------------------------------------------ generated administrations
text = st.text(alphabet=st.characters(whitelist_categories=("Lu", "Ll", "Zs")), min_size=1, max_size=15) \
    .map(str.strip).filter(bool)


@st.composite
def administrations(draw):
    code = draw(st.sampled_from(sorted(STATES)))
    step = draw(st.sampled_from(["default", None] + (["at0006", "at0018"] if code == "245" else [])))
    med = draw(st.one_of(text.map(lambda t: {"_type": "DV_TEXT", "value": t}),
                         st.sampled_from([dt.coded_text("Letrozole", "SNOMED-CT", "386942001"),
                                          dt.coded_text("Paracetamol", "ATC", "N02BE01")])))
    items = []
    for node, label in (("at0156", "Clinical indication"), ("at0021", "Reason"), ("at0024", "Comment"),
                        ("at0025", "Sequence number")):
        if draw(st.booleans()):
            value = {"_type": "DV_COUNT", "magnitude": draw(st.integers(1, 9))} if node == "at0025" \
                else {"_type": "DV_TEXT", "value": draw(text)}
            items.append(_el(node, label, value))
    if draw(st.booleans()):
        items.append({"_type": "CLUSTER", "name": {"_type": "DV_TEXT", "value": "Administration details"},
                      "archetype_node_id": "at0140",
                      "items": [_el("at0147", "Route", {"_type": "DV_TEXT", "value": draw(text)})]})
    if draw(st.booleans()):
        items.append({"_type": "CLUSTER", "name": {"_type": "DV_TEXT", "value": "Dosage"},
                      "archetype_node_id": "openEHR-EHR-CLUSTER.dosage.v2",
                      "archetype_details": {"_type": "ARCHETYPED", "archetype_id": {
                          "_type": "ARCHETYPE_ID", "value": "openEHR-EHR-CLUSTER.dosage.v2"}, "rm_version": "1.0.4"},
                      "items": [_el("at0144", "Dose amount", {"_type": "DV_QUANTITY", "units": "mg",
                                                              "magnitude": draw(st.floats(0.1, 2000).map(lambda x: round(x, 2)))})]})
    return _wrap(_action(code, step=step, medication=med, items=items))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(administrations())
def test_generated_administrations_round_trip(comp):
    res = _fwd(comp)
    assert all(validate_fhir(r) == [] for r in res)
    assert _same_content(comp, to_openehr(res, template_id="t")) == []
    again = _fwd({**copy.deepcopy(to_openehr(res, template_id="t")), "uid": comp["uid"]})
    assert [compare_clinical(a, b) for a, b in zip(res, again)] == [[]] * len(res)


@pytest.mark.integration
def test_hapi_validates_medication_administrations(fhir_base_url):
    comps = [load(p) for p in COMPOSITIONS] + [_wrap(_action(c)) for c in sorted(STATES)] + \
        [_wrap(_action("245", step="at0006")),
         _wrap(_action("532", medication=False, items=[_el("at0024", "Comment", {"_type": "DV_TEXT", "value": "x"})]))]
    resources = [e["resource"] for e in load(FHIR_BUNDLE)["entry"]]
    fhir_born = from_fhir(resources, template_id="t").composition
    comps.append(fhir_born)
    checked = 0
    for comp in comps:
        comp.setdefault("uid", {"_type": "OBJECT_VERSION_ID", "value": "0b5e3c4e-1111-4222-8333-944444444444::t::1"})
        for r in _fwd(comp):
            assert hapi_errors(fhir_base_url, r) == [], r["id"]
            checked += 1
    assert checked >= 15


def test_a_non_uri_issuer_becomes_a_naming_system_uri_and_comes_back():
    ident = {"_type": "DV_IDENTIFIER", "id": "9a0e", "issuer": "Issuer", "type": "Prescription"}
    fhir = dt.identifier_to_fhir(ident)
    assert fhir["system"] == "https://conflictdesk.example.org/fhir/NamingSystem/openehr-issuer/Issuer"
    assert dt.identifier_to_dv(fhir) == ident
    assert dt.identifier_to_fhir({"id": "1", "issuer": "urn:oid:1.2.3"})["system"] == "urn:oid:1.2.3"


def test_residue_values_hapi_would_reject_travel_as_rm_json():
    from sync.mapping.residue import _typed
    el = {"_type": "ELEMENT", "name": {"_type": "DV_TEXT", "value": "x"}, "archetype_node_id": "at0001"}
    # A unit that is not UCUM is unit text without a UCUM claim: typed, and HAPI takes it.
    assert _typed({**el, "value": {"_type": "DV_QUANTITY", "magnitude": 1.0, "units": "?"}}) == (
        "Quantity", {"value": 1.0, "unit": "?"})
    assert _typed({**el, "value": {"_type": "DV_TIME", "value": "16:05:19.513694"}}) is None
    assert _typed({**el, "value": {"_type": "DV_QUANTITY", "magnitude": 1.0, "units": "mg"}})[0] == "Quantity"
