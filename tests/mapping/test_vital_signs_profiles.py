"""Vital signs against HAPI's vital-signs profiles: a BP with one of systolic/diastolic, events with
a width (INTERVAL_EVENT)."""
import copy
import json

import httpx
import pytest

from sync.mapping import compare_clinical, from_fhir, rmpath, to_fhir, to_openehr, validate_fhir

from .conftest import REPO_DIR

# The rows this module proves (sync.mapping.coverage reads it; tests/mapping/test_coverage.py checks it).
COVERS = {"OBSERVATION.blood_pressure.v2": "forward reverse hapi",
          "OBSERVATION.pulse.v2": "forward reverse hapi",
          "OBSERVATION.body_temperature.v2": "forward reverse hapi",
          "OBSERVATION.respiration.v2": "forward reverse hapi",
          "OBSERVATION.pulse_oximetry.v1": "forward reverse hapi",
          "OBSERVATION.body_weight.v2": "forward reverse hapi",
          "OBSERVATION.height.v2": "forward reverse hapi"}

FIXTURE = REPO_DIR / "tests" / "fixtures" / "oncology" / "oncology_encounter.composition.json"
NOT_RECORDED = "not-performed"


def hapi_errors(base: str, resource: dict) -> list[str]:
    """Strict: every error HAPI reports, profile errors included (the vital-signs profiles are core R4)."""
    out = httpx.post(f"{base}/{resource['resourceType']}/$validate", json=resource, timeout=120).json()
    return [i.get("diagnostics", "") for i in out.get("issue", []) if i["severity"] in ("error", "fatal")]


def _composition():
    return json.loads(FIXTURE.read_text())


def _entry(comp, name):
    return next(e for _, e in rmpath.entries(comp) if name in e["archetype_node_id"])


def _obs(resources, loinc):
    return next(r for r in resources if r["resourceType"] == "Observation"
                and r["code"]["coding"][0]["code"] == loinc)


def _bp_without(node):
    comp = _composition()
    ev = _entry(comp, "blood_pressure")["data"]["events"][0]
    ev["data"]["items"] = [i for i in ev["data"]["items"] if i["archetype_node_id"] != node]
    return comp


@pytest.mark.parametrize("missing,code", [("at0005", "8462-4"), ("at0004", "8480-6")])
def test_a_missing_bp_component_is_data_absent_and_comes_back_absent(missing, code):
    comp = _bp_without(missing)
    res = to_fhir(comp, site="s", ehr_id="e", patient_ref="Patient/1").resources
    bp = _obs(res, "85354-9")
    assert validate_fhir(bp) == []
    assert [c["code"]["coding"][0]["code"] for c in bp["component"]][:2] == ["8480-6", "8462-4"]
    comp_ = next(c for c in bp["component"] if c["code"]["coding"][0]["code"] == code)
    assert "valueQuantity" not in comp_ and comp_["dataAbsentReason"]["coding"][0]["code"] == NOT_RECORDED
    back = to_openehr(res, template_id="t", base_composition=comp)
    assert compare_clinical(comp, back) == []
    ev = _entry(back, "blood_pressure")["data"]["events"][0]
    assert missing not in [i["archetype_node_id"] for i in ev["data"]["items"]]  # absent, not a null flavour


def test_a_fhir_data_absent_reason_other_than_not_recorded_is_a_null_flavour():
    bp = {"resourceType": "Observation", "id": "b", "status": "final",
          "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
          "subject": {"reference": "Patient/1"}, "effectiveDateTime": "2025-01-01T10:00:00+01:00",
          "component": [
              {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
               "valueQuantity": {"value": 120, "unit": "mm[Hg]", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}},
              {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
               "dataAbsentReason": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
                                                "code": "masked"}]}}]}
    comp = from_fhir([bp], template_id="t").composition
    items = _entry(comp, "blood_pressure")["data"]["events"][0]["data"]["items"]
    dia = next(i for i in items if i["archetype_node_id"] == "at0005")
    assert dia["null_flavour"]["defining_code"]["code_string"] == "272" and "value" not in dia
    bp["component"][1]["dataAbsentReason"]["coding"][0]["code"] = NOT_RECORDED
    comp = from_fhir([bp], template_id="t").composition
    items = _entry(comp, "blood_pressure")["data"]["events"][0]["data"]["items"]
    assert [i["archetype_node_id"] for i in items] == ["at0004"]


@pytest.mark.integration
@pytest.mark.parametrize("missing", ["at0004", "at0005"])
def test_hapi_accepts_a_bp_with_one_component(fhir_base_url, missing):
    res = to_fhir(_bp_without(missing), site="s", ehr_id="e", patient_ref="Patient/1").resources
    assert hapi_errors(fhir_base_url, _obs(res, "85354-9")) == []


# ------------------------------------------------------------------ interval events
VITALS = ("blood_pressure.v2", "pulse.v2", "body_temperature.v2", "respiration.v2", "pulse_oximetry.v1",
          "body_weight.v2", "height.v2")
WIDTH = "https://conflictdesk.example.org/fhir/StructureDefinition/openehr-event-width"
MATH = "https://conflictdesk.example.org/fhir/StructureDefinition/openehr-math-function"


def _interval_vitals(width="PT24H"):
    comp = _composition()
    n = 0
    for _, e in rmpath.entries(comp):
        if e["archetype_node_id"].endswith(VITALS):
            for ev in e["data"]["events"]:
                n += 1
                ev.update(_type="INTERVAL_EVENT", width={"_type": "DV_DURATION", "value": width},
                          math_function={"_type": "DV_CODED_TEXT", "value": "mean", "defining_code": {
                              "_type": "CODE_PHRASE", "terminology_id": {"_type": "TERMINOLOGY_ID", "value": "openehr"},
                              "code_string": "146"}})
    assert n
    return comp


def _vital_obs(resources):
    return [r for r in resources if "http://hl7.org/fhir/StructureDefinition/vitalsigns" in
            (r.get("meta") or {}).get("profile", [])]


@pytest.mark.parametrize("width,duration", [("PT24H", (24, "h")), ("P1D", (1, "d")), ("PT15M", (15, "min")),
                                            ("PT1H30M", (5400, "s"))])
def test_interval_vitals_are_effective_date_time_with_width_and_round_trip(width, duration):
    comp = _interval_vitals(width)
    res = to_fhir(comp, site="s", ehr_id="e", patient_ref="Patient/1").resources
    obs = _vital_obs(res)
    assert obs
    for o in obs:
        assert "effectivePeriod" not in o and o["effectiveDateTime"]
        ext = {e["url"]: e for e in o["extension"]}
        q = ext[WIDTH]["valueDuration"]
        assert (q["value"], q["code"], q["system"]) == (*duration, "http://unitsofmeasure.org")
        assert ext[MATH]["valueCoding"]["code"] == "146"
        assert validate_fhir(o) == []
    assert compare_clinical(comp, to_openehr(res, template_id="t", base_composition=comp)) == []


def test_a_fhir_born_width_extension_or_period_gives_an_interval_event():
    base = {"resourceType": "Observation", "id": "t", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8310-5"}]}, "subject": {"reference": "Patient/1"},
            "valueQuantity": {"value": 37.2, "unit": "Cel", "system": "http://unitsofmeasure.org", "code": "Cel"}}
    ext = dict(base, effectiveDateTime="2025-01-02T08:00:00+01:00", extension=[
        {"url": WIDTH, "valueDuration": {"value": 12, "unit": "h", "system": "http://unitsofmeasure.org", "code": "h"}}])
    period = dict(base, effectivePeriod={"start": "2025-01-01T20:00:00+01:00", "end": "2025-01-02T08:00:00+01:00"})
    for r in (ext, period):
        ev = _entry(from_fhir([r], template_id="t").composition, "body_temperature")["data"]["events"][0]
        assert ev["_type"] == "INTERVAL_EVENT" and ev["time"]["value"] == "2025-01-02T08:00:00+01:00"
        assert ev["width"]["value"] == "PT12H" and ev["math_function"]["defining_code"]["code_string"] == "640"


@pytest.mark.integration
def test_hapi_accepts_every_interval_vital_sign(fhir_base_url):
    for sd in ("openehr-event-width", "openehr-math-function"):
        body = json.loads((REPO_DIR / "sync" / "mapping" / "extensions" / f"{sd}.json").read_text())
        assert httpx.put(f"{fhir_base_url}/StructureDefinition/{sd}", json=body, timeout=60).status_code in (200, 201)
    res = to_fhir(_interval_vitals(), site="s", ehr_id="e", patient_ref="Patient/1").resources
    obs = _vital_obs(res)
    assert len({o["code"]["coding"][0]["code"] for o in obs}) >= 5
    assert {o["code"]["coding"][0]["code"]: hapi_errors(fhir_base_url, o) for o in obs} == \
        {o["code"]["coding"][0]["code"]: [] for o in obs}
