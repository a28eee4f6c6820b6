"""A specific vital-sign profile is claimed only where the value meets its unit rule (FHIR R4 vital signs):
a '{beats}/min' heart rate keeps 'vitalsigns' (any UCUM code) and loses 'heartrate' (fixed '/min'), which
HAPI refused; the unit is mapped as recorded, never converted.  HAPI checks the corpus results in
tests/mapping/test_hapi_all_resources.py (the NEWS2 sheet's annotated units)."""
import copy

import pytest

from sync.mapping import from_fhir, profile_units, to_fhir

VS = "http://hl7.org/fhir/StructureDefinition/"
UCUM = "http://unitsofmeasure.org"


def _obs(profile, code, **extra):
    return {"resourceType": "Observation", "meta": {"profile": [VS + "vitalsigns", VS + profile]},
            "valueQuantity": {"value": 1, "unit": code, "system": UCUM, "code": code}, **extra}


@pytest.mark.parametrize("profile,ok,other", [("heartrate", "/min", "{beats}/min"), ("resprate", "/min", "min-1"),
                                              ("oxygensat", "%", "1"), ("bmi", "kg/m2", "kg.m-2"),
                                              ("bodytemp", "[degF]", "K"), ("bodyweight", "g", "[oz_av]"),
                                              ("bodyheight", "[in_i]", "m"), ("headcircum", "cm", "mm")])
def test_a_specific_profile_stays_with_its_unit_and_goes_with_another(profile, ok, other):
    meets, breaks = _obs(profile, ok), _obs(profile, other)
    profile_units.fit(meets)
    profile_units.fit(breaks)
    assert meets["meta"]["profile"] == [VS + "vitalsigns", VS + profile]
    assert breaks["meta"]["profile"] == [VS + "vitalsigns"] and breaks["valueQuantity"]["code"] == other


def test_blood_pressure_looks_at_its_systolic_and_diastolic_components_only():
    def comp(loinc, unit):
        return {"code": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
                "valueQuantity": {"value": 1, "system": UCUM, "code": unit}}
    bp = {"resourceType": "Observation", "meta": {"profile": [VS + "vitalsigns", VS + "bp"]},
          "component": [comp("8480-6", "mm[Hg]"), comp("8462-4", "mm[Hg]"), comp("8478-0", "cm[H2O]")]}
    kept = copy.deepcopy(bp)
    profile_units.fit(kept)
    assert kept["meta"]["profile"] == [VS + "vitalsigns", VS + "bp"]  # mean arterial pressure is no part of it
    bp["component"][1]["valueQuantity"]["code"] = "kPa"
    profile_units.fit(bp)
    assert bp["meta"]["profile"] == [VS + "vitalsigns"]


def test_other_profiles_and_resources_are_left_alone():
    mcode = {"resourceType": "Observation", "meta": {"profile": ["http://hl7.org/fhir/us/mcode/x"]},
             "valueQuantity": {"code": "{beats}/min"}}
    before = copy.deepcopy(mcode)
    profile_units.fit(mcode)
    profile_units.fit({"resourceType": "Condition", "meta": {"profile": [VS + "heartrate"]}})
    assert mcode == before


def test_a_heart_rate_recorded_in_an_annotated_unit_maps_as_recorded_under_vitalsigns_only():
    born = {"resourceType": "Observation", "id": "hr", "status": "final", "subject": {"reference": "Patient/1"},
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "effectiveDateTime": "2025-03-01T10:00:00+01:00",
            "valueQuantity": {"value": 72, "unit": "beats/min", "system": UCUM, "code": "{beats}/min"}}
    comp = {**from_fhir([born], template_id="t").composition,
            "uid": {"value": "aaaaaaaa-0000-4000-8000-000000000031::x::1"}}
    [hr] = [r for r in to_fhir(comp, site="s", ehr_id="e", patient_ref="Patient/1").resources
            if r["resourceType"] == "Observation"]
    assert hr["valueQuantity"]["code"] == "{beats}/min" and hr["meta"]["profile"] == [VS + "vitalsigns"]
