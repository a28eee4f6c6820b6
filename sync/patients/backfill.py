"""A registration linked to a golden Patient late gets that person's existing central records then.

Routing reads MDM's links when a central resource changes (``routing``), so a registration a
steward confirms, or that MDM MATCHes a few seconds after it was written, would otherwise receive
a golden record's CarePlan or MedicationRequest only with its next central version. A backfill
closes that gap: for each registration newly MATCHed to a golden record (its ``golden_backfilled``
names another one, or none), every live resource in the golden record's compartment that the
registration holds no record of becomes a central -> site run at its current version, through the
ordinary eight steps (conflict check, If-Match, audit). The runs reach the newly linked site as a
centrally born record reaches any site (a composition whose uid derives from the resource, created
once); another registration of the person that already holds the record finds nothing to write.

Idempotent: each event is keyed by (``backfill:<PatientLink id>``, resource, version), unique like
any change, so a second pass, or a steward's confirm followed by the sweep, starts nothing twice.
Audited: one ``patient.backfill`` event per registration (ids and counts, never demographics).

A steward's "different people" (NO_MATCH) after delivery removes nothing: what was delivered stays
at the site as the clinicians there saw it, and the rejection's audit event counts it
(``delivered_stay``); routing stops at once (``routing.still_routed``): no later version goes across. ``golden_backfilled`` is
cleared, so a later re-link backfills again.
"""
from __future__ import annotations

import logging
import zlib

from django.db import connection, transaction
from django.utils import timezone

from audit.record import record_event, system_actor
from sync.clients.mdm import MATCH, MdmClient
from sync.identity import CENTRAL, backfill_source, central_record_key, composition_uid_for, record_key
from sync.models import ChangeEvent, Direction, PatientLink, RecordLink, SyncRun
from sync.workflow import dispatch
from sync.workflow.deletion import is_retired

log = logging.getLogger(__name__)

# Resources of a compartment that are never a record of their own at a site.
_NOT_RECORDS = frozenset({"Patient", "Provenance", "Practitioner", "PractitionerRole", "Organization", "Device",
                          "Location", "Encounter", "Composition", "List"})
# The session advisory lock that keeps one sweep at a time (beat's tick, a steward's confirm beside it).
SWEEP_LOCK = zlib.crc32(b"patients:backfill")


def sweep(fhir) -> int | None:
    """Backfill every registration MATCHed to a golden record it has not received; None if a sweep runs.

    One paged ``$mdm-query-links`` over the MATCH links, then work only for the registrations whose
    golden record is new to them. Returns the number of runs started.
    """
    with connection.cursor() as db:
        db.execute("SELECT pg_try_advisory_lock(%s)", [SWEEP_LOCK])
        if not db.fetchone()[0]:
            return None
    try:
        golden_of = {link.source.split("/", 1)[1]: link.golden.split("/", 1)[1]
                     for link in MdmClient(fhir).links(match_result=MATCH)}
        started = 0
        for link in PatientLink.objects.select_related("site").order_by("pk").iterator():
            golden = golden_of.get(link.fhir_patient_id, "")
            if golden != link.golden_backfilled:
                started += backfill(fhir, link, golden)
        return started
    finally:
        with connection.cursor() as db:
            db.execute("SELECT pg_advisory_unlock(%s)", [SWEEP_LOCK])


def backfill_golden(fhir, golden: str, *, actor: str | None = None) -> int:
    """Backfill the registrations MATCHed to golden Patient ``golden`` (its id) that have not had its records
    (a steward's confirm or merge just linked them). Returns the number of runs started."""
    sources = [ref.split("/", 1)[1] for ref in MdmClient(fhir).sources_of(f"Patient/{golden}")]
    links = PatientLink.objects.select_related("site").filter(fhir_patient_id__in=sources).exclude(
        golden_backfilled=golden).order_by("pk")
    return sum(backfill(fhir, link, golden, actor=actor) for link in links)


def backfill(fhir, link: PatientLink, golden: str, *, actor: str | None = None) -> int:
    """Start a run for each live resource of golden Patient ``golden`` (its id) not yet backfilled to
    ``link``; record ``golden`` as delivered and audit it. ``golden`` empty: the link is gone (cleared)."""
    if not golden:
        PatientLink.objects.filter(pk=link.pk).update(golden_backfilled="")
        return 0
    resources = [r for r in fhir.everything(golden) if r.get("resourceType") not in _NOT_RECORDS
                 and not is_retired(r) and not _held(link, r)]
    source = backfill_source(link.pk)
    with transaction.atomic():
        events = {(e.source_object_id, e.source_version) for e in ChangeEvent.objects.filter(
            source=source, source_object_id__in=[f"{r['resourceType']}/{r['id']}" for r in resources])}
        fresh = [r for r in resources if (f"{r['resourceType']}/{r['id']}", r["meta"]["versionId"]) not in events]
        created = ChangeEvent.objects.bulk_create([
            ChangeEvent(source=source, source_object_id=f"{r['resourceType']}/{r['id']}",
                        source_version=r["meta"]["versionId"], direction=Direction.TO_OPENEHR,
                        version_number=int(r["meta"]["versionId"]), change_type="backfill",
                        committed_at=timezone.now())
            for r in fresh])
        now = timezone.now()
        runs = SyncRun.objects.bulk_create([
            SyncRun(change_event=event, direction=Direction.TO_OPENEHR, record_key=_record_key(event.source_object_id),
                    dispatched_at=now)
            for event in created])
        PatientLink.objects.filter(pk=link.pk).update(golden_backfilled=golden)
        record_event(action="patient.backfill", outcome="ok", actor=actor or system_actor(), source=CENTRAL,
                     destination=f"site:{link.site.name}", destination_object=f"Patient/{golden}",
                     patient_link_id=link.pk,
                     detail={"golden": f"Patient/{golden}", "resources": len(resources), "runs": len(runs)})
        for run in runs:
            transaction.on_commit(lambda pk=run.pk: dispatch.send(pk, None))
    log.info("backfill patient link %s: %s run(s)", link.pk, len(runs))
    return len(runs)


def delivered_from_central(link: PatientLink) -> list[int]:
    """RecordLink ids at this registration that the engine created from a centrally born resource
    (their composition uid derives from it): what stays at the site when a steward splits the person."""
    out = []
    for record in RecordLink.objects.filter(patient_link=link, deleted=False).order_by("pk"):
        heads = [f"{r['type']}/{r['id']}" for r in record.fhir_resources]
        if any(record.versioned_object_uid == composition_uid_for(ref, link.site.name) for ref in heads):
            out.append(record.pk)
    return out


def _held(link: PatientLink, resource: dict) -> bool:
    """The registration has a record of it already: routing keeps that one up to date."""
    return RecordLink.objects.filter(patient_link=link, deleted=False, fhir_resources__contains=[
        {"type": resource["resourceType"], "id": resource["id"]}]).exists()


def _record_key(ref: str) -> str:
    """The run's record key as the central poll gives it: serialised with the resource's other changes."""
    rtype, rid = ref.split("/", 1)
    record = (RecordLink.objects.filter(fhir_resources__contains=[{"type": rtype, "id": rid}])
              .select_related("site").order_by("pk").first())
    return record_key(record.site.name, record.versioned_object_uid) if record else central_record_key(rtype, rid)
