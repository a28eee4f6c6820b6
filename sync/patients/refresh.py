"""Demographics changed at a site without a new composition: the periodic pass over its patients.

A forward run refreshes its patient's registration when the EHR_STATUS (or the site's service)
moved; a patient whose name changes and who has no new composition for weeks is caught by this
pass (beat's ``sync.refresh_demographics`` every CONFLICTDESK_DEMOGRAPHICS_SECONDS, or ``manage.py
sync_demographics``), single flight: a pass that finds another running does nothing. Each registration written
leaves one audit event (ids and the version, never the values); errors of one patient do not stop
the pass and are counted, never logged with data.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

from django.db import connection, transaction
from django.utils import timezone

from audit.record import record_event, system_actor
from sync.clients.errors import ClientError
from sync.identity import CENTRAL, site_source
from sync.models import PatientLink, Site

from .registration import as_model_values, registration


@dataclass
class Refreshed:
    checked: int = 0
    written: int = 0
    failed: int = 0


# The session advisory lock that keeps one pass at a time (beat's tick, a manual run beside it).
PASS_LOCK = zlib.crc32(b"demographics:refresh")


def refresh_sites(services, name: str = "") -> dict[str, Refreshed] | None:
    """One pass over every enabled demographics site (or the one named); None if a pass is running."""
    with connection.cursor() as db:
        db.execute("SELECT pg_try_advisory_lock(%s)", [PASS_LOCK])
        if not db.fetchone()[0]:
            return None
    try:
        sites = Site.objects.exclude(demographics_source=Site.Demographics.NONE).filter(enabled=True)
        return {site.name: refresh_site(site, services.fhir, services.openehr(site))
                for site in (sites.filter(name=name) if name else sites).order_by("name")}
    finally:
        with connection.cursor() as db:
            db.execute("SELECT pg_advisory_unlock(%s)", [PASS_LOCK])


def refresh_site(site: Site, fhir, openehr) -> Refreshed:
    """Re-read every registration of ``site`` and write those whose demographics moved."""
    out = Refreshed()
    for link in PatientLink.objects.filter(site=site).order_by("pk").iterator():
        out.checked += 1
        try:
            found = registration(fhir, openehr, site, link.ehr_id, known_version=link.demographics_version)
        except ClientError:
            out.failed += 1
            continue
        if found is None or not found["written"]:
            continue
        with transaction.atomic():
            PatientLink.objects.filter(pk=link.pk).update(
                fhir_patient_id=found["fhir_patient_id"], subject_id=found["subject_id"],
                subject_namespace=found["subject_namespace"], demographics_synced_at=timezone.now(),
                **as_model_values(found["cache"]))
            record_event(action="patient.demographics", outcome="written", actor=system_actor(),
                         source=site_source(site.name), destination=CENTRAL,
                         destination_object=f"Patient/{found['fhir_patient_id']}", patient_link_id=link.pk,
                         detail={"version": found["cache"]["demographics_version"]})
        out.written += 1
    return out
