"""Which sites a central resource about a patient goes to.

A resource on a site registration's own Patient goes to that site (its PatientLinks). A resource
on a golden Patient (made by HAPI's MDM) goes to every site holding a registration MATCHed to it,
and to no other: a POSSIBLE_MATCH is not the person until a steward says so, and a rejected match
(NO_MATCH) keeps the records apart. The links are read from HAPI at routing time, so a steward's
merge or split re-routes the next central change without any copy here going stale.
"""
from __future__ import annotations

from sync.clients.errors import NotFound
from sync.clients.mdm import MdmClient
from sync.models import PatientLink


def still_routed(fhir, patient_id: str, records: list) -> list:
    """The RecordLinks of a resource on a golden Patient whose registration the golden record still reaches.

    A steward's "different people" (NO_MATCH) after delivery leaves the delivered copy at that site as it
    is (never silently removed) and sends it no later version: nothing more routes across. A resource on
    a site's own Patient (or on none) keeps all its records.
    """
    if not patient_id or PatientLink.objects.filter(fhir_patient_id=patient_id).exists():
        return records
    if not _is_golden(fhir, patient_id):
        # Not a golden record either (a subject changed to a Patient no site holds): routing keeps the
        # records, so the change is checked and refused downstream like any other, never dropped here.
        return records
    reached = {link.pk for link in links_for(fhir, patient_id)}
    return [record for record in records if record.patient_link_id in reached]


def _is_golden(fhir, patient_id: str) -> bool:
    try:
        return any(MdmClient(fhir).links(golden=f"Patient/{patient_id}"))
    except NotFound:  # HAPI: "Resource Patient/<id> is not known"
        return False


def newly_linked(fhir, patient_id: str, held: set[int]) -> list[PatientLink]:
    """Site EHRs a golden Patient reaches now that hold no record of the resource yet (``held``: the
    PatientLink ids that do): a steward linked them after the record was first delivered. A resource on
    a site's own Patient gains none: its record stays where it is."""
    if not patient_id or PatientLink.objects.filter(fhir_patient_id=patient_id).exists():
        return []
    return [link for link in links_for(fhir, patient_id) if link.pk not in held]


def links_for(fhir, patient_id: str) -> list[PatientLink]:
    """The PatientLinks (site EHRs) a resource whose subject is ``Patient/<patient_id>`` reaches."""
    if not patient_id:
        return []
    own = list(PatientLink.objects.select_related("site").filter(fhir_patient_id=patient_id))
    if own:
        return own
    sources = [ref.split("/", 1)[1] for ref in MdmClient(fhir).sources_of(f"Patient/{patient_id}")]
    return list(PatientLink.objects.select_related("site").filter(fhir_patient_id__in=sources).order_by("site__name", "pk"))
