"""OBSERVATION.medication_statement.v0 and EVALUATION.medication_summary.v1 <-> MedicationStatement:
the MII KDS corpus pair (composition and bundle) and the MII onkology statement both ways, time and
period, medication, dosage (shared cluster file), category, status, hypothesis, HAPI $validate."""
import copy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync.mapping import compare_clinical, from_fhir, rmpath, to_fhir, to_openehr, validate_fhir
from sync.mapping import datatypes as dt
from sync.mapping.engine import entry_skeleton
from sync.mapping.fidelity import element_path
from sync.mapping.residue import strip
from sync.mapping.spec import registry

from .conftest import CORPUS, load
from .hapi import hapi_errors
from .test_dosage import _cl, _el, daily, dosage, dur, event_named, q, statement

# The rows this module proves (sync.mapping.coverage reads it; tests/mapping/test_coverage.py checks it).
COVERS = {"OBSERVATION.medication_statement.v0": "forward reverse hapi",
          "EVALUATION.medication_summary.v1": "forward reverse hapi"}

STATEMENT = "openEHR-EHR-OBSERVATION.medication_statement.v0"
SUMMARY = "openEHR-EHR-EVALUATION.medication_summary.v1"
KDS_COMPOSITION = CORPUS / "openehr" / "compositions" / "kds_medication_statement.patient1.composition.json"
KDS_BUNDLE = CORPUS / "fhir" / "kds_medication_statement.patient1.bundle.json"
ONKO = CORPUS / "fhir" / "onko_medicationstatement_systemic_therapy.json"
UID = "0b5e3c4e-1111-4222-8333-944444444444::t::1"
ARGS = dict(site="s", ehr_id="e", patient_ref="Patient/1")


def _statements(resources):
    return [r for r in resources if r["resourceType"] == "MedicationStatement"]


def _with_medication(resources):
    """The statements and the Medications a medication cluster made (named by medicationReference)."""
    return [r for r in resources if r["resourceType"] in ("MedicationStatement", "Medication")]


def _entries(comp, arch):
    return [e for _, e in rmpath.entries(comp) if e.get("archetype_node_id") == arch]


def _kds():
    return load(KDS_COMPOSITION) | {"uid": {"_type": "OBJECT_VERSION_ID", "value": UID}}


def _fhir_round_trip(resources, rt="MedicationStatement"):
    """from_fhir, forward again; every element of the original that differs is in the loss list."""
    out = from_fhir(resources, template_id="t")
    comp = {**copy.deepcopy(out.composition), "uid": {"value": "aaaaaaaa-0000-4000-8000-000000000001::x::1"}}
    again = to_fhir(comp, **ARGS).resources
    [orig] = [r for r in resources if r["resourceType"] == rt]
    [twin] = [r for r in again if r["resourceType"] == rt]
    assert validate_fhir(twin) == []
    lost = [x.path.split(":", 1)[1] for x in out.losses if x.path.startswith(f"{rt}/{orig['id']}:")]
    twin = strip(twin) | {"subject": orig["subject"]}
    for d in compare_clinical(orig, twin):
        if d["kind"] in ("dictionary_item_added", "iterable_item_added"):
            continue
        element = element_path(d["path"])
        assert any(element.startswith(x) or x.startswith(element) for x in lost), element
    return out, orig, twin, lost


# ------------------------------------------------------------------ the MII KDS pair
def test_the_kds_composition_maps_what_the_kds_bundle_says():
    resources = to_fhir(_kds(), **ARGS).resources
    [ms] = _statements(resources)
    assert validate_fhir(ms) == [] and ms["status"] == "unknown" and "meta" not in ms  # no profile claimed
    bundle = {e["resource"]["resourceType"]: e["resource"] for e in load(KDS_BUNDLE)["entry"]}
    want = bundle["MedicationStatement"]
    got = ms["dosage"][0]
    assert got["timing"] == want["dosage"][0]["timing"]  # when CD, frequency 1 per 1 d
    assert got["text"] == want["dosage"][0]["text"] and got["route"]["coding"] == want["dosage"][0]["route"]["coding"]
    # as the bundle: a Medication of its own from the medication cluster (PZN + ATC, form), by reference
    [med] = [r for r in resources if f"Medication/{r['id']}" == ms["medicationReference"]["reference"]]
    assert {c["code"] for c in med["code"]["coding"]} == {c["code"] for c in bundle["Medication"]["code"]["coding"]}
    assert med["form"]["coding"][0]["code"] == bundle["Medication"]["form"]["coding"][0]["code"]
    assert "medicationCodeableConcept" not in ms
    assert ms["reasonCode"][0]["coding"][0]["code"] == "787930001"
    assert "outpatient" in {c["code"] for c in ms["category"]["coding"]}
    assert ms["effectiveDateTime"].startswith("2020-08-30")


def test_the_kds_composition_round_trips():
    comp = _kds()
    res = to_fhir(comp, **ARGS).resources
    assert compare_clinical(comp, to_openehr(res, template_id="t", base_composition=comp)) == []
    back = to_openehr(_with_medication(res), template_id="t")
    assert compare_clinical({"content": _entries(comp, STATEMENT)}, {"content": _entries(back, STATEMENT)}) == []


def test_the_kds_bundle_round_trips_what_is_not_reported_lost():
    resources = [e["resource"] for e in load(KDS_BUNDLE)["entry"]]
    out, orig, twin, lost = _fhir_round_trip(resources)
    assert [d for d in compare_clinical({"dosage": orig["dosage"], "category": orig["category"]},
                                        {"dosage": twin["dosage"], "category": twin["category"]})
            if d["kind"] != "dictionary_item_added"] == []  # (the route gains its text from the display)
    assert twin["medicationReference"] == orig["medicationReference"]  # as sent: the Medication kept by reference
    # no home in the archetype: the status (none in the archetype), dateAsserted, the Encounter come back from
    # the entry's feeder audit (issue 21)
    assert not lost and {k: twin[k] for k in ("status", "dateAsserted", "context", "informationSource")} == {
        k: orig[k] for k in ("status", "dateAsserted", "context", "informationSource")}
    [entry] = _entries(out.composition, STATEMENT)
    assert entry["data"]["events"][0]["time"]["value"] == "2020-08-30"  # the open period's start


# ------------------------------------------------------------------ the MII oncology statement (closed period)
def test_a_statement_over_a_closed_period_is_a_medication_summary():
    out, orig, twin, lost = _fhir_round_trip([load(ONKO)])
    [entry] = _entries(out.composition, SUMMARY)
    assert twin["effectivePeriod"] == orig["effectivePeriod"] and twin["note"] == orig["note"]
    assert twin["medicationCodeableConcept"]["coding"][0]["code"] == "L01AA01"
    assert lost == ["status"]  # 'final' is no MedicationStatement status: not given back, reported
    assert twin["partOf"] == orig["partOf"] and twin["medicationCodeableConcept"] == orig[
        "medicationCodeableConcept"]  # from the feeder audit (issue 21)
    assert not _entries(out.composition, STATEMENT) and entry


# ------------------------------------------------------------------ statement specifics
def test_an_interval_event_is_the_period_of_use():
    comp = statement(dosage(_el("at0144", "Dose amount", q(100, "mg"))))
    ev = comp["content"][0]["data"]["events"][0]
    ev.update(_type="INTERVAL_EVENT", width=dur("P14D"), math_function=dt.coded_text("actual", "openehr", "640"))
    res = _statements(to_fhir(comp, **ARGS).resources)
    assert res[0]["effectivePeriod"] == {"start": "2025-02-15T09:30:00+01:00", "end": "2025-03-01T09:30:00+01:00"}
    assert compare_clinical({"content": comp["content"]}, {"content": to_openehr(res, template_id="t")["content"]}) == []


def test_fhir_born_statement_without_effective_takes_the_assertion_date_and_keeps_the_status():
    ms = {"resourceType": "MedicationStatement", "id": "m", "status": "active", "subject": {"reference": "Patient/1"},
          "medicationCodeableConcept": {"text": "Ibuprofen 400 mg"}, "dateAsserted": "2025-01-10"}
    out = from_fhir([ms], template_id="t")
    [entry] = _entries(out.composition, STATEMENT)
    assert entry["data"]["events"][0]["time"]["value"] == "2025-01-10"
    assert entry["data"]["origin"]["value"] == "2025-01-10"  # HISTORY.origin is mandatory
    assert "MedicationStatement/m:status" not in {x.path for x in out.losses}  # in the feeder audit (issue 21)


def test_no_medication_is_a_data_absent_reason_and_comes_back_absent():
    comp = statement()
    comp["content"][0]["data"]["events"][0]["data"]["items"] = [
        _el("at0029", "Comment", {"_type": "DV_TEXT", "value": "patient unsure"})]
    [ms] = _statements(to_fhir(comp, **ARGS).resources)
    assert ms["medicationCodeableConcept"] == {"extension": [{"url": dt.DAR_EXT, "valueCode": "unknown"}]}
    assert compare_clinical({"content": comp["content"]}, {"content": to_openehr([ms], template_id="t")["content"]}) == []


# ------------------------------------------------------------------ summary specifics
def summary(extra=()):
    e = entry_skeleton(registry()[SUMMARY], "en")
    e["data"] = {"_type": "ITEM_TREE", "name": {"_type": "DV_TEXT", "value": "Tree"}, "archetype_node_id": "at0001",
                 "items": [_el("at0002", "Medication name", dt.coded_text("Tamoxifen", "ATC", "L02BA01")),
                           _el("at0028", "Clinical indication", dt.coded_text("Breast cancer", "ICD-10", "C50.4")),
                           _el("at0009", "Onset of use", {"_type": "DV_DATE_TIME", "value": "2019-05-01T00:00:00Z"}),
                           _el("at0010", "Cessation of use", {"_type": "DV_DATE_TIME", "value": "2024-05-01T00:00:00Z"}),
                           _el("at0030", "Reason for cessation", {"_type": "DV_TEXT", "value": "therapy completed"}),
                           _el("at0007", "Clinical description", {"_type": "DV_TEXT", "value": "5 years adjuvant"})]
                 + list(extra)}
    e["protocol"] = {"_type": "ITEM_TREE", "name": {"_type": "DV_TEXT", "value": "Tree"}, "archetype_node_id": "at0005",
                     "items": [_el("at0006", "Last updated", {"_type": "DV_DATE_TIME", "value": "2024-06-01T10:00:00Z"})]}
    return {**statement(), "content": [e]}


def test_a_summary_maps_both_ways_and_keeps_its_episodes_in_the_residue():
    episode = _cl("at0008", "Episode", [_el("at0011", "Episode onset", {"_type": "DV_DATE_TIME",
                                                                         "value": "2019-05-01T00:00:00Z"}),
                                        _el("at0016", "Episode amount", q(20, "mg"))])
    comp = summary([episode])
    [ms] = _statements(to_fhir(comp, **ARGS).resources)
    assert validate_fhir(ms) == []
    assert ms["effectivePeriod"] == {"start": "2019-05-01T00:00:00Z", "end": "2024-05-01T00:00:00Z"}
    assert (ms["statusReason"][0]["text"], ms["note"][0]["text"], ms["dateAsserted"]) == \
        ("therapy completed", "5 years adjuvant", "2024-06-01T10:00:00Z")
    assert compare_clinical({"content": comp["content"]}, {"content": to_openehr([ms], template_id="t")["content"]}) == []


# ------------------------------------------------------------------ generated statements
text = st.text(alphabet=st.characters(whitelist_categories=("Lu", "Ll", "Zs")), min_size=1, max_size=15) \
    .map(str.strip).filter(bool)


@st.composite
def statements(draw):
    items = []
    med = draw(st.sampled_from(["name", "cluster", "none"]))
    if med == "name":
        items.append(_el("at0006", "Medication name", draw(st.one_of(
            text.map(lambda t: {"_type": "DV_TEXT", "value": t}),
            st.just(dt.coded_text("Letrozole", "ATC", "L02BG04"))))))
    elif med == "cluster":
        items.append(_cl("openEHR-EHR-CLUSTER.medication.v2", "Medication", [
            _el("at0132", "Name", dt.coded_text("ASS 100", "http://fhir.de/CodeSystem/ifa/pzn", "06312077")),
            _el("at0071", "Form", dt.coded_text("Tablet", "http://standardterms.edqm.eu", "10219000"))]))
    for node, label in (("at0023", "Clinical indication"), ("at0029", "Comment"), ("at0032", "Description"),
                        ("at0047", "Overall directions description")):
        if draw(st.booleans()):
            items.append(_el(node, label, {"_type": "DV_TEXT", "value": draw(text)}))
    for _ in range(draw(st.integers(0, 2))):
        d = [_el("at0144", "Dose amount", q(draw(st.integers(1, 200)), draw(st.sampled_from(["mg", "1"]))))]
        if draw(st.booleans()):
            d.append(_el("at0178", "Dose description", {"_type": "DV_TEXT", "value": draw(text)}))
        if draw(st.booleans()):
            d.append(daily(_el("at0003", "Frequency", q(draw(st.integers(1, 4)), "1/d")),
                           event_named(draw(st.sampled_from(["MORN", "HS", "abends"])))))
        items.append(dosage(*d))
    if draw(st.booleans()):
        items.append(_el("at0030", "Route of administration", dt.coded_text("Oral use", "http://standardterms.edqm.eu",
                                                                            "20053000")))
    if draw(st.booleans()):
        items.append(_el("at0026", "Last administered", {"_type": "DV_DATE_TIME", "value": "2025-02-28T08:00:00+01:00"}))
    comp = statement()
    comp["content"][0]["data"]["events"][0]["data"]["items"] = items or [
        _el("at0029", "Comment", {"_type": "DV_TEXT", "value": "none"})]  # an empty ITEM_TREE is no statement
    if draw(st.booleans()):
        ev = comp["content"][0]["data"]["events"][0]
        ev.update(_type="INTERVAL_EVENT", width=dur(draw(st.sampled_from(["P7D", "PT12H"]))),
                  math_function=dt.coded_text("actual", "openehr", "640"))
    return comp


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(statements())
def test_generated_statements_round_trip(comp):
    all_res = to_fhir(comp, **ARGS).resources
    res = _statements(all_res)
    assert len(res) == 1 and validate_fhir(res[0]) == []
    back = to_openehr(_with_medication(all_res), template_id="t")
    assert compare_clinical({"content": comp["content"]}, {"content": back["content"]}) == []
    again = _statements(to_fhir({**copy.deepcopy(back), "uid": comp["uid"]}, **ARGS).resources)
    assert compare_clinical(res[0], again[0]) == []


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(["at0028", "at0009", "at0010", "at0030", "at0007"]), unique=True))
def test_generated_summaries_round_trip(drop):
    comp = summary()
    tree = comp["content"][0]["data"]
    tree["items"] = [i for i in tree["items"] if i["archetype_node_id"] not in drop]
    res = _statements(to_fhir(comp, **ARGS).resources)
    assert validate_fhir(res[0]) == []
    assert compare_clinical({"content": comp["content"]}, {"content": to_openehr(res, template_id="t")["content"]}) == []


# ------------------------------------------------------------------ HAPI
@pytest.mark.integration
def test_hapi_validates_medication_statements(fhir_base_url):
    resources = _statements(to_fhir(_kds(), **ARGS).resources) + _statements(to_fhir(summary(), **ARGS).resources)
    for fhir in ([e["resource"] for e in load(KDS_BUNDLE)["entry"]], [load(ONKO)]):
        comp = {**copy.deepcopy(from_fhir(fhir, template_id="t").composition),
                "uid": {"value": "aaaaaaaa-0000-4000-8000-000000000001::x::1"}}
        resources += _statements(to_fhir(comp, **ARGS).resources)
    assert len(resources) == 4
    for r in resources:
        assert hapi_errors(fhir_base_url, r) == [], r["id"]


@pytest.mark.integration
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(statements())
def test_hapi_validates_generated_statements(fhir_base_url, comp):
    for r in _statements(to_fhir(comp, **ARGS).resources):
        assert hapi_errors(fhir_base_url, r) == []
