"""A site registration's central Patient: written from the site's EHR_STATUS (or its FHIR
demographic service) when the demographics' version moved.

One central Patient per site registration, identified by the site's MRN system and value
(conditional update on that identifier: a repeated or concurrent write lands on the same
Patient), so no other site ever edits it. HAPI's MDM then links it to the person's golden
Patient. The returned ``cache`` is what PatientLink keeps for the desk.
"""
from __future__ import annotations

from datetime import date

from sync.clients.errors import PreconditionFailed
from sync.identity import ehr_identifier

from . import ehr_status, fhir_source
from .demographics import Demographics, from_ehr_status, to_patient

FHIR_SOURCE = "fhir"  # Site.Demographics.FHIR (this module stays free of the models)


def registration(fhir, openehr, site, ehr_id: str, *, known_version: str = "") -> dict | None:
    """The site Patient of the EHR, its demographics written centrally when the EHR_STATUS moved.

    None when the EHR_STATUS names no subject (the caller falls back to an EHR-only Patient).
    ``written`` is False when ``known_version`` is still the EHR_STATUS version (nothing sent).
    """
    status = ehr_status.read(openehr, ehr_id)
    found = from_ehr_status(status, mrn_system=site.mrn_system, fields=site.demographics_fields) if status else None
    if found is None:
        return None
    if site.demographics_source == FHIR_SOURCE:  # the MRN from the EHR, the rest from the site's service
        with fhir_source.client_for(site) as service:
            found = fhir_source.lookup(service, found.mrn_system, found.mrn) or Demographics(
                mrn_system=found.mrn_system, mrn=found.mrn, version="fhir:none")
    out = {"subject_id": found.mrn, "subject_namespace": found.mrn_system, "cache": cache_fields(found),
           "written": False, "fhir_patient_id": None}
    if known_version and found.version == known_version:
        return out
    patient = to_patient(found, [ehr_identifier(site.name, ehr_id)])
    written = _put_once(fhir, patient, f"{found.mrn_system}|{found.mrn}")
    return {**out, "fhir_patient_id": written.id, "written": True}


def cache_fields(d: Demographics) -> dict:
    """PatientLink's demographics cache (JSON-safe: the birth date as ISO text)."""
    return {
        "family_name": d.family,
        "given_names": " ".join(d.given),
        "birth_date": d.birth_date or None,
        "sex": d.sex,
        "demographics_version": d.version,
    }


def as_model_values(cache: dict) -> dict:
    """The cache as model field values (birth date parsed)."""
    birth = cache.get("birth_date")
    return {**cache, "birth_date": date.fromisoformat(birth) if birth else None}


def _put_once(fhir, patient: dict, identifier: str, attempts: int = 3):
    """Conditional update that survives a race: two first runs of one EHR both create; HAPI
    answers the loser 409 and the repeat finds the winner's Patient."""
    for attempt in range(1, attempts + 1):
        try:
            return fhir.conditional_update(patient, {"identifier": identifier})
        except PreconditionFailed:
            if attempt == attempts:
                raise
