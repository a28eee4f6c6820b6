"""Two compositions of one patient at a demographics site, synced at once: the run whose detect came before the
other run registered the EHR takes that registration's link (sync/workflow/patients.registration_step).  Before,
it went on with no patient: its resources reached HAPI without a subject and its RecordLink failed (the demo's
dead letter of 2026-12-06)."""
from types import SimpleNamespace

import pytest

from sync.models import PatientLink, Site, Step
from sync.workflow import forward, patients


@pytest.fixture
def site(db):
    return Site.objects.create(name="race1", openehr_base_url="http://127.0.0.1:9/ehrbase",
                               demographics_source=Site.Demographics.EHR_STATUS, local_demo=True)


def _ctx(site, **cp):
    services = SimpleNamespace(fhir=None, openehr=lambda s: None)
    return SimpleNamespace(cp=SimpleNamespace(ehr_id="ehr-1", patient_ref=None, patient_link_id=None, **cp),
                           services=services, run=SimpleNamespace(site=site))


def test_a_run_detected_before_the_ehr_was_registered_takes_the_other_runs_link(site, monkeypatch):
    link = PatientLink.objects.create(site=site, ehr_id="ehr-1", subject_id="S-1", subject_namespace="ns",
                                      fhir_patient_id="p-1", demographics_version="v1")
    monkeypatch.setattr(patients, "registration", lambda *a, known_version, **k: {
        "written": False, "fhir_patient_id": None} if known_version == "v1" else pytest.fail("re-registered"))
    ctx = _ctx(site)
    result = patients.registration_step(ctx, site)
    assert result.next_step == Step.TRANSFORM and result.checkpoint == {"patient_ref": "Patient/p-1"}
    result.effects(None)
    assert ctx.cp.patient_link_id == link.pk


def test_a_run_with_its_patient_goes_on_unchanged(site, monkeypatch):
    PatientLink.objects.create(site=site, ehr_id="ehr-1", subject_id="S-1", subject_namespace="ns",
                               fhir_patient_id="p-1", demographics_version="v1")
    monkeypatch.setattr(patients, "registration", lambda *a, **k: {"written": False, "fhir_patient_id": None})
    ctx = _ctx(site)
    ctx.cp.patient_ref = "Patient/p-1"
    result = patients.registration_step(ctx, site)
    assert result.next_step == Step.TRANSFORM and not result.checkpoint and result.effects is None


def test_nothing_is_mapped_without_a_patient():
    ctx = SimpleNamespace(cp=SimpleNamespace(source_payload={"_type": "COMPOSITION"}, patient_ref=None))
    with pytest.raises(RuntimeError):
        forward.transform(ctx)
