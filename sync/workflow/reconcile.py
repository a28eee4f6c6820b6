"""Account for every source version at a site in a time range, from the site's own records.

AQL sees only each composition's latest version and no deletions, so the
compositions come from the (paged) change feed over the range plus our
RecordLinks (for deleted ones), and their versions from ``revision_history``,
which lists them all.

A deletion the site made is accounted only when its effect is visible
centrally: every resource its record produced reads as entered-in-error (or
is gone). A deletion recorded as synced whose resources still read live
centrally is listed unaccounted, like a version never seen. The same holds for
a correction (a version that dropped an entry), while it is the record's
current version: the resources its run marked entered-in-error must still read so.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from audit.models import AuditEvent
from sync.clients.errors import NotFound
from sync.identity import site_source, version_number
from sync.models import ChangeEvent, EngineWrite, RecordLink

from .deletion import is_retired
from .services import get_services

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


def reconcile_site(site, since: datetime, until: datetime, *, ehr_id: str | None = None) -> Report:
    """Classify every version committed in [since, until] (at one EHR of the site, if given).

    Compositions come from the change feed (keyset-paged on commit time, so
    commits during the walk cannot make it skip one: a composition whose latest
    version is after ``since`` had every in-range version at or before it).
    """
    client = get_services().openehr(site)
    objects = {
        row.uid: row.ehr_id
        for row in client.changes_since(since, overlap_seconds=0)
        if ehr_id is None or row.ehr_id == ehr_id
    }
    links = RecordLink.objects.filter(site=site)
    if ehr_id is not None:
        links = links.filter(patient_link__ehr_id=ehr_id)
    for vo_uid, link_ehr in links.values_list("versioned_object_uid", "patient_link__ehr_id"):
        objects.setdefault(vo_uid, link_ehr)
    source = site_source(site.name)
    events = dict(
        ChangeEvent.objects.filter(source=source, source_object_id__in=list(objects)).values_list("source_version", "status")
    )
    synced_at = dict(
        RecordLink.objects.filter(site=site, versioned_object_uid__in=list(objects)).values_list(
            "versioned_object_uid", "openehr_version_uid"
        )
    )
    # The engine's own writes at the site (a central deletion carried there is never detected as a change).
    own = set(EngineWrite.objects.filter(destination=source, object_id__in=list(objects))
              .values_list("version", flat=True))
    fhir = get_services().fhir
    retired_by = _retired_by(source, [v for v in synced_at.values() if v])
    report = Report()
    for vo_uid, object_ehr in objects.items():
        for revision in client.revision_history(object_ehr, vo_uid):
            committed = datetime.fromisoformat(revision.committed_at) if revision.committed_at else None
            if committed is None or not (since <= committed <= until):
                continue
            state = _state(revision.version_uid, events, synced_at.get(vo_uid))
            if state is None and revision.version_uid in own:
                state = "echo"
            if state == "synced" and (revision.change_type or "").lower() == "deleted" and not _retired_centrally(
                    fhir, site, vo_uid):
                state = None  # recorded as synced, but the centre still shows the record live
            if state == "synced" and revision.version_uid == synced_at.get(vo_uid) and not _still_retired(
                    fhir, retired_by.get(revision.version_uid, [])):
                state = None  # a correction recorded as synced, but what it retired reads live again
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


def _retired_centrally(fhir, site, vo_uid: str) -> bool:
    """Every central resource of the deleted record reads entered-in-error (or is gone)."""
    link = RecordLink.objects.filter(site=site, versioned_object_uid=vo_uid).first()
    if link is None or not link.deleted:
        return False
    for r in link.fhir_resources:
        try:
            if not is_retired(fhir.read(r["type"], r["id"])):
                return False
        except NotFound:
            continue
    return True


def _retired_by(source: str, versions: list[str]) -> dict[str, list[str]]:
    """version uid -> the central resources its write marked entered-in-error (the write step's audit event)."""
    out: dict[str, list[str]] = {}
    rows = AuditEvent.objects.filter(action="sync.write", source=source, source_version__in=versions,
                                     detail__has_key="entered_in_error").values_list("source_version", "detail")
    for version, detail in rows:
        out.setdefault(version, []).extend(detail.get("entered_in_error") or [])
    return out


def _still_retired(fhir, refs: list[str]) -> bool:
    for ref in refs:
        rtype, rid = ref.split("/", 1)
        try:
            if not is_retired(fhir.read(rtype, rid)):
                return False
        except NotFound:
            continue
    return True
