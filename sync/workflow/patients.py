"""Match a site's EHR to the central Patient, creating the Patient when missing.

A site without demographics: the match key is the EHR's subject (EHR_STATUS
``subject.external_ref``), which every site holding the patient shares; an EHR
without a subject falls back to an identifier of its own (``site|ehr_id``).
Conditional create makes a repeated or concurrent attempt land on the same Patient.

A site with demographics (``Site.demographics_source``): one central Patient per
site registration (its MRN), with name, birth date and sex; HAPI's MDM links the
registrations of one person (``sync.patients``).
"""
from __future__ import annotations

from django.utils import timezone

from sync.clients.errors import NotFound, PreconditionFailed
from sync.identity import ehr_identifier, subject_identifier
from sync.models import PatientLink, Step
from sync.patients.registration import as_model_values, registration

from .result import StepResult


def ehr_subject(openehr, ehr_id: str) -> tuple[str, str] | None:
    """(subject id, namespace) from EHR_STATUS, or None when the EHR has none."""
    # The client has no EHR_STATUS helper yet; one GET through its session.
    try:
        status = openehr.http.request("GET", f"ehr/{ehr_id}/ehr_status").json()
    except NotFound:
        return None
    ref = ((status.get("subject") or {}).get("external_ref")) or {}
    subject_id = (ref.get("id") or {}).get("value")
    if not subject_id or not ref.get("namespace"):
        return None
    return subject_id, ref["namespace"]


def ensure_central_patient(fhir, openehr, site_name: str, ehr_id: str) -> dict:
    """The central Patient for this EHR: its id and the subject it was matched by."""
    subject = ehr_subject(openehr, ehr_id)
    identifiers = [ehr_identifier(site_name, ehr_id)]
    if subject:
        identifiers.insert(0, subject_identifier(*subject))
    match = identifiers[0]
    written = _create_once(fhir, identifiers, f"{match['system']}|{match['value']}")
    return {
        "fhir_patient_id": written.id,
        "subject_id": subject[0] if subject else "",
        "subject_namespace": subject[1] if subject else "",
    }


def _create_once(fhir, identifiers: list[dict], criteria: str, attempts: int = 3):
    """Conditional create that survives a race: when two runs for one new EHR
    create the Patient at once, HAPI answers the loser 409; repeating the same
    conditional create then finds the Patient the winner made."""
    for attempt in range(1, attempts + 1):
        try:
            return fhir.create(
                {"resourceType": "Patient", "active": True, "identifier": identifiers},
                if_none_exist={"identifier": criteria},
            )
        except PreconditionFailed:
            if attempt == attempts:
                raise


def registration_step(ctx, site) -> StepResult | None:
    """For a site with demographics: its registration's central Patient, rewritten when the
    EHR_STATUS moved, and the PatientLink's demographics cache with it.

    One EHR_STATUS read per run; the Patient is written only when its version differs from the
    one the link was built from. None when the EHR_STATUS names no subject: the caller falls back
    to the EHR-only Patient. The audit detail says that demographics were written, never which.
    """
    cp = ctx.cp
    link = PatientLink.objects.filter(site=site, ehr_id=cp.ehr_id).first()
    found = registration(ctx.services.fhir, ctx.services.openehr(site), site, cp.ehr_id,
                         known_version=link.demographics_version if link else "")
    if found is None:
        return None
    if not found["written"]:
        if cp.patient_ref:
            return StepResult(next_step=Step.TRANSFORM)
        # Registered by another run of the same EHR since this run's detect (two compositions of one patient at
        # once): its link is this run's too.  Going on without it mapped the composition with no subject, wrote
        # the resources so and then failed on the RecordLink (the demo's dead letter of 2026-12-06).
        linked = f"Patient/{link.fhir_patient_id}"

        def take_link(run):
            cp.patient_link_id = link.pk

        return StepResult(next_step=Step.TRANSFORM, effects=take_link, checkpoint={"patient_ref": linked})
    ref = f"Patient/{found['fhir_patient_id']}"

    def effects(run):
        values = {"subject_id": found["subject_id"], "subject_namespace": found["subject_namespace"],
                  "fhir_patient_id": found["fhir_patient_id"], **as_model_values(found["cache"]),
                  "demographics_synced_at": timezone.now()}
        cp.patient_link_id = PatientLink.objects.update_or_create(site=site, ehr_id=cp.ehr_id, defaults=values)[0].pk

    return StepResult(next_step=Step.TRANSFORM, effects=effects, checkpoint={"patient_ref": ref},
                      audit={"detail": {"demographics": "written" if link else "registered"}})
