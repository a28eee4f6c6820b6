"""Match a site's EHR to the central Patient, creating the Patient when missing.

The match key is the EHR's subject (EHR_STATUS ``subject.external_ref``),
which every site holding the patient shares; an EHR without a subject falls
back to an identifier of its own (``site|ehr_id``). Conditional create makes
a repeated or concurrent attempt land on the same Patient.
"""
from __future__ import annotations

from sync.clients.errors import NotFound, PreconditionFailed
from sync.identity import ehr_identifier, subject_identifier


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
