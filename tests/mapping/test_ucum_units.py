"""Units: a Quantity claims UCUM only for a real UCUM code; other units travel as text and come back as written."""
import pytest

from sync.mapping import MappingError, to_fhir
from sync.mapping.datatypes import quantity_to_dv, quantity_to_fhir
from sync.mapping.terminology import UCUM
from sync.mapping.ucum import is_ucum
from sync.mapping.validate import validate_fhir

from .conftest import corpus_files, load


@pytest.mark.parametrize("code", ["mm[Hg]", "Cel", "/min", "{beats}/min", "mmol/L", "umol/L", "10*9/L", "[iU]/L",
                                  "kg/m2", "%", "1", "mL/min/{1.73_m2}", "[degF]", "a"])
def test_ucum_codes_are_recognised(code):
    assert is_ucum(code)


@pytest.mark.parametrize("unit", ["mmHg", "°C", "..mol/l", "mm[Hg", "degrees celsius per fortnight", "example-unit",
                                  "", " ", " kg", "?"])
def test_other_units_are_not(unit):
    assert not is_ucum(unit)


def test_a_non_ucum_unit_goes_as_text_without_a_ucum_claim_and_comes_back_as_written():
    dv = {"_type": "DV_QUANTITY", "magnitude": 5.2, "units": "..mol/l"}
    q = quantity_to_fhir(dv)
    assert q == {"value": 5.2, "unit": "..mol/l"}
    assert quantity_to_dv(q) == dv


def test_a_fixable_unit_still_gets_its_ucum_code():
    assert quantity_to_fhir({"magnitude": 120, "units": "mmHg"}) == {
        "value": 120, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}


def _vital(**quantity):
    return {"resourceType": "Observation", "status": "final", "meta": {"profile": ["http://hl7.org/fhir/StructureDefinition/vitalsigns"]},
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "8310-5"}]}, "subject": {"reference": "Patient/p1"},
            "effectiveDateTime": "2026-01-01T10:00:00Z", "valueQuantity": {"value": 37.1, **quantity}}


def test_a_vital_sign_without_a_ucum_code_is_invalid_naming_the_element():
    assert validate_fhir(_vital(unit="Cel", system=UCUM, code="Cel")) == []
    issues = validate_fhir(_vital(unit="degrees"))
    assert issues == ["valueQuantity.code: the vital-signs profile requires a UCUM code (unit is not UCUM)"]


def test_the_same_unit_is_fine_where_no_profile_asks_for_ucum():
    lab = _vital(unit="..mol/l")
    del lab["meta"]
    assert validate_fhir(lab) == []


def _quantities(node):
    if isinstance(node, dict):
        if "value" in node and "unit" in node and isinstance(node.get("value"), (int, float)):
            yield node
        for v in node.values():
            yield from _quantities(v)
    elif isinstance(node, list):
        for v in node:
            yield from _quantities(v)


@pytest.mark.parametrize("path", corpus_files("openehr/compositions/*.composition.json"), ids=lambda p: p.name)
def test_no_resource_made_from_the_corpus_claims_ucum_for_a_unit_that_is_not(path):
    comp = load(path)
    if not (comp.get("uid") or {}).get("value"):
        comp["uid"] = {"_type": "OBJECT_VERSION_ID", "value": "bbbbbbbb-0000-4000-8000-000000000002::corpus::1"}
    try:
        resources = to_fhir(comp, site="site1", ehr_id="e1", patient_ref="Patient/p1").resources
    except MappingError:
        pytest.skip("not a mapped composition")
    claimed = [q["code"] for q in _quantities(resources) if q.get("system") == UCUM]
    assert [c for c in claimed if not is_ucum(c)] == []
