"""EVALUATION.health_risk.v1 <-> RiskAssessment."""
import copy
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync.mapping import compare_clinical, from_fhir, to_fhir, to_openehr, validate_fhir
from sync.mapping import datatypes as dt
from sync.mapping.engine import entry_skeleton
from sync.mapping.spec import registry

from .conftest import corpus_files, load
from .test_problem_diagnosis import hapi_errors

# The rows this module proves (sync.mapping.coverage reads it; tests/mapping/test_coverage.py checks it).
COVERS = {"EVALUATION.health_risk.v1": "forward reverse hapi"}

FIX = Path(__file__).resolve().parents[1] / "fixtures"
HR = "openEHR-EHR-EVALUATION.health_risk.v1"
FILES = [FIX / "oncology" / "oncology_encounter.composition.json",
         FIX / "health_risk" / "covid_management_health_risk.composition.json"]  # EHRbase canonical of the corpus FLAT


def _risk(res):
    return [r for r in res.resources if r["resourceType"] == "RiskAssessment"]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_it_converts_and_round_trips(path):
    c = json.loads(path.read_text(encoding="utf-8"))
    res = to_fhir(c, site="s", ehr_id="e", patient_ref="Patient/1")
    risks = _risk(res)
    assert len(risks) == 1 and validate_fhir(risks[0]) == []
    assert risks[0]["status"] == "final" and risks[0]["prediction"][0]["outcome"]
    assert compare_clinical(c, to_openehr(res.resources, template_id="t", base_composition=c)) == []
    back = to_openehr(risks, template_id="t")
    assert compare_clinical({"content": [e for e in c["content"] if e["archetype_node_id"] == HR]},
                            {"content": back["content"]}) == []


def test_the_fixture_values():
    c = json.loads(FILES[0].read_text(encoding="utf-8"))
    r = _risk(to_fhir(c, site="s", ehr_id="e", patient_ref="Patient/1"))[0]
    assert r["prediction"] == [{"outcome": {"text": "Recurrence of breast cancer"},
                                "qualitativeRisk": {"text": "Intermediate"}}]
    assert r["basis"] == [{"display": "Regional lymph node involvement (pN1a)"}]
    assert r["occurrenceDateTime"] == "2025-03-14T10:30:00+01:00"
    assert r["method"]["text"].startswith("Clinical judgement")


def test_corpus_riskassessment_keeps_outcome_and_reports_the_rest():
    doc = load(next(iter(corpus_files("fhir/riskassessment_polygenic_brca.json"))))
    out = from_fhir([doc], template_id="t")
    lost = {x.path.split(":", 1)[1] for x in out.losses if ":" in x.path}
    assert not lost  # references and the rest are kept in the feeder audit (issue 21), given back below
    comp = {**copy.deepcopy(out.composition), "uid": {"value": "aaaaaaaa-0000-4000-8000-000000000009::x::1"}}
    again = _risk(to_fhir(comp, site="s", ehr_id="e", patient_ref=doc["subject"]["reference"]))[0]
    assert validate_fhir(again) == []
    assert again["prediction"][0]["outcome"]["coding"][0]["code"] == "718220008"
    assert again["prediction"][0]["qualitativeRisk"]["coding"][0]["code"] == "high"
    assert again["occurrenceDateTime"] == "2022-11-01"


NAMES = st.text(alphabet=st.characters(whitelist_categories=("Lu", "Ll", "Zs")), min_size=1, max_size=12) \
    .map(str.strip).filter(bool)


def _el(node, name, value):
    return {"_type": "ELEMENT", "name": {"_type": "DV_TEXT", "value": name}, "archetype_node_id": node, "value": value}


@st.composite
def risk_composition(draw):
    entry = entry_skeleton(registry()[HR], "en")
    items = [_el("at0002", "Health risk", draw(st.one_of(NAMES.map(lambda n: {"_type": "DV_TEXT", "value": n}),
                                                         st.just(dt.coded_text("Covid", "SNOMED-CT", "840539006")))))]
    for _ in range(draw(st.integers(0, 2))):
        f = [_el("at0013", "Risk factor", {"_type": "DV_TEXT", "value": draw(NAMES)})]
        if draw(st.booleans()):
            f.append(_el("at0017", "Presence", dt.coded_text("Present", "local", "at0018")))
        items.append({"_type": "CLUSTER", "name": {"_type": "DV_TEXT", "value": "Risk factors"},
                      "archetype_node_id": "at0016", "items": f})
    items.append(_el("at0003", "Risk assessment", draw(st.one_of(
        NAMES.map(lambda n: {"_type": "DV_TEXT", "value": n}),
        st.integers(0, 100).map(lambda n: {"_type": "DV_PROPORTION", "numerator": float(n), "denominator": 100.0,
                                           "type": 2})))))
    if draw(st.booleans()):
        items.append(_el("at0023", "Time period", {"_type": "DV_DURATION", "value": "P10Y"}))
    if draw(st.booleans()):
        items.append(_el("at0004", "Rationale", {"_type": "DV_TEXT", "value": draw(NAMES)}))
    entry["data"] = {"_type": "ITEM_TREE", "name": {"_type": "DV_TEXT", "value": "structure"},
                     "archetype_node_id": "at0001", "items": items}
    if draw(st.booleans()):
        entry["protocol"] = {"_type": "ITEM_TREE", "name": {"_type": "DV_TEXT", "value": "Tree"},
                             "archetype_node_id": "at0010",
                             "items": [_el("at0024", "Last updated", {"_type": "DV_DATE_TIME",
                                                                      "value": "2025-03-14T10:30:00+01:00"}),
                                       _el("at0025", "Assessment method", {"_type": "DV_TEXT", "value": draw(NAMES)})]}
    return {"_type": "COMPOSITION", "name": {"_type": "DV_TEXT", "value": "R"},
            "uid": {"_type": "OBJECT_VERSION_ID", "value": "9d0a7c35-0000-4000-8000-000000000003::gen::1"},
            "archetype_node_id": "openEHR-EHR-COMPOSITION.encounter.v1",
            "language": dt.code_phrase("ISO_639-1", "en"), "territory": dt.code_phrase("ISO_3166-1", "DE"),
            "category": dt.coded_text("event", "openehr", "433"), "composer": {"_type": "PARTY_SELF"},
            "content": [entry]}


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(risk_composition())
def test_risk_round_trip(comp):
    risks = _risk(to_fhir(comp, site="s", ehr_id="e", patient_ref="Patient/1"))
    assert validate_fhir(risks[0]) == []
    back = to_openehr(risks, template_id="t")
    assert compare_clinical({"content": comp["content"]}, {"content": back["content"]}) == []
    again = _risk(to_fhir({**copy.deepcopy(back), "uid": comp["uid"]}, site="s", ehr_id="e", patient_ref="Patient/1"))
    assert compare_clinical(risks[0], again[0]) == []


@pytest.mark.integration
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_hapi_validates_risk_assessments(fhir_base_url, path):
    c = json.loads(path.read_text(encoding="utf-8"))
    for r in _risk(to_fhir(c, site="s", ehr_id="e", patient_ref="Patient/1")):
        assert hapi_errors(fhir_base_url, r) == []


# ------------------------------------------------------------------ the prediction kept together
UCUM = "http://unitsofmeasure.org"
PREDICTION = {
    "outcome": {"coding": [{"system": "http://snomed.info/sct", "code": "254837009", "display": "Breast cancer"}]},
    "probabilityDecimal": 23.5,
    "qualitativeRisk": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/risk-probability",
                                    "code": "high", "display": "High likelihood"}]},
    "whenRange": {"low": {"value": 40, "unit": "a", "system": UCUM, "code": "a"},
                  "high": {"value": 50, "unit": "a", "system": UCUM, "code": "a"}},
    "rationale": "polygenic score and family history"}


def _ra(prediction):
    return {"resourceType": "RiskAssessment", "id": "r", "status": "final", "subject": {"reference": "Patient/1"},
            "occurrenceDateTime": "2024-01-10", "prediction": prediction}


def _again(out):
    comp = {**copy.deepcopy(out.composition), "uid": {"value": "aaaaaaaa-0000-4000-8000-000000000009::x::1"}}
    return _risk(to_fhir(comp, site="s", ehr_id="e", patient_ref="Patient/1"))[0]


@pytest.mark.parametrize("keys", [
    ("probabilityDecimal", "qualitativeRisk", "whenRange", "rationale"),
    ("qualitativeRisk", "whenRange"),
    ("probabilityDecimal", "whenRange"),
    ("qualitativeRisk",),
])
def test_a_fhir_prediction_keeps_probability_qualitative_risk_and_when_range_together(keys):
    pred = {"outcome": PREDICTION["outcome"]} | {k: PREDICTION[k] for k in keys}
    out = from_fhir([_ra([pred])], template_id="t")
    assert not [x for x in out.losses if "prediction" in x.path]
    again = _again(out)
    assert validate_fhir(again) == []
    assert [d for d in compare_clinical(pred, again["prediction"][0]) if d["kind"] != "dictionary_item_added"] == []
    # the archetype's element holds one assessment: the probability when there is one
    [entry] = out.composition["content"]
    [assess] = [i for i in entry["data"]["items"] if i["archetype_node_id"] == "at0003"]
    assert assess["value"]["_type"] == ("DV_PROPORTION" if "probabilityDecimal" in keys else "DV_CODED_TEXT")


def test_a_probability_range_stays_with_its_prediction():
    pred = {"outcome": PREDICTION["outcome"], "qualitativeRisk": PREDICTION["qualitativeRisk"],
            "probabilityRange": {"low": {"value": 20, "unit": "%", "system": UCUM, "code": "%"},
                                 "high": {"value": 30, "unit": "%", "system": UCUM, "code": "%"}}}
    again = _again(from_fhir([_ra([pred])], template_id="t"))
    assert again["prediction"][0]["probabilityRange"] == pred["probabilityRange"]


def test_an_openehr_edit_of_the_assessment_drops_the_kept_fhir_detail():
    out = from_fhir([_ra([dict(PREDICTION)])], template_id="t")
    [entry] = out.composition["content"]
    [assess] = [i for i in entry["data"]["items"] if i["archetype_node_id"] == "at0003"]
    assess["value"]["numerator"] = 5.0  # edited in openEHR: 'high' and the age range may no longer hold
    again = _again(out)
    assert again["prediction"][0]["probabilityDecimal"] == 5.0
    assert "qualitativeRisk" not in again["prediction"][0] and "whenRange" not in again["prediction"][0]


def test_the_kept_detail_is_no_openehr_clinical_content_and_a_second_prediction_is_reported():
    second = {"outcome": {"text": "Ovarian cancer"}, "probabilityDecimal": 8.0}
    out = from_fhir([_ra([dict(PREDICTION), second])], template_id="t")
    [entry] = out.composition["content"]
    [risk] = [i for i in entry["data"]["items"] if i["archetype_node_id"] == "at0002"]
    assert risk["feeder_audit"]["original_content"]["_type"] == "DV_PARSABLE"
    bare = copy.deepcopy(out.composition)
    bare["content"][0]["data"]["items"][0].pop("feeder_audit")
    assert compare_clinical(out.composition, bare) == []  # feeder_audit is not clinical content
    assert not out.losses  # the second prediction is kept in the entry's feeder audit (issue 21)
    assert _again(out)["prediction"][1] == second


def test_a_prediction_without_outcome_is_a_null_flavoured_health_risk():
    out = from_fhir([_ra([{"probabilityDecimal": 12.0}])], template_id="t")
    [entry] = out.composition["content"]
    [risk] = [i for i in entry["data"]["items"] if i["archetype_node_id"] == "at0002"]
    assert risk["null_flavour"]["defining_code"]["code_string"] == "253" and "value" not in risk
    assert _again(out)["prediction"] == [{"probabilityDecimal": 12.0}]


@pytest.mark.integration
def test_hapi_validates_a_prediction_kept_together(fhir_base_url):
    for pred in ({k: v for k, v in PREDICTION.items()}, {"outcome": PREDICTION["outcome"],
                                                        "qualitativeRisk": PREDICTION["qualitativeRisk"]}):
        assert hapi_errors(fhir_base_url, _again(from_fhir([_ra([pred])], template_id="t"))) == []
