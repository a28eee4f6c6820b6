"""The synthetic generator: deterministic, varied, template-shaped, plausible, nameless."""
import json
import random
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

from sync.demo import catalogue as cat
from sync.demo.flat import ROOT, normalise_key
from sync.demo.generator import (SUBJECT_NAMESPACE, VITAL_RANGES, generate_patient, generate_patients,
                                 lab_composition, trickle_composition, vital_signs_composition)
from sync.demo.invalid import CASES, DEAD_LETTER_KINDS, invalid_case

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "oncology" / "oncology_encounter.v2.flat.json"
# Generic FLAT attributes every template has (the fixture happens not to use them).
GENERIC = re.compile(r"/_uid$|/_mapping:#(\|match|/target\|(code|terminology))$")
# Web-template nodes the generator uses beyond the fixture; test_seed_real checks them against the
# live web template.
EXTRA_SHAPES = {f"{ROOT}/procedure:#/comment", f"{ROOT}/procedure:#/end_datetime"} | {
    f"{ROOT}/problem_diagnosis:#/{k}" for k in (  # a toxicity graded by CTCAE (issue 17)
        "problem_diagnosis_name|other", "date_time_of_onset",
        *(f"common_terminology_criteria_for_adverse_events_ctcae:#/{e}" for e in (
            "category", "term", "grade_category|code", "grade_category|ordinal", "grade_category|value",
            "ctcae_version")))} | {
    f"{ROOT}/laboratory_test_result:#/any_event:#/gleason_score:#/{k}" for k in (  # a prostate biopsy's Gleason score
        *(f"{e}|{a}" for e in ("primary_gleason_grade", "secondary_gleason_grade", "gleason_grade_group")
          for a in ("code", "ordinal", "value")), "total_gleason_score")} | {
    f"{ROOT}/laboratory_test_result:#/any_event:#/lymph_node_metastases:#/{k}" for k in (  # a resection's node counts
        "lymph_node_site_name", "tumour_involvement|code", "tumour_involvement|value", "tumour_involvement|terminology",
        "number_of_nodes_examined", "number_of_nodes_with_tumour")} | {
    f"{ROOT}/laboratory_test_result:#/any_event:#/surgical_resection_margins:#/{k}" for k in (  # a resection's margins
        "margin_name", *(f"marginal_involvement|{a}" for a in ("code", "value", "terminology")))} | {
    f"{ROOT}/laboratory_test_result:#/any_event:#/tumour_-_direct_invasion:#/{k}" for k in (  # and its invasion (pT)
        "tissue_name", "direct_invasion|code", "direct_invasion|value", "direct_invasion|terminology")} | {
    f"{ROOT}/laboratory_test_result:#/any_event:#/anatomical_pathology_examination:#/{k}" for k in (  # its microscopy
        "examination_type|code", "examination_type|value", "examination_type|terminology", "examination_description",
        "anatomical_pathology_finding:#/finding_label", "anatomical_pathology_finding:#/finding_description")} | {
    f"{ROOT}/laboratory_test_result:#/any_event:#/figo_staging_of_gynaecological_cancer:#/{k}" for k in (  # FIGO
        "staging_criteria|code", "staging_criteria|value", "staging_criteria|terminology", "figo_stage",
        "figo_version")} | {
    f"{ROOT}/laboratory_test_result:#/any_event:#/genetic_variant_presence:#/{k}" for k in (  # an EGFR result
        "variant_name", "finding|code", "finding|value", "finding|terminology")} | {
    f"{ROOT}/care_plan:#/{k}" for k in (  # the board's plan scheduled (ACTION.care_plan.v0)
        "language|code", "language|terminology", "encoding|code", "encoding|terminology", "time", "care_plan_name",
        *(f"ism_transition/{e}|{a}" for e in ("current_state", "careflow_step") for a in ("code", "value", "terminology")))}
WHEN = datetime(2025, 5, 1, 9, 30, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def fixture_shapes():
    return {normalise_key(k) for k in json.loads(FIXTURE.read_text())} | EXTRA_SHAPES


@pytest.fixture(scope="module")
def patients():
    return generate_patients(60, seed=11)


def all_flats(patients):
    for p in patients:
        for e in p.events:
            yield e.flat
    rng = random.Random(3)
    for _ in range(20):
        yield trickle_composition(rng, WHEN)[1]
    yield vital_signs_composition(rng, WHEN, events=3)
    yield lab_composition(rng, WHEN, cancer="prostate")


def test_it_is_deterministic():
    a = [json.dumps(p.events[i].flat, sort_keys=True) for p in generate_patients(8, 42) for i in range(len(p.events))]
    b = [json.dumps(p.events[i].flat, sort_keys=True) for p in generate_patients(8, 42) for i in range(len(p.events))]
    assert a == b
    assert generate_patient(42, "SYN-000003").summary == generate_patients(4, 42)[3].summary


def test_it_varies_with_the_seed():
    one, two = generate_patients(10, 1), generate_patients(10, 2)
    assert [p.summary for p in one] != [p.summary for p in two]
    assert [p.subject_id for p in one] == [p.subject_id for p in two]  # ids are positional, stories are not


def test_it_covers_every_cancer_stage_and_state(patients):
    assert {p.cancer for p in patients} == set(cat.CANCERS)
    assert len({p.summary["cTNM"]["stage"] for p in patients}) >= 8
    kinds = {e.kind for p in patients for e in p.events}
    assert kinds == {"diagnosis", "surgery", "treatment", "follow_up"}
    states = {v for p in patients for e in p.events for k, v in e.flat.items()
              if k.endswith("ism_transition/current_state|code")}
    assert {"526", "532"} <= states and ({"527", "529"} & states)
    assert any(e.revises == "diagnosis" for p in patients for e in p.events)


def test_every_key_is_a_template_node(patients, fixture_shapes):
    for flat in all_flats(patients):
        for key in flat:
            shape = normalise_key(key)
            assert shape in fixture_shapes or GENERIC.search(shape), key


def test_keys_start_at_the_root_and_entries_carry_language(patients):
    for flat in all_flats(patients):
        assert all(k.startswith(f"{ROOT}/") for k in flat)
        entries = {m.group(1) for k in flat if (m := re.match(rf"{ROOT}/(\w+:\d+)/", k))}
        for entry in entries:
            assert flat[f"{ROOT}/{entry}/language|code"] == "en"
            assert flat[f"{ROOT}/{entry}/encoding|code"] == "UTF-8"


def values(flat, suffix):
    return [v for k, v in flat.items() if k.endswith(suffix)]


def test_vital_signs_stay_in_plausible_ranges(patients):
    checks = {"/systolic|magnitude": "systolic", "/diastolic|magnitude": "diastolic",
              "pulse_heart_beat:0/any_event:0/rate|magnitude": "pulse", "/temperature|magnitude": "temperature",
              "/spo|numerator": "spo2"}
    seen = 0
    for flat in all_flats(patients):
        for suffix, name in checks.items():
            for v in values(flat, suffix):
                low, high = VITAL_RANGES[name]
                assert low <= v <= high, (name, v)
                seen += 1
        for k, v in flat.items():
            if re.search(r"respiration:\d+/any_event:\d+/rate\|magnitude$", k):
                assert VITAL_RANGES["respiration"][0] <= v <= VITAL_RANGES["respiration"][1]
        sys_ = values(flat, "/systolic|magnitude")
        dia = values(flat, "/diastolic|magnitude")
        assert all(s > d for s, d in zip(sys_, dia))
        assert all(v == int(v) for v in sys_ + dia)  # the template allows no decimals here
    assert seen > 500


def test_labs_match_the_cancer_and_stay_plausible(patients):
    markers = {m.loinc.code: m for m in (cat.HAEMOGLOBIN, cat.NEUTROPHILS, cat.CA_15_3, cat.CEA, cat.PSA, cat.CA_125)}
    for p in patients:
        cancer = cat.CANCERS[p.cancer]
        for e in p.events:
            codes = values(e.flat, "/analyte_name|code")
            units = [v for k, v in e.flat.items() if k.endswith("/analyte_result:0/quantity_value|unit")]
            for code, unit in zip(codes, units):
                assert markers[code].unit == unit
            tumour = [c for c in codes if c not in (cat.HAEMOGLOBIN.loinc.code, cat.NEUTROPHILS.loinc.code)]
            assert set(tumour) <= {cancer.marker.loinc.code}
            if e.kind == "diagnosis" and e.revises is None:
                assert cancer.marker.loinc.code in codes
        for e in p.events:
            for code, v in zip(values(e.flat, "/analyte_name|code"),
                               values(e.flat, "analyte_result:0/quantity_value|magnitude")):
                assert 0 < v <= max(markers[code].raised[1], markers[code].normal[1])


def test_staging_is_consistent_with_the_diagnosis(patients):
    for p in patients:
        diag = [e.flat for e in p.events if e.kind == "diagnosis"][-1]
        c = p.summary["cTNM"]
        tnm = f"{ROOT}/problem_diagnosis:0/tnm_clinical_classification"
        assert diag[f"{tnm}/anatomical_site"] == cat.CANCERS[p.cancer].anatomical_site
        assert diag[f"{tnm}/stage_grouping"] == cat.stage_group(p.cancer, c["t"], c["n"], c["m"],
                                                                 cat.grade_group_of(p.summary["histology"]))
        assert diag[f"{ROOT}/problem_diagnosis:0/problem_diagnosis_name|code"] == cat.CANCERS[p.cancer].diagnosis.code
        icd = diag[f"{ROOT}/problem_diagnosis:0/problem_diagnosis_name/_mapping:0/target|code"]
        assert icd.startswith({"breast": "C50", "colorectal": "C18", "lung": "C34", "prostate": "C61",
                                   "ovary": "C56"}[p.cancer])
        if c["m"] == "M1":
            assert "pTNM" not in p.summary and not any(e.kind == "surgery" for e in p.events)
        else:
            pt = f"{ROOT}/problem_diagnosis:0/tnm_pathological_classification"
            assert diag[f"{pt}/primary_tumour_pt"].startswith("pT")
            assert diag[f"{pt}/stage_grouping"] == p.summary["pTNM"]["stage"]


def test_stage_groups_follow_uicc():
    assert cat.stage_group("breast", "T2", "N1", "M0") == "IIB"
    assert cat.stage_group("colorectal", "T3", "N1", "M0") == "IIIB"
    assert cat.stage_group("lung", "T1b", "N0", "M0") == "IA2"
    assert cat.stage_group("prostate", "T2c", "N0", "M0", 2) == "IIB"
    assert cat.stage_group("prostate", "T1c", "N0", "M1", 1) == "IVB"


def test_medication_orders_are_anticancer_with_dose_route_and_timing(patients):
    from sync.mapping.hooks_medication import oncology

    orders = 0
    for p in patients:
        for e in p.events:
            for k, v in e.flat.items():
                if k.endswith("/order:0/medication_item|value"):
                    orders += 1
                    base = k.rsplit("/medication_item", 1)[0]
                    assert oncology.is_anticancer_agent({"value": v})
                    assert e.flat[f"{base}/route:0|code"] in {"26643006", "47625008", "34206005"}
                    assert e.flat[f"{base}/therapeutic_direction:0/dosage/dose_amount/quantity_value|magnitude"] > 0
                    assert re.match(r"^R\d*/\d{4}-\d\d-\d\dT[^/]+/P", e.flat[f"{base}/timing"])
                    if v in ("tamoxifen", "letrozole"):
                        assert "ER positive" in p.summary["histology"]
    assert orders >= len(patients)


def test_no_field_names_a_person(patients):
    for flat in all_flats(patients):
        for k, v in flat.items():
            assert "/subject|" not in k and not k.endswith("|id")
            if k.endswith("|name"):
                assert v.startswith("Synthetic "), (k, v)
    for p in patients:
        assert re.fullmatch(r"SYN-\d{6}", p.subject_id)
    assert SUBJECT_NAMESPACE == "conflictdesk-synthetic"


def test_invalid_cases_are_documented_and_template_shaped(fixture_shapes):
    rng = random.Random(1)
    assert set(DEAD_LETTER_KINDS) == {"unit_not_a_code", "no_entries", "comment_too_long"}
    for kind in CASES:
        case = invalid_case(kind, rng, WHEN)
        assert case.why and case.site_accepts == (kind in DEAD_LETTER_KINDS)
        assert all(normalise_key(k) in fixture_shapes for k in case.flat)
