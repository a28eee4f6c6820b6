"""No default meaning (issue 13, part 4): a model file claims an Observation by its code and category.

An Observation whose code no mapping claims is never filed as a laboratory result by default: from_fhir
reports it ``unmapped-resource`` and leaves it for a person.  A laboratory analyte is claimed by a LOINC
code of a laboratory class (codemaps/loinc_classes.yml) with category laboratory or none; a vital sign by
its LOINC code with category vital-signs or none; TNM staging by its LOINC/SNOMED CT code whatever its
category (tests/mapping/test_tnm_staging.py)."""
import pytest
import yaml

from sync.mapping import from_fhir, rmpath
from sync.mapping.errors import UnmappedTemplate
from sync.mapping.lookup import spec_for_resource
from sync.mapping.spec import ALL_OF, CODEMAP_DIR, SpecError, codemap_criteria, registry

from .conftest import corpus_files, load

LAB = {"openEHR-EHR-OBSERVATION.laboratory_test_result.v1", "openEHR-EHR-CLUSTER.laboratory_test_analyte.v1"}
CAT = "http://terminology.hl7.org/CodeSystem/observation-category"
LNC = "http://loinc.org"

# LOINC codes of kinds no mapping claims as a laboratory result, each with the category a sender would
# give it.  Where they come from: US Core (smoking status, PHQ-9), FHIR R4's vital-signs value set
# (BMI, head circumference, the panel), mCODE STU4 (stage group/T 'other', cancer disease status), MII
# KDS Onkologie (its histology grade is the TNM clusters' G: test_tnm_staging.py; its ICD-O-3 histology a
# pathology examination's interpretation: test_pathology.py), the LOINC document ontology (imaging study,
# pathology report narrative).
NOT_LAB = [
    ("44249-1", "survey"),  # PHQ-9 quick depression assessment panel
    ("18748-4", "imaging"),  # diagnostic imaging study
    ("22637-3", "laboratory"),  # pathology report final diagnosis (narrative)
    ("85353-1", "vital-signs"),  # vital signs panel
    ("21914-7", "survey"),  # TNM stage group, 'other' (neither clinical nor pathological)
    ("21911-3", "survey"),  # TNM primary tumour, 'other'
    ("97509-4", "therapy"),  # cancer disease status (mCODE)
]


def _obs(code, category=None, system=LNC, rid=None):
    o = {"resourceType": "Observation", "id": rid or f"o-{code}-{category}", "status": "final",
         "code": {"coding": [{"system": system, "code": code}]}, "subject": {"reference": "Patient/1"},
         "effectiveDateTime": "2024-05-02T10:00:00+02:00",
         "valueQuantity": {"value": 1, "unit": "1", "system": "http://unitsofmeasure.org", "code": "1"}}
    if category:
        o["category"] = [{"coding": [{"system": CAT, "code": category}]}]
    return o


def _lab_entries(comp):
    return [e for _, e in rmpath.entries(comp) if e.get("archetype_node_id") in LAB]


@pytest.mark.parametrize("category", ["natural", "laboratory", None])
@pytest.mark.parametrize("code,natural", NOT_LAB, ids=[c for c, _ in NOT_LAB])
def test_no_observation_of_a_class_the_mappings_do_not_claim_becomes_a_lab_result(code, natural, category):
    obs = _obs(code, natural if category == "natural" else category)
    assert spec_for_resource(obs) is None
    with pytest.raises(UnmappedTemplate):  # alone: nothing to map, no default
        from_fhir([obs], template_id="t")
    control = _obs("718-7", "laboratory", rid="control")  # a laboratory code next to it still is one
    out = from_fhir([obs, control], template_id="t")
    assert [x.kind for x in out.losses if x.path == f"Observation/{obs['id']}"] == ["unmapped-resource"]
    (entry,) = [e for e in _lab_entries(out.composition) if "OBSERVATION" in e["archetype_node_id"]]
    assert "718-7" in str(entry) and code not in str(entry)


# Codes that had no model file here until issue 18 gave them their own: claimed by that file with their own
# category or none, never a lab result, and left for a person when the category contradicts the code.
OWN_FILE = [("72166-2", "social-history", "openEHR-EHR-EVALUATION.tobacco_smoking_summary.v2"),
            ("39156-5", "vital-signs", "openEHR-EHR-OBSERVATION.body_mass_index.v2"),
            ("9843-4", "vital-signs", "openEHR-EHR-OBSERVATION.head_circumference.v1")]


@pytest.mark.parametrize("code,natural,archetype", OWN_FILE, ids=[c for c, _, _ in OWN_FILE])
def test_a_code_with_its_own_file_is_read_by_it_and_never_as_a_lab_result(code, natural, archetype):
    assert spec_for_resource(_obs(code, natural)).archetype == archetype
    assert spec_for_resource(_obs(code)).archetype == archetype
    assert spec_for_resource(_obs(code, "laboratory")) is None


@pytest.mark.parametrize("category,claimed", [("laboratory", True), (None, True), ("survey", False),
                                              ("vital-signs", False), ("imaging", False)])
def test_a_laboratory_code_is_a_lab_result_unless_its_category_says_otherwise(category, claimed):
    obs = _obs("718-7", category)
    spec = spec_for_resource(obs)
    assert (spec is not None and spec.archetype in LAB) is claimed


@pytest.mark.parametrize("code", ["14804-9", "2160-0", "6690-2", "6301-6"])  # LDH (melanoma), creatinine, WBC, INR
def test_the_common_chemistry_count_and_coagulation_codes_are_lab_results_and_map_to_an_analyte(code):
    obs = _obs(code, "laboratory")
    assert spec_for_resource(obs).archetype in LAB
    out = from_fhir([obs], template_id="t")
    assert out.losses == [] and code in str(_lab_entries(out.composition))


def test_a_code_keeps_its_system_in_a_claim():
    assert spec_for_resource(_obs("718-7", "laboratory", system="http://example.org/local")) is None
    assert spec_for_resource(_obs("8867-4", "vital-signs", system="http://snomed.info/sct")) is None
    assert spec_for_resource(_obs("8867-4", "vital-signs")).archetype == "openEHR-EHR-OBSERVATION.pulse.v2"


def test_a_vital_sign_sent_under_another_category_is_left_for_a_person():
    assert spec_for_resource(_obs("8867-4")).archetype == "openEHR-EHR-OBSERVATION.pulse.v2"
    assert spec_for_resource(_obs("8867-4", "survey")) is None


def test_every_observation_file_claims_by_code_or_category_and_none_is_a_catch_all():
    """Each fhirConfig.match entry of an Observation file names codes (with their system) or a category:
    none claims an Observation for merely being one (the old 'no category: laboratory' default)."""
    by_code = 0
    for spec in registry().values():
        if spec.resource != "Observation":
            continue
        assert spec.match, spec.source
        for alt in spec.match:
            parts = alt.criteria if alt.operator == ALL_OF else [alt]
            codes = [c for c in parts if c.operator == "one of" and c.target_attribute == "code.coding"]
            assert all("|" in str(x) and str(x).split("|")[0] for c in codes for x in c.criteria), spec.source
            assert codes or any(c.operator == "one of" and c.target_attribute.startswith("category.coding")
                                for c in parts), (spec.source, alt)
            by_code += bool(codes)
    assert by_code >= 10


def test_the_lab_class_table_lists_only_laboratory_kinds_it_declares():
    table = yaml.safe_load((CODEMAP_DIR / "loinc_classes.yml").read_text(encoding="utf-8"))
    lab = codemap_criteria({"codemap": "loinc_classes", "kind": "laboratory"}, "test")
    assert lab and all(t.startswith(LNC + "|") for t in lab)
    assert {t.split("|")[1] for t in lab} == {c for c, row in table["codes"].items()
                                              if row["class"] in table["kinds"]["laboratory"]}
    other_files = {str(x) for s in registry().values() if s.archetype not in LAB for alt in s.match
                   for c in (alt.criteria if alt.operator == ALL_OF else [alt]) for x in c.criteria}
    assert not set(lab) & other_files  # a code is claimed by one file
    with pytest.raises(SpecError):
        codemap_criteria({"codemap": "loinc_classes", "kind": "survey"}, "test")
    with pytest.raises(SpecError):
        codemap_criteria({"codemap": "no_such_map", "kind": "laboratory"}, "test")


def test_no_corpus_observation_is_filed_as_a_lab_result_unless_a_laboratory_code_claims_it():
    lab_codes = {t.split("|")[1] for t in codemap_criteria({"codemap": "loinc_classes", "kind": "laboratory"}, "t")}
    seen = 0
    for f in corpus_files("fhir/*.json"):
        doc = load(f)
        for r in [e["resource"] for e in doc.get("entry", [])] if doc["resourceType"] == "Bundle" else [doc]:
            if r["resourceType"] != "Observation" or r.get("hasMember"):
                continue
            spec = spec_for_resource(r)
            codes = {c.get("code") for c in r.get("code", {}).get("coding", []) if c.get("system") == LNC}
            if spec is not None and spec.archetype in LAB:
                seen += 1
                assert codes & lab_codes, (f.name, r.get("id"))
    assert seen >= 6  # the KDS and HL7 laboratory examples are still read
