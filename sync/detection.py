"""Change detection: turn what changed at a site or centrally into ChangeEvents and SyncRuns.

Every pass reads the source from its cursor (minus an overlap for clock skew),
then in ONE transaction records a ChangeEvent per new version (unique per
object and version, so re-read rows are no-ops), a SyncRun per event, and
moves the cursor. Celery hints go out after that commit. Our own writes come
back here too: they are recognised by the exact version the engine recorded
(EngineWrite) and stored as echo events without a run.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone as dt_timezone

from django.conf import settings
from django.db import close_old_connections, transaction
from django.utils import timezone

from sync.clients.errors import NotFound
from sync.identity import CENTRAL, central_record_key, record_key, site_source, version_number
from sync.models import ChangeEvent, Cursor, Direction, RecordLink, Site, SyncRun
from sync.workflow.dispatch import dispatch_run
from sync.workflow.echoes import is_own_write
from sync.workflow.services import get_services

log = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=dt_timezone.utc)

# Current compositions; a linked composition missing here may have been deleted.
LIVE_COMPOSITIONS_AQL = "SELECT c/uid/value AS version_uid FROM EHR e CONTAINS COMPOSITION c ORDER BY c/uid/value ASC"
# The current compositions of one EHR (a manual trigger for one patient).
EHR_COMPOSITIONS_AQL = (
    "SELECT c/uid/value AS version_uid FROM EHR e CONTAINS COMPOSITION c WHERE e/ehr_id/value = $ehr_id "
    "ORDER BY c/uid/value ASC"
)
# Rows per AQL page: bounded answers whatever the size of the CDR.
AQL_PAGE_SIZE = 1000


@dataclass(frozen=True)
class Change:
    """One detected source version, before it becomes a row."""

    object_id: str
    version: str
    number: int
    change_type: str
    committed_at: datetime | None
    ehr_id: str = ""


def poll_site(site: Site) -> int:
    """One detection pass over a site; returns how many new runs it queued."""
    client = get_services().openehr(site)
    source = site_source(site.name)
    cursor, _ = Cursor.objects.get_or_create(source=source)
    since = cursor.position or EPOCH
    changes = [
        Change(
            object_id=row.uid,
            version=row.version_uid,
            number=row.version,
            change_type=row.change_type or "modification",
            committed_at=row.committed_at,
            ehr_id=row.ehr_id,
        )
        for row in client.changes_since(since, overlap_seconds=settings.CONFLICTDESK_POLL_OVERLAP_SECONDS)
    ]
    changes += _site_deletions(client, site)
    newest = max((c.committed_at for c in changes if c.committed_at), default=None)
    return record_changes(source, site, Direction.TO_FHIR, changes, newest)


def poll_central() -> int:
    """One detection pass over the central server's history for the flow-back types."""
    fhir = get_services().fhir
    cursor, _ = Cursor.objects.get_or_create(source=CENTRAL, defaults={"position": central_start()})
    since = (cursor.position or EPOCH) - timedelta(seconds=settings.CONFLICTDESK_POLL_OVERLAP_SECONDS)
    entries = list(fhir.history(since, settings.CONFLICTDESK_FLOWBACK_TYPES))
    changes = [
        Change(
            object_id=f"{e.resource_type}/{e.id}",
            version=str(e.version_id),
            number=int(e.version_id),
            change_type="deleted" if e.deleted else ("creation" if str(e.version_id) == "1" else "modification"),
            committed_at=datetime.fromisoformat(e.last_updated) if e.last_updated else None,
        )
        for e in entries
    ]
    # HAPI lists newest first: queue each object's versions oldest first.
    changes.sort(key=lambda c: (c.committed_at or EPOCH, c.number))
    newest = max((c.committed_at for c in changes if c.committed_at), default=None)
    return record_changes(CENTRAL, None, Direction.TO_OPENEHR, changes, newest)


def detect_compositions(site: Site, ehr_id: str, vo_uids: list[str] | None) -> int:
    """The latest version of each composition now, whatever the cursor; returns how many new runs it queued.

    ``vo_uids=None`` means every composition of the EHR: the live ones and the
    linked ones (a linked composition gone from the live set may be deleted;
    its revision history says). A version already recorded is a no-op, and the
    site's cursor stays where the poller left it, so no version is skipped.
    """
    client = get_services().openehr(site)
    if vo_uids is None:
        live = {row["version_uid"].split("::", 1)[0]
                for row in paged_query(client, EHR_COMPOSITIONS_AQL, {"ehr_id": ehr_id})}
        linked = set(RecordLink.objects.filter(site=site, patient_link__ehr_id=ehr_id)
                     .values_list("versioned_object_uid", flat=True))
        vo_uids = sorted(live | linked)
    changes = []
    for vo_uid in vo_uids:
        last = client.revision_history(ehr_id, vo_uid)[-1]
        committed = datetime.fromisoformat(last.committed_at) if last.committed_at else None
        change_type = "deleted" if (last.change_type or "").lower() == "deleted" else (last.change_type or "modification")
        changes.append(Change(vo_uid, last.version_uid, version_number(last.version_uid), change_type, committed, ehr_id))
    source = site_source(site.name)
    Cursor.objects.get_or_create(source=source)
    return record_changes(source, site, Direction.TO_FHIR, changes, None)


def central_start() -> datetime:
    """Where a never-polled central server is first read from.

    Not the beginning of time: a central server that predates the engine may hold years of
    history, none of it changes made for the engine to carry, and the first pass would read
    it all at once. ``CONFLICTDESK_CENTRAL_SINCE`` backfills from a date when that is wanted.
    """
    if settings.CONFLICTDESK_CENTRAL_SINCE:
        since = datetime.fromisoformat(settings.CONFLICTDESK_CENTRAL_SINCE)
        if since.tzinfo is None:
            raise ValueError("CONFLICTDESK_CENTRAL_SINCE needs a time zone, e.g. 2026-01-01T00:00:00Z")
        return since
    return timezone.now()


def record_changes(source: str, site: Site | None, direction: str, changes: list[Change], newest) -> int:
    """Events, runs and the cursor move in one transaction; hints after commit."""
    created = 0
    with transaction.atomic():
        cursor = Cursor.objects.select_for_update().get(source=source)
        for change in changes:
            event, new = ChangeEvent.objects.get_or_create(
                source=source,
                source_object_id=change.object_id,
                source_version=change.version,
                defaults={
                    "direction": direction,
                    "site": site,
                    "version_number": change.number,
                    "change_type": change.change_type,
                    "ehr_id": change.ehr_id,
                    "committed_at": change.committed_at,
                },
            )
            if not new:
                continue
            destination = CENTRAL if site is None else site_source(site.name)
            if is_own_write(destination, change.object_id, change.version):
                ChangeEvent.objects.filter(pk=event.pk).update(status=ChangeEvent.Status.ECHO)
                continue
            run = SyncRun.objects.create(
                change_event=event, direction=direction, site=site, record_key=_record_key(site, change)
            )
            dispatch_run(run.pk)
            created += 1
        if newest and (cursor.position is None or newest > cursor.position):
            cursor.position = newest
        cursor.last_polled_at = timezone.now()
        cursor.save()
    if created:
        log.info("poll %s: %s new run(s)", source, created)
    return created


def _record_key(site: Site | None, change: Change) -> str:
    if site is not None:
        return record_key(site.name, change.object_id)
    resource_type, resource_id = change.object_id.split("/", 1)
    link = (
        RecordLink.objects.filter(fhir_resources__contains=[{"type": resource_type, "id": resource_id}])
        .select_related("site")
        .order_by("pk")
        .first()
    )
    return record_key(link.site.name, link.versioned_object_uid) if link else central_record_key(resource_type, resource_id)


def _site_deletions(client, site: Site) -> list[Change]:
    """Linked compositions that are gone at the site (AQL shows no deletes; the id set does).

    The live set is read in pages; a composition committed or deleted between
    two pages shifts the offsets, so one may be missed. Missing is only a
    suspicion: the revision history decides, and only a last revision that is
    a deletion becomes a change.
    """
    linked = dict(
        RecordLink.objects.filter(site=site, deleted=False).values_list("versioned_object_uid", "patient_link__ehr_id")
    )
    if not linked:
        return []
    live = {row["version_uid"].split("::", 1)[0] for row in paged_query(client, LIVE_COMPOSITIONS_AQL)}
    changes, unknown = [], []
    for vo_uid in sorted(set(linked) - live):
        ehr_id = linked[vo_uid]
        try:
            last = client.revision_history(ehr_id, vo_uid)[-1]
        except NotFound:
            # No history at all (the EHR purged, the site's database restored from an older
            # backup): nothing says it was deleted, and one such record must not stop the
            # site's detection. Left for a person: `reconcile` lists what the site lacks.
            unknown.append(vo_uid)
            continue
        if (last.change_type or "").lower() != "deleted":
            continue  # a paging miss (or not visible yet): still there
        committed = datetime.fromisoformat(last.committed_at) if last.committed_at else None
        changes.append(Change(vo_uid, last.version_uid, int(last.version_uid.rsplit("::", 1)[1]), "deleted", committed, ehr_id))
    _report_unknown(site, unknown)
    return changes


_reported_unknown: set[tuple[str, str]] = set()


def _report_unknown(site: Site, vo_uids: list[str]) -> None:
    """One warning per process for each linked composition the site has no history of (ids only)."""
    new = [v for v in vo_uids if (site.name, v) not in _reported_unknown]
    if new:
        _reported_unknown.update((site.name, v) for v in new)
        log.warning("site %s: %s linked composition(s) have no history at the site (first: %s); not treated as "
                    "deletions, see `manage.py reconcile`", site.name, len(new), new[0])


def paged_query(client, aql: str, parameters: dict | None = None, *, page_size: int | None = None):
    """Yield every row of an AQL query, ``page_size`` rows per request (the query needs an ORDER BY)."""
    page_size = page_size or AQL_PAGE_SIZE
    offset = 0
    while True:
        rows = client.query(aql, parameters, offset=offset, fetch=page_size)
        yield from rows
        if len(rows) < page_size:
            return
        offset += len(rows)


def poll_loop(*, stop=lambda: False, sleep=time.sleep, clock=time.monotonic) -> None:
    """Poll every enabled site (and the centre) at its own interval, from one small process.

    Beat-driven polling costs a tick, a ``poll_due`` task and a ``poll_site``
    task, each waiting in the same queue as the runs, before a commit is even
    seen: under load that wait dominates the end-to-end latency. Here a poll
    starts exactly one interval after the previous one started, and the runs it
    records are dispatched straight from its commit. Beat's ``poll_due`` finds
    these sites freshly polled and leaves them alone, so both can run.
    """
    # The centre's first poll comes one interval in, as with beat (a first poll reads its whole history).
    next_due: dict[str, float] = {CENTRAL: clock() + settings.CONFLICTDESK_CENTRAL_POLL_SECONDS}
    while not stop():
        close_old_connections()  # a long-lived process: drop connections the database closed
        now = clock()
        for site in Site.objects.filter(enabled=True):
            key = site_source(site.name)
            if next_due.get(key, 0.0) <= now:
                next_due[key] = now + site.poll_interval_seconds
                _poll_safely(key, poll_site, site)
        if next_due.get(CENTRAL, 0.0) <= now:
            next_due[CENTRAL] = now + settings.CONFLICTDESK_CENTRAL_POLL_SECONDS
            _poll_safely(CENTRAL, poll_central)
        wake = min(next_due.values(), default=now + 1.0) - clock()
        sleep(min(max(wake, 0.005), 1.0))  # re-read the sites at least every second


def _poll_safely(source: str, poll, *args) -> None:
    try:
        poll(*args)
    except Exception as exc:  # one unreachable server must not stop the others' polls
        log.warning("poll %s failed: %s", source, type(exc).__name__)
