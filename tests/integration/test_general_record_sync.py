"""The general record (issue 18) through the engine: a composition of the general template committed at a real
EHRbase site reaches HAPI as the new resource types, each naming the patient where its type does (``subject``, or
``patient`` for EpisodeOfCare, Immunization, FamilyMemberHistory, Consent), and a second poll finds nothing to do.  Runs
are driven in this process with ``advance`` (no worker), every server real, a fresh EHR per test."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from sync.clients.openehr import OpenEHRClient
from sync.demo import general
from sync.detection import poll_site
from sync.models import RecordLink, SyncRun
from sync.workflow.runner import advance

pytestmark = [pytest.mark.integration]

VISIT = datetime(2025, 2, 3, 9, 0, tzinfo=timezone(timedelta(hours=1)))
PATIENT_ELEMENT = {"EpisodeOfCare": "patient", "Immunization": "patient", "FamilyMemberHistory": "patient",
                   "Consent": "patient"}
# a Medication names no patient: its statement does


def _now():
    return datetime.now(timezone.utc)


@pytest.fixture
def cdr(ehrbase_urls):
    with OpenEHRClient(ehrbase_urls[0]) as client:
        client.upload_template(general.OPT_PATH.read_bytes())
        yield client


def drive_all(site, ehr) -> list[str]:
    """Detect at the site and run this EHR's open runs to their end (the CDR is shared: only ours)."""
    poll_site(site)
    runs = SyncRun.objects.filter(change_event__ehr_id=ehr).exclude(status__in=["done", "dead_letter", "conflict"])
    return [advance(run.pk, "test") for run in runs.order_by("pk")]


def test_a_general_record_reaches_the_centre_as_its_resource_types(cdr, fhir, site):
    subject = f"pat-{uuid.uuid4()}"
    ehr = cdr.create_ehr(subject_id=subject, subject_namespace="conflictdesk-test").ehr_id
    ref = cdr.create_composition(ehr, general.general_composition(2024, subject, VISIT))
    assert drive_all(site, ehr) == ["done"]
    link = RecordLink.objects.get(versioned_object_uid=ref.uid)
    stored = [fhir.read(r["type"], r["id"]) for r in link.fhir_resources]
    types = {r["resourceType"] for r in stored}
    assert {"Observation", "ClinicalImpression", "DiagnosticReport", "EpisodeOfCare", "Immunization",
            "FamilyMemberHistory", "MedicationStatement", "Medication", "Consent", "ImagingStudy"} <= types
    [report], [study] = [[r for r in stored if r["resourceType"] == t] for t in ("DiagnosticReport", "ImagingStudy")]
    assert report["imagingStudy"] == [{"reference": f"ImagingStudy/{study['id']}"}]  # the study the site identified
    assert sorted(r["status"] for r in stored if r["resourceType"] == "Consent") == ["active", "draft"]
    [statement], [medication] = [[r for r in stored if r["resourceType"] == t] for t in ("MedicationStatement",
                                                                                       "Medication")]
    assert statement["medicationReference"]["reference"] == f"Medication/{medication['id']}"
    patients = {(r.get(PATIENT_ELEMENT.get(r["resourceType"], "subject")) or {}).get("reference")
                for r in stored if r["resourceType"] not in ("Composition", "Encounter", "Medication")}
    assert len(patients) == 1 and next(iter(patients)).startswith("Patient/")
    assert not [r for r in stored if r["resourceType"] in PATIENT_ELEMENT and "subject" in r]
    assert drive_all(site, ehr) == []  # synced: nothing new, nothing echoed
