"""The demo's oncology pathway (issue 17): each patient's treatment visit is the tumour board's plan (care
plan, the orders, a radiotherapy referral, the goal) with ECOG and Karnofsky, and each follow-up records
performance status and a dose given; mapped to FHIR, the plan names the orders and the referral."""
import json

import pytest

from sync.demo import catalogue as cat
from sync.demo.flat import ROOT
from sync.demo.generator import generate_patients
from sync.mapping import flat as flat_format
from sync.mapping import to_fhir, validate_fhir
from tests.fixtures import REPO_DIR

OPT = REPO_DIR / "deploy/templates/conflictdesk_oncology.v2.opt"
NOW = "2026-01-01T00:00:00Z"


@pytest.fixture(scope="module")
def patients():
    return generate_patients(30, seed=17)


def _stored(url: str, flat: dict, prefix: str) -> tuple[str, dict]:
    """(EHR id, the canonical composition EHRbase stored) for a generated FLAT composition committed under template
    v2 in a new EHR whose subject starts with ``prefix``: what the real-CDR tests map."""
    import uuid

    from sync.clients.openehr import OpenEHRClient
    from sync.demo.flat import TEMPLATE_ID

    with OpenEHRClient(url) as cdr:
        cdr.upload_template(OPT.read_bytes())
        ehr = cdr.create_ehr(subject_id=f"{prefix}{uuid.uuid4().hex[:8]}", subject_namespace="conflictdesk-test").ehr_id
        ref = cdr.create_composition(ehr, flat, template_id=TEMPLATE_ID)
        return ehr, cdr.get_composition(ehr, ref.version_uid).content


def _entries(flat, node):
    return sorted({k.split("/")[1] for k in flat if k.startswith(f"{ROOT}/{node}:")})


def test_every_treatment_visit_is_a_plan_with_its_orders_referral_goal_and_performance_status(patients):
    for p in patients:
        [treatment] = [e.flat for e in p.events if e.kind == "treatment"]
        assert len(_entries(treatment, "care_plan_request")) == 1 and len(_entries(treatment, "goal")) == 1
        assert len(_entries(treatment, "service_request")) == 1
        assert len(_entries(treatment, "medication_order")) == len(p.summary["agents"])
        ecog = treatment[f"{ROOT}/ecog_performance_status:0/any_event:0/ecog_performance_status|ordinal"]
        kps = treatment[f"{ROOT}/karnofsky_performance_status_kps_scale:0/any_point_in_time_event:0/"
                        "karnofsky_performance_status|ordinal"]
        assert kps in cat.KARNOFSKY_FOR_ECOG[ecog]
        palliative = p.summary["cTNM"]["m"] == "M1"
        assert treatment[f"{ROOT}/goal:0/goal_name"] == cat.PLAN_GOALS["palliative" if palliative else "curative"]
        for follow_up in (e.flat for e in p.events if e.kind == "follow_up"):
            assert follow_up[f"{ROOT}/medication_management:0/medication_item"] == p.summary["agents"][0]
            assert f"{ROOT}/ecog_performance_status:0/any_event:0/time" in follow_up


def test_the_plan_maps_to_a_care_plan_naming_the_orders_and_the_referral(patients):
    treatment = next(e for e in patients[0].events if e.kind == "treatment")
    comp = flat_format.to_canonical(treatment.flat, OPT, now=NOW)
    comp["uid"] = {"_type": "OBJECT_VERSION_ID", "value": "d3m00000-0000-4000-8000-000000000017::demo::1"}
    resources = to_fhir(comp, site="s", ehr_id="e", patient_ref="Patient/1").resources
    by_type: dict[str, list] = {}
    for r in resources:
        by_type.setdefault(r["resourceType"], []).append(r)
    [plan] = by_type["CarePlan"]
    named = [a["reference"]["reference"] for a in plan["activity"]]
    assert named == [f"{r['resourceType']}/{r['id']}" for r in by_type["MedicationRequest"] + by_type["ServiceRequest"]]
    assert plan["goal"] == [{"reference": f"Goal/{by_type['Goal'][0]['id']}"}]
    assert {"89247-1", "89243-0"} <= {c["code"] for r in by_type["Observation"] for c in r["code"].get("coding", [])}
    assert all(validate_fhir(r) == [] for r in resources)


def test_about_a_quarter_bring_an_allergy_that_maps_to_an_allergy_intolerance(patients):
    with_allergy = [p for p in patients if any(f"{ROOT}/adverse_reaction_risk:0/substance" in e.flat for e in p.events)]
    assert 0 < len(with_allergy) < len(patients)
    diagnosis = next(e for e in with_allergy[0].events if e.kind == "diagnosis")
    comp = flat_format.to_canonical(diagnosis.flat, OPT, now=NOW)
    comp["uid"] = {"_type": "OBJECT_VERSION_ID", "value": "a11e0000-0000-4000-8000-000000000017::demo::1"}
    [allergy] = [r for r in to_fhir(comp, site="s", ehr_id="e", patient_ref="Patient/1").resources
                 if r["resourceType"] == "AllergyIntolerance"]
    assert allergy["code"]["text"] in {a[0] for a in cat.ALLERGIES} and allergy["reaction"][0]["manifestation"]
    assert validate_fhir(allergy) == []


def test_breast_patients_without_metastases_complete_the_referred_radiotherapy_course(patients):
    """The first follow-up of a curative breast patient holds the course (mCODE radiotherapy course summary)."""
    curative = [p for p in patients if p.cancer == "breast" and p.summary["cTNM"]["m"] == "M0"]
    assert curative
    for p in patients:
        first = next(e.flat for e in p.events if e.kind == "follow_up")
        has = any("/irradiation:0/" in k for k in first)
        assert has == (p in curative)
    follow_up = next(e for e in curative[0].events if e.kind == "follow_up")
    comp = flat_format.to_canonical(follow_up.flat, OPT, now=NOW)
    comp["uid"] = {"_type": "OBJECT_VERSION_ID", "value": "d3m00000-0000-4000-8000-000000000018::demo::1"}
    [course] = [r for r in to_fhir(comp, site="s", ehr_id="e", patient_ref="Patient/1").resources
                if r["resourceType"] == "Procedure"]
    assert course["meta"]["profile"] == ["http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-radiotherapy-course-summary"]
    assert course["status"] == "completed" and set(course["performedPeriod"]) == {"start", "end"}
    dose = next(e for e in course["extension"] if e["url"].endswith("mcode-radiotherapy-dose-delivered-to-volume"))
    assert {s["url"]: s.get("valueQuantity", s.get("valueUnsignedInt")) for s in dose["extension"]
            if s["url"] != "volume"} == {"totalDoseDelivered": {"value": 4000, "unit": "cGy",
                                                                "system": "http://unitsofmeasure.org", "code": "cGy"},
                                         "fractionsDelivered": 15}
    assert validate_fhir(course) == []


def test_some_follow_ups_grade_a_toxicity_that_maps_to_an_adverse_event_of_the_dose(patients):
    """CLUSTER.ctcae.v1 in the toxicity's problem_diagnosis (template v2) -> an AdverseEvent naming the
    Condition and the administration of the same visit; the grade is the archetype's ordinal."""
    graded = [e for p in patients for e in p.events if e.kind == "follow_up"
              and any("/common_terminology_criteria_for_adverse_events_ctcae:0/" in k for k in e.flat)]
    follow_ups = [e for p in patients for e in p.events if e.kind == "follow_up"]
    assert 0 < len(graded) < len(follow_ups)
    assert all(not any("ctcae" in k for k in e.flat) for p in patients for e in p.events if e.kind != "follow_up")
    severity = {1: "mild", 2: "moderate", 3: "severe"}
    seen = set()
    for n, event in enumerate(graded[:6]):
        comp = flat_format.to_canonical(event.flat, OPT, now=NOW)
        comp["uid"] = {"_type": "OBJECT_VERSION_ID", "value": f"d3m00000-0000-4000-8000-0000000001{n:02d}::demo::1"}
        [entry] = [e for e in comp["content"] if e["archetype_node_id"] == "openEHR-EHR-EVALUATION.problem_diagnosis.v1"]
        [cluster] = [i for i in entry["data"]["items"] if i["archetype_node_id"] == "openEHR-EHR-CLUSTER.ctcae.v1"]
        grade = next(i["value"] for i in cluster["items"] if i["archetype_node_id"] == "at0003")
        assert grade["_type"] == "DV_ORDINAL" and grade["symbol"]["defining_code"]["code_string"] == cat.CTCAE_GRADES[grade["value"]]
        resources = to_fhir(comp, site="s", ehr_id="e", patient_ref="Patient/1").resources
        by_type = {r["resourceType"]: r for r in resources}
        ae, cond = by_type["AdverseEvent"], by_type["Condition"]
        done = [f"{r['resourceType']}/{r['id']}" for r in resources  # the dose given (and a radiotherapy course)
                if r["resourceType"] in ("MedicationAdministration", "Procedure")]
        assert ae["event"] == {"text": cond["code"]["text"]} and ae["event"]["text"] in {t for _, t in cat.TOXICITIES}
        assert ae["severity"]["coding"][0]["code"] == severity[grade["value"]]
        assert ae["resultingCondition"] == [{"reference": f"Condition/{cond['id']}"}]
        assert sorted(s["instance"]["reference"] for s in ae["suspectEntity"]) == sorted(done)
        assert any(d.startswith("MedicationAdministration/") for d in done)
        assert ae["date"] == cond["onsetDateTime"]
        assert all(validate_fhir(r) == [] for r in resources)
        seen.add(grade["value"])
    assert seen & {1, 2}


@pytest.mark.integration
@pytest.mark.slow
def test_a_graded_follow_up_commits_to_ehrbase_and_its_adverse_event_passes_hapi(patients, ehrbase_urls, fhir_base_url):
    """The v2 template on the site holds the CTCAE cluster: EHRbase takes the follow-up, gives the grade back as
    the ordinal written, and the AdverseEvent made from what it returns passes HAPI's $validate."""

    from tests.mapping.hapi import hapi_errors

    event = next(e for p in patients for e in p.events if e.kind == "follow_up"
                 and any("/common_terminology_criteria_for_adverse_events_ctcae:0/" in k for k in e.flat))
    ehr, comp = _stored(ehrbase_urls[0], event.flat, "SYNCTCAE")
    [entry] = [e for e in comp["content"] if e["archetype_node_id"] == "openEHR-EHR-EVALUATION.problem_diagnosis.v1"]
    [cluster] = [i for i in entry["data"]["items"] if i["archetype_node_id"] == "openEHR-EHR-CLUSTER.ctcae.v1"]
    grade = next(i["value"] for i in cluster["items"] if i["archetype_node_id"] == "at0003")
    key = f"{ROOT}/problem_diagnosis:0/common_terminology_criteria_for_adverse_events_ctcae:0/grade_category"
    assert (grade["_type"], grade["value"], grade["symbol"]["defining_code"]["code_string"]) == (
        "DV_ORDINAL", event.flat[f"{key}|ordinal"], event.flat[f"{key}|code"])
    resources = to_fhir(comp, site="s", ehr_id=ehr, patient_ref="Patient/1").resources
    [ae] = [r for r in resources if r["resourceType"] == "AdverseEvent"]
    assert ae["severity"]["coding"][0]["code"] == {1: "mild", 2: "moderate", 3: "severe"}[grade["value"]]
    assert hapi_errors(fhir_base_url, ae) == []


def test_prostate_patients_bring_the_biopsy_pathology_report_with_its_gleason_score(patients):
    """The Gleason score the histology names, as CLUSTER.gleason_score.v0 in a pathology report (template v2), maps
    to a Gleason score Observation (35266-6) with the patterns and the Grade Group answer as components."""
    prostate = [p for p in patients if p.cancer == "prostate"]
    assert prostate and len(prostate) < len(patients)
    for p in patients:
        diagnosis = next(e.flat for e in p.events if e.kind == "diagnosis")
        assert any("/gleason_score:0/" in k for k in diagnosis) == (p in prostate)
    p = prostate[0]
    expected = cat.gleason_of(p.summary["histology"])
    diagnosis = next(e for e in p.events if e.kind == "diagnosis")
    comp = flat_format.to_canonical(diagnosis.flat, OPT, now=NOW)
    comp["uid"] = {"_type": "OBJECT_VERSION_ID", "value": "d3m00000-0000-4000-8000-000000000019::demo::1"}
    resources = to_fhir(comp, site="s", ehr_id="e", patient_ref="Patient/1").resources
    [score] = [r for r in resources if r["resourceType"] == "Observation"
               and r["code"]["coding"][0]["code"] == "35266-6"]
    parts = {c["code"]["coding"][0]["code"]: c.get("valueInteger", c.get("valueCodeableConcept")) for c in score["component"]}
    assert score["valueInteger"] == expected["total_gleason_score"]
    assert (parts["44641-9"], parts["44642-7"]) == (expected["primary_gleason_grade"], expected["secondary_gleason_grade"])
    answers = ["LA30794-4", "LA30795-1", "LA30796-9", "LA30797-7", "LA30798-5"]
    assert parts["94734-1"]["coding"][0]["code"] == answers[expected["gleason_grade_group"] - 1]
    assert all(validate_fhir(r) == [] for r in resources)


@pytest.mark.integration
@pytest.mark.slow
def test_a_prostate_diagnosis_commits_to_ehrbase_and_its_gleason_observation_passes_hapi(patients, ehrbase_urls,
                                                                                        fhir_base_url):
    from tests.mapping.hapi import hapi_errors

    event = next(e for p in patients if p.cancer == "prostate" for e in p.events if e.kind == "diagnosis")
    ehr, comp = _stored(ehrbase_urls[0], event.flat, "SYNGLEASON")
    [score] = [r for r in to_fhir(comp, site="s", ehr_id=ehr, patient_ref="Patient/1").resources
               if r["resourceType"] == "Observation" and r["code"]["coding"][0]["code"] == "35266-6"]
    key = f"{ROOT}/laboratory_test_result:2/any_event:0/gleason_score:0/total_gleason_score"
    assert score["valueInteger"] == event.flat[key] and len(score["component"]) == 3
    assert hapi_errors(fhir_base_url, score) == []


def test_breast_and_colorectal_resections_count_the_lymph_nodes_as_their_pn_says(patients):
    """CLUSTER.lymph_node_metastases.v0 in the resection's pathology report: positive nodes within pN's range, never
    more than examined; mapped to the node count Observation (SNOMED CT 443527007) with the examined component."""
    counted = 0
    for p in patients:
        surgery = next((e.flat for e in p.events if e.kind == "surgery"), None)
        keys = [k for k in surgery or {} if "/lymph_node_metastases:0/" in k]
        if surgery is None or p.cancer not in cat.NODE_COUNTS:
            assert not keys
            continue
        base = next(k for k in keys if k.endswith("/number_of_nodes_with_tumour")).rsplit("/", 1)[0]
        positive, examined = surgery[f"{base}/number_of_nodes_with_tumour"], surgery[f"{base}/number_of_nodes_examined"]
        low, high = cat.POSITIVE_NODES[p.summary["pTNM"]["n"]]
        assert low <= positive <= high and positive <= examined
        counted += 1
    assert counted
    p = next(p for p in patients if p.cancer in cat.NODE_COUNTS and any(e.kind == "surgery" for e in p.events))
    surgery = next(e for e in p.events if e.kind == "surgery")
    comp = flat_format.to_canonical(surgery.flat, OPT, now=NOW)
    comp["uid"] = {"_type": "OBJECT_VERSION_ID", "value": "d3m00000-0000-4000-8000-000000000020::demo::1"}
    resources = to_fhir(comp, site="s", ehr_id="e", patient_ref="Patient/1").resources
    [obs] = [r for r in resources if r["resourceType"] == "Observation" and r["code"]["coding"][0]["code"] == "443527007"]
    assert obs["bodySite"]["text"] == cat.NODE_COUNTS[p.cancer][0]
    assert obs["component"][0]["code"]["coding"][0]["code"] == "444025001"
    assert all(validate_fhir(r) == [] for r in resources)


@pytest.mark.integration
@pytest.mark.slow
def test_a_resection_with_its_node_counts_commits_to_ehrbase_and_passes_hapi(patients, ehrbase_urls, fhir_base_url):
    from tests.mapping.hapi import hapi_errors

    event = next(e for p in patients if p.cancer in cat.NODE_COUNTS for e in p.events if e.kind == "surgery")
    ehr, comp = _stored(ehrbase_urls[0], event.flat, "SYNNODES")
    [obs] = [r for r in to_fhir(comp, site="s", ehr_id=ehr, patient_ref="Patient/1").resources
             if r["resourceType"] == "Observation" and r["code"]["coding"][0]["code"] == "443527007"]
    positive = next(v for k, v in event.flat.items() if k.endswith("/lymph_node_metastases:0/number_of_nodes_with_tumour"))
    assert obs["valueInteger"] == positive
    assert hapi_errors(fhir_base_url, obs) == []


def test_lung_adenocarcinomas_bring_the_egfr_result_their_histology_names(patients):
    """CLUSTER.genetic_variant_presence.v0 in a molecular report -> an mCODE genomic variant Observation (69548-6)
    with the LL1971-2 answer (Present LA9633-4 / Absent LA9634-2) and the variant's name."""
    tested = [p for p in patients if cat.egfr_finding_of(p.summary["histology"]) is not None]
    assert tested and all(p.cancer == "lung" for p in tested)
    for p in patients:
        diagnosis = next(e.flat for e in p.events if e.kind == "diagnosis")
        assert any("/genetic_variant_presence:0/" in k for k in diagnosis) == (p in tested)
    answers = {True: "LA9633-4", False: "LA9634-2"}
    for p in tested[:3]:
        diagnosis = next(e for e in p.events if e.kind == "diagnosis")
        comp = flat_format.to_canonical(diagnosis.flat, OPT, now=NOW)
        comp["uid"] = {"_type": "OBJECT_VERSION_ID", "value": "d3m00000-0000-4000-8000-000000000021::demo::1"}
        [variant] = [r for r in to_fhir(comp, site="s", ehr_id="e", patient_ref="Patient/1").resources
                     if r["resourceType"] == "Observation" and r["code"]["coding"][0]["code"] == "69548-6"]
        assert variant["valueCodeableConcept"]["coding"][0]["code"] == answers[cat.egfr_finding_of(p.summary["histology"])]
        assert variant["component"][0]["valueCodeableConcept"]["text"] == cat.EGFR_VARIANT
        assert validate_fhir(variant) == []


@pytest.mark.integration
@pytest.mark.slow
def test_a_lung_diagnosis_with_its_egfr_result_commits_to_ehrbase(patients, ehrbase_urls):
    """(HAPI's check of the genomic variant profile is the genomics row's own test: the LL1971-2 binding is the one
    environment error named there.)"""

    p = next(p for p in patients if cat.egfr_finding_of(p.summary["histology"]) is not None)
    event = next(e for e in p.events if e.kind == "diagnosis")
    ehr, comp = _stored(ehrbase_urls[0], event.flat, "SYNEGFR")
    [variant] = [r for r in to_fhir(comp, site="s", ehr_id=ehr, patient_ref="Patient/1").resources
                 if r["resourceType"] == "Observation" and r["code"]["coding"][0]["code"] == "69548-6"]
    found = cat.egfr_finding_of(p.summary["histology"])
    assert variant["valueCodeableConcept"]["coding"][0]["code"] == {True: "LA9633-4", False: "LA9634-2"}[found]


def test_the_board_schedules_its_plan_and_the_care_plan_keeps_the_step(patients, ehrbase_urls, fhir_base_url):
    """ACTION.care_plan.v0 'Care Plan Scheduled' beside the plan: committed to EHRbase under v2, it is the status
    (active) and careflow step of the plan's CarePlan, no CarePlan of its own, and HAPI validates it."""

    import httpx

    from tests.mapping.hapi import hapi_errors

    for p in patients:
        [treatment] = [e.flat for e in p.events if e.kind == "treatment"]
        assert treatment[f"{ROOT}/care_plan:0/ism_transition/careflow_step|code"] == "at0018"
        assert treatment[f"{ROOT}/care_plan:0/time"] == treatment[f"{ROOT}/care_plan_request:0/activity/date_of_onset"]
        assert not [e for e in p.events if e.kind != "treatment" and f"{ROOT}/care_plan:0/time" in e.flat]
    event = next(e for e in patients[0].events if e.kind == "treatment")
    ehr, comp = _stored(ehrbase_urls[0], event.flat, "SYNPLAN")
    [plan] = [r for r in to_fhir(comp, site="s", ehr_id=ehr, patient_ref="Patient/1").resources
              if r["resourceType"] == "CarePlan"]
    [ism] = [e for e in plan["extension"] if e["url"].endswith("/openehr-ism-transition")]
    assert plan["status"] == "active"
    assert {x["url"]: x["valueCoding"]["code"] for x in ism["extension"]} == {"currentState": "529",
                                                                               "careflowStep": "at0018"}
    sd = json.loads((REPO_DIR / "sync/mapping/extensions/openehr-ism-transition.json").read_text(encoding="utf-8"))
    httpx.put(f"{fhir_base_url}/StructureDefinition/{sd['id']}", json=sd, timeout=60,
              headers={"Content-Type": "application/fhir+json"}).raise_for_status()
    assert hapi_errors(fhir_base_url, plan) == []


def test_every_resection_states_its_margins_as_r_says_and_a_colorectal_one_its_invasion_as_pt_says(patients):
    """CLUSTER.tumour_resection_margins.v0 in the resection's pathology report: Absent at R0, Present at R1; for
    colorectal cancer CLUSTER.tumour_invasion.v0 of the pericolorectal tissues: Present from pT3 (UICC/AJCC 8th).
    Mapped to the surgical margin (396631001) and invasion status (370052007) Observations, and the report's
    microscopic examination to its narrative Observation (22635-7), locally valid."""
    seen = {"R0": 0, "R1": 0, "invaded": 0, "confined": 0}
    for p in patients:
        surgery = next((e.flat for e in p.events if e.kind == "surgery"), None)
        if surgery is None:
            continue
        pathological = p.summary["pTNM"]
        involvement = [v for k, v in surgery.items()
                       if k.endswith("/surgical_resection_margins:0/marginal_involvement|value")]
        if p.cancer not in cat.MARGIN_NAMES:  # ovarian: R is the debulking's residual disease, no margin
            assert not involvement
            continue
        assert involvement == ["Present" if pathological["r"] == "R1" else "Absent"]
        seen[pathological["r"]] += 1
        invasion = [v for k, v in surgery.items() if k.endswith("/tumour_-_direct_invasion:0/direct_invasion|value")]
        if p.cancer not in cat.INVASION:
            assert not invasion
            continue
        assert invasion == ["Present" if pathological["t"] in ("pT3", "pT4a") else "Absent"]
        seen["invaded" if invasion == ["Present"] else "confined"] += 1
    assert seen["R0"] and seen["invaded"]
    p = next(p for p in patients if p.cancer in cat.INVASION and any(e.kind == "surgery" for e in p.events))
    surgery = next(e for e in p.events if e.kind == "surgery")
    comp = flat_format.to_canonical(surgery.flat, OPT, now=NOW)
    comp["uid"] = {"_type": "OBJECT_VERSION_ID", "value": "d3m00000-0000-4000-8000-000000000021::demo::1"}
    resources = to_fhir(comp, site="s", ehr_id="e", patient_ref="Patient/1").resources
    [margin] = [r for r in resources if r["resourceType"] == "Observation"
                and r["code"]["coding"][0]["code"] == "396631001"]
    assert margin["bodySite"]["text"] == cat.MARGIN_NAMES[p.cancer]
    [invasion] = [r for r in resources if r["resourceType"] == "Observation"
                  and r["code"]["coding"][0]["code"] == "370052007"]
    assert invasion["bodySite"]["text"] == cat.INVASION[p.cancer][0]
    [micro] = [r for r in resources if r["resourceType"] == "Observation"
               and r["code"]["coding"][0]["code"] == "22635-7"]  # the microscopic examination, in words
    assert micro["component"] == [{"code": {"text": "Tumour"}, "valueString": p.summary["histology"]}]
    assert p.summary["pTNM"]["t"] in micro["valueString"]
    assert all(validate_fhir(r) == [] for r in resources)


@pytest.mark.integration
@pytest.mark.slow
def test_a_colorectal_resection_with_margins_and_invasion_commits_to_ehrbase_and_passes_hapi(patients, ehrbase_urls,
                                                                                              fhir_base_url):
    from tests.mapping.hapi import hapi_errors

    event = next(e for p in patients if p.cancer in cat.INVASION for e in p.events if e.kind == "surgery")
    ehr, comp = _stored(ehrbase_urls[0], event.flat, "SYNMARGIN")
    found = [r for r in to_fhir(comp, site="s", ehr_id=ehr, patient_ref="Patient/1").resources
             if r["resourceType"] == "Observation"
             and r["code"]["coding"][0]["code"] in ("396631001", "370052007", "22635-7")]
    assert sorted(r["code"]["coding"][0]["code"] for r in found) == ["22635-7", "370052007", "396631001"]
    for r in found:
        assert hapi_errors(fhir_base_url, r) == []


def _figo(resources):
    return [r for r in resources if r["resourceType"] == "Observation" and r["code"]["coding"][0]["code"] == "385361009"]


def test_an_ovarian_resection_states_its_figo_stage_as_its_pathological_stage_group(patients):
    """Ovarian cancer is staged surgically: the resection's pathology report carries CLUSTER.figo_staging_cancer.v1
    with the pathological stage group (UICC 8th = FIGO 2014), the ovary / tube / peritoneum criteria and the version;
    mapped, an mCODE cancer stage Observation with the NCIt FIGO stage code and the general FIGO system as method.
    No other cancer gets one, and every ovarian patient is a woman's story (no prostate, no margins)."""
    operated = [p for p in patients if p.cancer == "ovary" and any(e.kind == "surgery" for e in p.events)]
    assert operated, "the sample has no operated ovarian cancer"
    for p in patients:
        surgery = next((e.flat for e in p.events if e.kind == "surgery"), {})
        stage = [v for k, v in surgery.items() if k.endswith("/figo_staging_of_gynaecological_cancer:0/figo_stage")]
        assert stage == ([p.summary["pTNM"]["stage"]] if p.cancer == "ovary" and surgery else [])
    p = operated[0]
    surgery = next(e for e in p.events if e.kind == "surgery")
    comp = flat_format.to_canonical(surgery.flat, OPT, now=NOW)
    comp["uid"] = {"_type": "OBJECT_VERSION_ID", "value": "d3m00000-0000-4000-8000-000000000022::demo::1"}
    resources = to_fhir(comp, site="s", ehr_id="e", patient_ref="Patient/1").resources
    [figo] = _figo(resources)
    stage = p.summary["pTNM"]["stage"]
    assert figo["valueCodeableConcept"]["text"] == stage
    assert figo["valueCodeableConcept"]["coding"][0]["display"] == f"FIGO Stage {stage}"
    assert figo["method"]["text"] == "Ovary, fallopian tube, and peritoneum"
    assert figo["method"]["coding"][0]["code"] == "254383006"
    assert all(validate_fhir(r) == [] for r in resources)


def test_a_registered_person_gets_a_cancer_of_their_sex():
    from sync.demo.generator import generate_patient

    women = {generate_patient(5, f"W-{i}", sex="female").cancer for i in range(60)}
    men = {generate_patient(5, f"M-{i}", sex="male").cancer for i in range(60)}
    assert "ovary" in women and "prostate" not in women
    assert "prostate" in men and "ovary" not in men


@pytest.mark.integration
@pytest.mark.slow
def test_an_ovarian_resection_with_its_figo_stage_commits_to_ehrbase_and_passes_hapi(patients, ehrbase_urls,
                                                                                     fhir_base_url):
    from tests.mapping.hapi import hapi_errors

    p = next(p for p in patients if p.cancer == "ovary" and any(e.kind == "surgery" for e in p.events))
    event = next(e for e in p.events if e.kind == "surgery")
    ehr, comp = _stored(ehrbase_urls[0], event.flat, "SYNFIGO")
    [figo] = _figo(to_fhir(comp, site="s", ehr_id=ehr, patient_ref="Patient/1").resources)
    assert figo["valueCodeableConcept"]["text"] == p.summary["pTNM"]["stage"]
    assert hapi_errors(fhir_base_url, figo) == []
