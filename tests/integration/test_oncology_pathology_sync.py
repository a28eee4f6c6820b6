"""Issue 17's pathology and toxicity rows through the engine: demo compositions of the oncology template v2
committed at a real EHRbase site (a prostate diagnosis with the biopsy's Gleason score, a breast or colorectal
resection with its lymph node counts, a follow-up grading a toxicity by CTCAE) reach HAPI as the Gleason score
Observation (35266-6) with its pattern and grade-group components, the node count Observation (SNOMED CT 443527007)
and the AdverseEvent naming its Condition, each naming the patient; a second poll finds nothing to do.  Runs are
driven in this process with ``advance`` (no worker), every server real, a fresh EHR per composition."""
from __future__ import annotations

import uuid

import pytest

from sync.clients.openehr import OpenEHRClient
from sync.demo import catalogue as cat
from sync.demo.flat import TEMPLATE_ID
from sync.demo.generator import generate_patients
from sync.detection import poll_site
from sync.models import RecordLink, SyncRun
from sync.workflow.runner import advance
from tests.fixtures import REPO_DIR

pytestmark = [pytest.mark.integration]

OPT = REPO_DIR / "deploy/templates/conflictdesk_oncology.v2.opt"
GRADE_CODE = "common_terminology_criteria_for_adverse_events_ctcae:0/grade_category|ordinal"


@pytest.fixture(scope="module")
def patients():
    return generate_patients(30, seed=17)


@pytest.fixture
def cdr(ehrbase_urls):
    with OpenEHRClient(ehrbase_urls[0]) as client:
        client.upload_template(OPT.read_bytes())
        yield client


def drive_all(site, ehr) -> list[str]:
    poll_site(site)
    runs = SyncRun.objects.filter(change_event__ehr_id=ehr).exclude(status__in=["done", "dead_letter", "conflict"])
    return [advance(run.pk, "test") for run in runs.order_by("pk")]


def synced(cdr, fhir, site, flat) -> list[dict]:
    """Commit one FLAT composition to a new EHR, drive its run, read back what HAPI holds for its record."""
    ehr = cdr.create_ehr(subject_id=f"pat-{uuid.uuid4()}", subject_namespace="conflictdesk-test").ehr_id
    ref = cdr.create_composition(ehr, flat, template_id=TEMPLATE_ID)
    assert drive_all(site, ehr) == ["done"]
    stored = [fhir.read(r["type"], r["id"]) for r in RecordLink.objects.get(versioned_object_uid=ref.uid).fhir_resources]
    assert drive_all(site, ehr) == []  # synced: nothing new, nothing echoed
    subjects = {(r.get("patient" if r["resourceType"] == "AllergyIntolerance" else "subject") or {}).get("reference")
                for r in stored}
    assert len(subjects) == 1 and next(iter(subjects)).startswith("Patient/"), \
        [r["resourceType"] for r in stored if not (r.get("subject") or r.get("patient"))]
    return stored


def _coded(stored, code):
    return [r for r in stored if r["resourceType"] == "Observation" and r["code"]["coding"][0]["code"] == code]


def test_a_prostate_biopsy_gleason_score_reaches_the_centre(cdr, fhir, site, patients):
    p = next(p for p in patients if p.cancer == "prostate")
    diagnosis = next(e for e in p.events if e.kind == "diagnosis")
    [score] = _coded(synced(cdr, fhir, site, diagnosis.flat), "35266-6")
    expected = cat.gleason_of(p.summary["histology"])
    parts = {c["code"]["coding"][0]["code"]: c.get("valueInteger", c.get("valueCodeableConcept")) for c in score["component"]}
    assert score["valueInteger"] == expected["total_gleason_score"]
    assert (parts["44641-9"], parts["44642-7"]) == (expected["primary_gleason_grade"], expected["secondary_gleason_grade"])
    assert parts["94734-1"]["coding"][0]["code"].startswith("LA3079")


def test_a_resection_lymph_node_count_reaches_the_centre(cdr, fhir, site, patients):
    p = next(p for p in patients if p.cancer in cat.NODE_COUNTS and any(e.kind == "surgery" for e in p.events))
    surgery = next(e for e in p.events if e.kind == "surgery")
    [nodes] = _coded(synced(cdr, fhir, site, surgery.flat), "443527007")
    positive = next(v for k, v in surgery.flat.items() if k.endswith("/lymph_node_metastases:0/number_of_nodes_with_tumour"))
    assert nodes["valueInteger"] == positive and nodes["bodySite"]["text"] == cat.NODE_COUNTS[p.cancer][0]


def test_a_graded_toxicity_reaches_the_centre_as_an_adverse_event_of_its_condition(cdr, fhir, site, patients):
    event = next(e for p in patients for e in p.events if e.kind == "follow_up"
                 and any(k.endswith(GRADE_CODE) for k in e.flat))
    stored = synced(cdr, fhir, site, event.flat)
    [ae] = [r for r in stored if r["resourceType"] == "AdverseEvent"]
    [cond] = [r for r in stored if r["resourceType"] == "Condition"]
    grade = next(v for k, v in event.flat.items() if k.endswith(GRADE_CODE))
    assert ae["severity"]["coding"][0]["code"] == {1: "mild", 2: "moderate", 3: "severe"}[grade]
    assert ae["resultingCondition"] == [{"reference": f"Condition/{cond['id']}"}]
    assert {"reference": f"AdverseEvent/{ae['id']}"} in cond["evidence"][0]["detail"]


def test_a_colorectal_resection_margin_and_invasion_reach_the_centre(cdr, fhir, site, patients):
    p = next(p for p in patients if p.cancer in cat.INVASION and any(e.kind == "surgery" for e in p.events))
    surgery = next(e for e in p.events if e.kind == "surgery")
    stored = synced(cdr, fhir, site, surgery.flat)
    [margin] = _coded(stored, "396631001")
    [invasion] = _coded(stored, "370052007")
    pathological = p.summary["pTNM"]
    assert margin["bodySite"]["text"] == cat.MARGIN_NAMES[p.cancer]
    assert margin["component"][0]["valueCodeableConcept"]["text"] == ("Present" if pathological["r"] == "R1"
                                                                       else "Absent")
    assert invasion["valueCodeableConcept"]["text"] == ("Present" if pathological["t"] in cat.INVASION[p.cancer][1]
                                                        else "Absent")
    [report] = [r for r in stored if r["resourceType"] == "DiagnosticReport"]
    assert {"reference": f"Observation/{margin['id']}"} in report["result"]
