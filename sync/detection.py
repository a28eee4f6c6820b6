"""Change detection: turn what changed at a site or centrally into ChangeEvents and SyncRuns.

Every pass reads the source from its cursor (minus an overlap for clock skew)
and records what it read page by page (``CONFLICTDESK_DETECTION_PAGE_SIZE``
changes at a time): each page's ChangeEvents (unique per object and version, so
re-read rows are no-ops), a SyncRun per event and the cursor's move commit in
one transaction, and its Celery hints go out after that commit. A first poll or
a catch-up after an outage therefore holds one page in memory, never the
source's whole history, and a crash half-way keeps the pages already recorded.
Our own writes come back here too: they are recognised by the exact version the
engine recorded (EngineWrite) and stored as echo events without a run.

The hot poll costs what changed, not what the source holds: deletions (which
AQL cannot see) are found by ``check_deletions``, on its own slow schedule.
A site poll runs single-flight (``run_site_poll``): one at a time per site, and
a site that does not answer backs off on the transient-fault schedule, its
state on its Cursor for the health page.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone as dt_timezone

import zlib
from functools import partial
from itertools import islice

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import Q
from django.utils import timezone

from sync.clients.errors import NotFound
from sync.identity import CENTRAL, central_record_key, record_key, site_source, version_number
from sync.mapping import fhirmodel, hooks
from sync.mapping.composition import RESOURCES as COMPOSITION_LEVEL
from sync.mapping.from_fhir import PART_ONLY
from sync.mapping.spec import registry
from sync.models import ChangeEvent, Cursor, Direction, EngineWrite, PatientLink, RecordLink, Site, SyncRun
from sync.workflow import dispatch
from sync.workflow.deletion import is_retired
from sync.workflow.services import get_services

log = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=dt_timezone.utc)

# The current compositions of one EHR (a manual trigger for one patient; the deletion check).
EHR_COMPOSITIONS_AQL = (
    "SELECT c/uid/value AS version_uid FROM EHR e CONTAINS COMPOSITION c WHERE e/ehr_id/value = $ehr_id "
    "ORDER BY c/uid/value ASC"
)
# Every current composition of a site, grouped by EHR (the deletion check: one paged query per site).
SITE_COMPOSITIONS_AQL = (
    "SELECT e/ehr_id/value AS ehr_id, c/uid/value AS version_uid FROM EHR e CONTAINS COMPOSITION c "
    "ORDER BY e/ehr_id/value ASC, c/uid/value ASC"
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
    """One detection pass over a site; returns how many new runs it queued.

    Reads the keyset-paged change feed from the cursor and records it a page at a
    time; its cost follows what changed since the cursor, whatever the CDR holds.
    """
    source = site_source(site.name)
    cursor, _ = Cursor.objects.get_or_create(source=source)  # first: a failure below is recorded on it
    client = get_services().openehr(site)
    rows = client.changes_since(cursor.position or EPOCH, overlap_seconds=settings.CONFLICTDESK_POLL_OVERLAP_SECONDS)
    created, recorded = 0, False
    for page in _pages(rows, settings.CONFLICTDESK_DETECTION_PAGE_SIZE):
        changes = [
            Change(
                object_id=row.uid,
                version=row.version_uid,
                number=row.version,
                change_type=row.change_type or "modification",
                committed_at=row.committed_at,
                ehr_id=row.ehr_id,
            )
            for row in page
        ]
        newest = max((c.committed_at for c in changes if c.committed_at), default=None)
        created += record_changes(source, site, Direction.TO_FHIR, changes, newest)
        recorded = True
    if not recorded:
        record_changes(source, site, Direction.TO_FHIR, [], None)  # nothing new: the poll itself is recorded
    return created


def poll_central() -> int:
    """One detection pass over the central server's history for the flow-back types."""
    return _poll_central(CENTRAL, settings.CONFLICTDESK_FLOWBACK_TYPES)


# The cursor of the central removal check (its own: it runs on the deletion schedule, not the poll's).
CENTRAL_REMOVALS = "central:removals"


def poll_central_removals() -> int:
    """The central removal check: the removals (DELETE, entered-in-error) of every other mapped type.

    A central "this is wrong" on a resource from a site reaches it whatever the
    type (issue 20), while edits of these types do not flow back. Read on the
    deletion schedule (``sync.check_deletions``, CONFLICTDESK_DELETION_CHECK_SECONDS),
    as site deletions are, so the poll's every-second cost stays the flow-back types'.
    """
    return _poll_central(CENTRAL_REMOVALS, removal_types(), keep=_carried)


def _poll_central(cursor_source: str, types, keep=None) -> int:
    """One pass over the central history of ``types`` from ``cursor_source``'s position (``keep``: which versions).

    HAPI lists history newest first, and each object's versions must be queued
    oldest first, so the history is read in time windows, oldest window first:
    each window whole (at most a page), sorted, recorded in one transaction with
    the cursor's move. A window holding more than a page is halved until it fits
    (a catch-up after a long outage), so memory stays bounded by one page.
    """
    fhir = get_services().fhir
    cursor, _ = Cursor.objects.get_or_create(source=cursor_source, defaults={"position": central_start()})
    start = (cursor.position or EPOCH) - timedelta(seconds=settings.CONFLICTDESK_POLL_OVERLAP_SECONDS)
    end = timezone.now()
    limit = settings.CONFLICTDESK_DETECTION_PAGE_SIZE
    width = end - start
    created = 0
    while True:
        until = min(start + width, end)
        last = until >= end
        history = central_history(fhir, start, None if last else until, types)
        entries = list(islice(history, limit + 1))
        if len(entries) > limit:
            if width > MIN_CENTRAL_WINDOW:
                width = max(width / 2, MIN_CENTRAL_WINDOW)  # too many for one page: a narrower window
                continue
            entries += history  # more than a page within the narrowest window: read it whole, lose nothing
        changes = [_central_change(e) for e in entries if (last or _before(e, until)) and (keep is None or keep(e))]
        changes.sort(key=lambda c: (c.committed_at or EPOCH, c.number))
        newest = max((c.committed_at for c in changes if c.committed_at), default=None)
        created += record_changes(CENTRAL, None, Direction.TO_OPENEHR, changes, newest, cursor_source=cursor_source)
        if last:
            return created
        start, width = until, width * 2


# The narrowest window the central catch-up halves down to (more than a page in 1 ms is read whole).
MIN_CENTRAL_WINDOW = timedelta(milliseconds=1)


def removal_types() -> list[str]:
    """The clinical types the mapping makes whose edits do not flow back, but whose removals must.

    A central DELETE or entered-in-error on a resource that came from a site takes
    its entry out there whatever its type (issue 20): nothing stays at a site that a
    clinician declared wrong centrally. The composition level (Encounter,
    Composition, a list composition's List) and parts (Specimen) have no entry of
    their own to take out. From the mapping registry, so a newly mapped type is covered.
    """
    made = {s.resource for s in registry().values() if s.resource and fhirmodel.is_resource(s.resource)}
    made |= {t for types in hooks.MAKES.values() for t in types}  # and what a hook makes (an ImagingStudy)
    return sorted(made - {*COMPOSITION_LEVEL, *PART_ONLY, *settings.CONFLICTDESK_FLOWBACK_TYPES})


def _carried(entry) -> bool:
    """A flow-back type's every version; another type's only when it removes (a delete, an entered-in-error)."""
    if entry.resource_type in settings.CONFLICTDESK_FLOWBACK_TYPES:
        return True
    return bool(entry.deleted) or is_retired(entry.resource)


def central_history(fhir, start: datetime, until: datetime | None, types=None):
    """Every version of ``types`` (default the flow-back types) written at or after ``start`` (and before
    ``until``, if given).

    The client's ``history``: ``_since`` without ``until``; with it HAPI's ``_at`` range, in
    pages of CONFLICTDESK_DETECTION_PAGE_SIZE (the catch-up's windows).
    """
    types = settings.CONFLICTDESK_FLOWBACK_TYPES if types is None else types
    if until is None:
        return fhir.history(start, types)
    return fhir.history(start, types, until=until, page_size=settings.CONFLICTDESK_DETECTION_PAGE_SIZE)


def _central_change(e) -> Change:
    return Change(
        object_id=f"{e.resource_type}/{e.id}",
        version=str(e.version_id),
        number=int(e.version_id),
        change_type="deleted" if e.deleted else ("creation" if str(e.version_id) == "1" else "modification"),
        committed_at=datetime.fromisoformat(e.last_updated) if e.last_updated else None,
    )


def _before(entry, until: datetime) -> bool:
    """Inside the window (HAPI's range is the filter; this keeps a version in exactly one window)."""
    return not entry.last_updated or datetime.fromisoformat(entry.last_updated) < until


def _pages(rows, size: int):
    rows = iter(rows)
    while page := list(islice(rows, size)):
        yield page


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


def record_changes(source: str, site: Site | None, direction: str, changes: list[Change], newest,
                   *, polled: bool = True, cursor_source: str | None = None) -> int:
    """One page: events, runs and the cursor move in one transaction; hints after commit.

    A handful of statements per page, whatever its size: the versions already
    recorded and the engine's own writes are each read in one query, the new
    events and their runs inserted in one statement each. The cursor's row lock
    serialises every writer of one source's events, so a version not found
    recorded here cannot be inserted by anyone else before this commits. (The central removal check
    has a cursor of its own, ``cursor_source``, over types the central poll never reads: disjoint objects.)
    """
    if not changes and newest is None:  # a quiet poll: nothing to serialise, one UPDATE
        if polled:
            now = timezone.now()
            Cursor.objects.filter(source=cursor_source or source).update(last_polled_at=now, updated_at=now)
        return 0
    with transaction.atomic():
        cursor = Cursor.objects.select_for_update().get(source=cursor_source or source)
        fresh = _unrecorded(source, changes)
        runs = []
        if fresh:
            destination = CENTRAL if site is None else site_source(site.name)
            own = set(EngineWrite.objects.filter(
                destination=destination, object_id__in={c.object_id for c in fresh}
            ).values_list("object_id", "version"))
            events = ChangeEvent.objects.bulk_create([
                ChangeEvent(
                    source=source, source_object_id=c.object_id, source_version=c.version, direction=direction,
                    site=site, version_number=c.number, change_type=c.change_type, ehr_id=c.ehr_id,
                    committed_at=c.committed_at,
                    status=ChangeEvent.Status.ECHO if (c.object_id, c.version) in own else ChangeEvent.Status.PENDING,
                )
                for c in fresh
            ])
            now = timezone.now()
            runs = SyncRun.objects.bulk_create([
                SyncRun(change_event=event, direction=direction, site=site, record_key=_record_key(site, c),
                        dispatched_at=now)
                for event, c in zip(events, fresh) if event.status != ChangeEvent.Status.ECHO
            ])
            for run in runs:
                transaction.on_commit(partial(_send, run.pk))
        if newest and (cursor.position is None or newest > cursor.position):
            cursor.position = newest
        if polled:
            cursor.last_polled_at = timezone.now()
        cursor.save(update_fields=["position", "last_polled_at", "updated_at"])
    if runs:
        log.info("poll %s: %s new run(s)", source, len(runs))
    return len(runs)


def _send(run_id: int) -> None:
    dispatch.send(run_id, None)


def _unrecorded(source: str, changes: list[Change]) -> list[Change]:
    """The changes whose version has no event yet, each once, in the order given."""
    if not changes:
        return []
    recorded = set(ChangeEvent.objects.filter(
        source=source, source_object_id__in={c.object_id for c in changes}
    ).filter(source_version__in={c.version for c in changes}).values_list("source_object_id", "source_version"))
    fresh = []
    for change in changes:
        key = (change.object_id, change.version)
        if key not in recorded:
            recorded.add(key)
            fresh.append(change)
    return fresh


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


def check_deletions(site: Site) -> int:
    """The slow, paged deletion check of one site; returns how many deletions it queued.

    AQL shows no deletes, so a linked composition missing from the site's live
    set is a suspicion, and its revision history decides. The live set is read
    with one AQL per site, in pages, grouped by EHR (``SITE_COMPOSITIONS_AQL``):
    requests grow with the compositions the site holds, a page at a time, never
    with the number of EHRs (one query per EHR before). Each page's EHRs are
    compared with their links in one statement, and its deletions recorded in
    their own transaction; linked EHRs the feed never showed (every composition
    deleted) are walked last, a page of patient links at a time. The cursor does
    not move (deletions are found by state, not by time).
    """
    client = get_services().openehr(site)
    source = site_source(site.name)
    Cursor.objects.get_or_create(source=source)
    created, seen, live, unknown = 0, set(), {}, []
    for page in _pages(paged_query(client, SITE_COMPOSITIONS_AQL), AQL_PAGE_SIZE):
        for row in page:
            live.setdefault(row["ehr_id"], set()).add(row["version_uid"].split("::", 1)[0])
        last = page[-1]["ehr_id"]
        complete = {ehr: uids for ehr, uids in live.items() if ehr != last}  # the last EHR may go on
        live = {last: live[last]}
        seen.update(complete)
        created += _record_deletions(client, site, source, complete, unknown)
    seen.update(live)
    created += _record_deletions(client, site, source, live, unknown)
    after = 0
    while patients := list(PatientLink.objects.filter(site=site, pk__gt=after).order_by("pk")
                           .values_list("pk", "ehr_id")[:AQL_PAGE_SIZE]):
        after = patients[-1][0]
        created += _record_deletions(client, site, source, {e: set() for _, e in patients if e not in seen}, unknown)
    _report_unknown(site, unknown)
    Cursor.objects.filter(source=source).update(deletions_checked_at=timezone.now())
    if created:
        log.info("deletion check %s: %s deletion(s) queued", source, created)
    return created


def _record_deletions(client, site: Site, source: str, live: dict[str, set], unknown: list) -> int:
    """Record the deletions among the linked compositions of these EHRs missing from their live sets."""
    if not live:
        return 0
    linked = RecordLink.objects.filter(site=site, deleted=False, patient_link__ehr_id__in=list(live)).values_list(
        "patient_link__ehr_id", "versioned_object_uid")
    changes = []
    for ehr_id, vo_uid in sorted(linked):
        if vo_uid not in live[ehr_id]:
            change = _deletion(client, ehr_id, vo_uid, unknown)
            if change is not None:
                changes.append(change)
    return record_changes(source, site, Direction.TO_FHIR, changes, None, polled=False) if changes else 0


def _deletion(client, ehr_id: str, vo_uid: str, unknown: list) -> Change | None:
    """The composition's deletion if its last revision is one; None if it is still there (a paging miss)."""
    try:
        last = client.revision_history(ehr_id, vo_uid)[-1]
    except NotFound:
        # No history at all (the EHR purged, the site's database restored from an older
        # backup): nothing says it was deleted, and one such record must not stop the
        # site's detection. Left for a person: `reconcile` lists what the site lacks.
        unknown.append(vo_uid)
        return None
    if (last.change_type or "").lower() != "deleted":
        return None
    committed = datetime.fromisoformat(last.committed_at) if last.committed_at else None
    return Change(vo_uid, last.version_uid, int(last.version_uid.rsplit("::", 1)[1]), "deleted", committed, ehr_id)


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


def run_site_poll(site: Site) -> float | None:
    """Poll a site single-flight, keeping its poll state; returns the back-off delay if it failed.

    Single flight: a session advisory lock per site, so a second poll (a manual
    trigger, a re-sent message, the poll loop beside beat) does nothing while one
    runs. A failure is a transient fault of the site: the next poll waits
    1, 2, 4, ... s (``CONFLICTDESK_RETRY_DELAYS``, then its last value for as long as
    it lasts), the error class and the count of failed polls on the Cursor, shown
    on the health page. Never raises: one unreachable site must not stop the others.
    """
    source = site_source(site.name)
    key = zlib.crc32(f"poll:{source}".encode())
    with connection.cursor() as db:
        db.execute("SELECT pg_try_advisory_lock(%s)", [key])
        if not db.fetchone()[0]:
            return None  # another poll of this site is running
    try:
        poll_site(site)
    except Exception as exc:
        return _poll_failed(source, exc)
    finally:
        with connection.cursor() as db:
            db.execute("SELECT pg_advisory_unlock(%s)", [key])
    Cursor.objects.filter(source=source).update(
        poll_queued_at=None, poll_failures=0, poll_retry_at=None, poll_error="", poll_ok_at=timezone.now())
    return None


def _poll_failed(source: str, exc: Exception) -> float:
    cursor = Cursor.objects.get(source=source)
    failures = cursor.poll_failures + 1
    delays = settings.CONFLICTDESK_RETRY_DELAYS
    delay = float(delays[min(failures, len(delays)) - 1])
    Cursor.objects.filter(pk=cursor.pk).update(
        poll_queued_at=None, poll_failures=failures, poll_error=type(exc).__name__[:100],
        poll_retry_at=timezone.now() + timedelta(seconds=delay))
    log.warning("poll %s failed (%s, %s in a row): next in %.0f s", source, type(exc).__name__, failures, delay)
    return delay


def sites_to_poll(now=None) -> list[int]:
    """Enabled sites due a poll, each marked queued (single flight) in the same statement that picks it.

    Due: its interval has passed since the last poll (less ``TICK_SLACK``), it is not
    backing off, and no poll of it is queued or running (a mark older than
    ``CONFLICTDESK_POLL_STALE_SECONDS`` is a lost message and is taken over).
    """
    now = now or timezone.now()
    stale = now - timedelta(seconds=settings.CONFLICTDESK_POLL_STALE_SECONDS)
    cursors = {c.source: c for c in Cursor.objects.filter(source__startswith="site:")}
    due = []
    for site in Site.objects.filter(enabled=True):
        source = site_source(site.name)
        cursor = cursors.get(source) or Cursor.objects.get_or_create(source=source)[0]
        last = cursor.last_polled_at
        if last is not None and last + timedelta(seconds=site.poll_interval_seconds) - TICK_SLACK > now:
            continue
        if cursor.poll_retry_at is not None and cursor.poll_retry_at > now:
            continue
        taken = Cursor.objects.filter(
            Q(poll_queued_at__isnull=True) | Q(poll_queued_at__lt=stale), pk=cursor.pk
        ).update(poll_queued_at=now)
        if taken:
            due.append(site.pk)
    return due


def poll_not_sent(site_id: int) -> None:
    site = Site.objects.get(pk=site_id)
    Cursor.objects.filter(source=site_source(site.name)).update(poll_queued_at=None)


# Beat ticks every second; a site polled 0.9 s ago at a 1 s interval is due at
# this tick, or its effective interval doubles to two ticks.
TICK_SLACK = timedelta(seconds=0.5)


def poll_loop(*, stop=lambda: False, sleep=time.sleep, clock=time.monotonic) -> None:
    """Poll every enabled site (and the centre) at its own interval, from one small process.

    Beat-driven polling costs a tick, a ``poll_due`` task and a ``poll_site``
    task before a commit is even seen. Here a poll starts exactly one interval
    after the previous one started (or after its back-off, if it failed), and the
    runs it records are dispatched straight from its commit. With the loop
    running, beat sends no polls (``CONFLICTDESK_POLL_LOOP``).
    """
    # The centre's first poll comes one interval in, as with beat (a first poll reads its whole history).
    next_due: dict[str, float] = {CENTRAL: clock() + settings.CONFLICTDESK_CENTRAL_POLL_SECONDS}
    while not stop():
        close_old_connections()  # a long-lived process: drop connections the database closed
        now = clock()
        for site in Site.objects.filter(enabled=True):
            key = site_source(site.name)
            if next_due.get(key, 0.0) <= now:
                backoff = run_site_poll(site)
                next_due[key] = now + max(site.poll_interval_seconds, backoff or 0.0)
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
