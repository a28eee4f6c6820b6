"""The manual triggers' worker side: read a site's versions, hand them to the engine's detection.

Thin like ``sync.tasks``: ids in, one call, one log line with ids only. The
rows are made by ``sync.detection.record_changes`` (unique per object and
version), so a trigger for something already detected changes nothing.
"""
from __future__ import annotations

import logging
from datetime import datetime

from celery import shared_task

log = logging.getLogger(__name__)

EHR_COMPOSITIONS_AQL = (
    "SELECT c/uid/value AS version_uid FROM EHR e CONTAINS COMPOSITION c WHERE e/ehr_id/value = $ehr_id"
)


@shared_task(name="api.sync_compositions", ignore_result=True)
def sync_compositions(site_id: int, ehr_id: str, vo_uids: list[str] | None) -> int:
    created = detect_compositions(site_id, ehr_id, vo_uids)
    log.info("trigger site %s: %s new run(s)", site_id, created)
    return created


def detect_compositions(site_id: int, ehr_id: str, vo_uids: list[str] | None) -> int:
    """``vo_uids=None``: every composition of the EHR, live ones and linked (possibly deleted) ones."""
    from sync.detection import Change, record_changes
    from sync.identity import site_source, version_number
    from sync.models import Cursor, Direction, RecordLink, Site
    from sync.workflow.services import get_services

    site = Site.objects.get(pk=site_id, enabled=True)
    client = get_services().openehr(site)
    if vo_uids is None:
        live = {row["version_uid"].split("::", 1)[0]
                for row in client.query(EHR_COMPOSITIONS_AQL, {"ehr_id": ehr_id})}
        linked = set(RecordLink.objects.filter(site=site, patient_link__ehr_id=ehr_id)
                     .values_list("versioned_object_uid", flat=True))
        vo_uids = sorted(live | linked)
    changes = []
    for vo_uid in vo_uids:
        last = client.revision_history(ehr_id, vo_uid)[-1]
        committed = datetime.fromisoformat(last.committed_at) if last.committed_at else None
        change_type = "deleted" if (last.change_type or "").lower() == "deleted" else (last.change_type or "modification")
        changes.append(Change(vo_uid, last.version_uid, version_number(last.version_uid), change_type, committed, ehr_id))
    Cursor.objects.get_or_create(source=site_source(site.name))
    # newest=None: a targeted read must not move the site's cursor past versions the poller has not seen.
    return record_changes(site_source(site.name), site, Direction.TO_FHIR, changes, None)
