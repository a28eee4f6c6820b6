"""Account for every source version at a site in a time range, from the site's own records.

AQL sees only each composition's latest version and no deletions, so the
compositions come from AQL over the range plus our RecordLinks (for deleted
ones), and their versions from ``revision_history``, which lists them all.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from sync.identity import site_source, version_number
from sync.models import ChangeEvent, RecordLink

from .services import get_services

_IN_RANGE_AQL = (
    "SELECT e/ehr_id/value AS ehr_id, c/uid/value AS version_uid "
    "FROM EHR e CONTAINS VERSION v CONTAINS COMPOSITION c "
    "WHERE v/commit_audit/time_committed >= $since"
)
ACCOUNTED = {
    ChangeEvent.Status.SYNCED: "synced",
    ChangeEvent.Status.ECHO: "echo",
    ChangeEvent.Status.DEAD_LETTER: "dead_letter",
    ChangeEvent.Status.CONFLICT: "conflict",
    ChangeEvent.Status.PENDING: "pending",
    ChangeEvent.Status.RUNNING: "pending",
}


@dataclass
class Report:
    by_state: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    unaccounted: list[str] = field(default_factory=list)


def reconcile_site(site, since: datetime, until: datetime) -> Report:
    client = get_services().openehr(site)
    objects = {
        row["version_uid"].split("::", 1)[0]: row["ehr_id"]
        for row in client.query(_IN_RANGE_AQL, {"since": since.isoformat(timespec="microseconds")})
    }
    for vo_uid, ehr_id in RecordLink.objects.filter(site=site).values_list("versioned_object_uid", "patient_link__ehr_id"):
        objects.setdefault(vo_uid, ehr_id)
    source = site_source(site.name)
    events = dict(
        ChangeEvent.objects.filter(source=source, source_object_id__in=list(objects)).values_list("source_version", "status")
    )
    synced_at = dict(
        RecordLink.objects.filter(site=site, versioned_object_uid__in=list(objects)).values_list(
            "versioned_object_uid", "openehr_version_uid"
        )
    )
    report = Report()
    for vo_uid, ehr_id in objects.items():
        for revision in client.revision_history(ehr_id, vo_uid):
            committed = datetime.fromisoformat(revision.committed_at) if revision.committed_at else None
            if committed is None or not (since <= committed <= until):
                continue
            state = _state(revision.version_uid, events, synced_at.get(vo_uid))
            if state is None:
                report.unaccounted.append(revision.version_uid)
            else:
                report.by_state[state].append(revision.version_uid)
    return report


def _state(version_uid: str, events: dict, synced_version: str | None) -> str | None:
    if version_uid in events:
        return ACCOUNTED[events[version_uid]]
    if synced_version and version_number(synced_version) > version_number(version_uid):
        return "superseded"
    return None
