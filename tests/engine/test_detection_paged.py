"""Detection pages: a first poll or a catch-up reads and commits a page at a time (10,000 changes),
the hot poll's cost does not grow with the site, and a site poll is single-flight and backs off."""
import re
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from sync import detection
from sync.clients.errors import TransientError
from sync.clients.openehr_changes import ChangeRow, iter_changes
from sync.detection import poll_central, poll_site, run_site_poll, sites_to_poll
from sync.models import ChangeEvent, Cursor, PatientLink, RecordLink, SyncRun

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)
MANY = 10_000
PAGE = 500


def _row(i: int) -> ChangeRow:
    # Every version committed 1 ms apart, four objects sharing each instant now and then.
    return ChangeRow("ehr-1", f"{i:08d}-0000-0000-0000-000000000000::site1::1", T0 + timedelta(milliseconds=i // 4),
                     "creation", "vitals")


class Feed:
    """A change feed that counts what it has handed out (to show it is read lazily, a page at a time)."""

    def __init__(self, n: int, fail_after: int | None = None):
        self.n, self.fail_after, self.read = n, fail_after, 0

    def __call__(self, since, overlap_seconds):
        start = since - timedelta(seconds=overlap_seconds)
        for i in range(self.n):
            row = _row(i)
            if row.committed_at < start:
                continue
            if self.fail_after is not None and self.read >= self.fail_after:
                raise TransientError(method="POST", path="query/aql", status=503)
            self.read += 1
            yield row


@pytest.fixture
def paged(settings, monkeypatch):
    settings.CONFLICTDESK_DETECTION_PAGE_SIZE = PAGE
    pages = []
    record = detection.record_changes

    def recording(source, site, direction, changes, newest, **kw):
        pages.append(len(changes))
        return record(source, site, direction, changes, newest, **kw)

    monkeypatch.setattr(detection, "record_changes", recording)
    return pages


def test_a_first_poll_of_10000_changes_reads_and_commits_a_page_at_a_time(
    engine, paged, monkeypatch, django_capture_on_commit_callbacks
):
    feed = Feed(MANY)
    engine.openehr.changes_since = feed
    read_at_commit = []
    record = detection.record_changes

    def watching(*args, **kw):
        read_at_commit.append(feed.read)
        return record(*args, **kw)

    monkeypatch.setattr(detection, "record_changes", watching)
    with django_capture_on_commit_callbacks(execute=True):
        assert poll_site(engine.site) == MANY
    assert paged == [PAGE] * (MANY // PAGE)
    # Lazily: when page k commits the feed has handed out at most k + 1 pages (bounded memory).
    assert all(read <= (k + 1) * PAGE + 1 for k, read in enumerate(read_at_commit)), read_at_commit[:5]
    assert ChangeEvent.objects.count() == MANY == SyncRun.objects.count()
    assert sorted(run_id for run_id, _ in engine.sent) == sorted(SyncRun.objects.values_list("pk", flat=True))
    assert Cursor.objects.get(source="site:site1").position == _row(MANY - 1).committed_at


def test_a_poll_cut_half_way_keeps_its_pages_and_the_next_poll_resumes(engine, paged, settings):
    settings.CONFLICTDESK_POLL_OVERLAP_SECONDS = 0
    engine.openehr.changes_since = Feed(MANY, fail_after=5_250)
    with pytest.raises(TransientError):
        poll_site(engine.site)
    assert ChangeEvent.objects.count() == 5_000  # ten whole pages, not the torn eleventh
    position = Cursor.objects.get(source="site:site1").position
    assert position == _row(4_999).committed_at
    engine.openehr.changes_since = Feed(MANY)
    poll_site(engine.site)  # from the cursor: the rows sharing its instant again, de-duplicated
    assert ChangeEvent.objects.count() == MANY == SyncRun.objects.count()


def test_the_change_feed_remembers_only_the_rows_at_its_cursor():
    """iter_changes de-duplicates across its keyset pages without keeping every row it has seen."""
    rows = [_row(i) for i in range(MANY)]
    seen_sizes = []

    def query(aql, parameters, *, offset, fetch):
        since = datetime.fromisoformat(parameters["since"])
        matching = [r for r in rows if r.committed_at >= since][offset:offset + fetch]
        return [{"ehr_id": r.ehr_id, "version_uid": r.version_uid, "committed_at": r.committed_at.isoformat(),
                 "change_type": r.change_type, "template_id": r.template_id} for r in matching]

    out = []
    feed = iter_changes(query, T0, overlap_seconds=0, page_size=PAGE)
    for row in feed:
        out.append(row)
        seen_sizes.append(len(feed.gi_frame.f_locals["seen"]))
    assert [r.version_uid for r in out] == [r.version_uid for r in rows]
    assert max(seen_sizes) <= PAGE + 4


def _history_entry(rid: str, version: int, at: datetime):
    return SimpleNamespace(resource_type="Condition", id=rid, version_id=str(version), deleted=False,
                           last_updated=at.isoformat())


def test_a_central_catch_up_of_10000_versions_pages_oldest_window_first(engine, paged, monkeypatch, settings):
    settings.CONFLICTDESK_POLL_OVERLAP_SECONDS = 0
    start = T0
    # 2,500 resources, 4 versions each, newest first as HAPI lists them.
    history = sorted(
        (_history_entry(f"c{r}", v, start + timedelta(milliseconds=r + 2_500 * (v - 1))) for r in range(2_500)
         for v in range(1, 5)),
        key=lambda e: e.last_updated, reverse=True)
    windows = []

    def central_history(fhir, since, until, types=None):
        windows.append((since, until))
        for e in history:
            at = datetime.fromisoformat(e.last_updated)
            if at >= since and (until is None or at < until):
                yield e

    monkeypatch.setattr(detection, "central_history", central_history)
    Cursor.objects.create(source="central", position=start)
    assert poll_central() == MANY
    assert max(paged) <= PAGE and sum(paged) == MANY
    versions = {}
    for object_id, version in SyncRun.objects.order_by("pk").values_list(
            "change_event__source_object_id", "change_event__version_number"):
        assert version == versions.get(object_id, 0) + 1, (object_id, version)  # each object's versions in order
        versions[object_id] = version
    assert Cursor.objects.get(source="central").position == datetime.fromisoformat(history[0].last_updated)
    assert windows[-1][1] is None  # the last window is open-ended: nothing after it is skipped


def _links(engine, n: int):
    patient, _ = PatientLink.objects.get_or_create(site=engine.site, ehr_id="ehr-1", fhir_patient_id="p1")
    RecordLink.objects.bulk_create(
        RecordLink(site=engine.site, patient_link=patient, versioned_object_uid=f"vo-{i}",
                   openehr_version_uid=f"vo-{i}::site1::1") for i in range(n))


def _quiet_poll_queries(engine) -> list[str]:
    engine.openehr.changes_since = lambda since, overlap_seconds: iter([_row(1)])
    poll_site(engine.site)  # first: records the row
    with CaptureQueriesContext(connection) as ctx:
        run_site_poll(engine.site)  # the steady state: the overlap re-reads one row
    # The statements, without their values (times, ids, savepoint names).
    return [re.sub(r"'[^']*'|\d+", "?", q["sql"].split(" WHERE")[0]) for q in ctx.captured_queries]


def test_the_hot_poll_costs_the_same_with_200_and_20000_linked_records(engine):
    _links(engine, 200)
    small = _quiet_poll_queries(engine)
    RecordLink.objects.all().delete()
    _links(engine, 20_000)
    assert _quiet_poll_queries(engine) == small
    assert not any("sync_recordlink" in q for q in small)


def _unreachable(since, overlap_seconds):
    raise TransientError(method="POST", path="query/aql", status=None, reason="connection refused")
    yield  # pragma: no cover


def test_a_site_that_does_not_answer_backs_off_on_the_schedule_and_recovers(engine, settings):
    settings.CONFLICTDESK_RETRY_DELAYS = (1, 2, 4)
    engine.openehr.changes_since = _unreachable
    delays = [run_site_poll(engine.site) for _ in range(5)]
    assert delays == [1.0, 2.0, 4.0, 4.0, 4.0]
    cursor = Cursor.objects.get(source="site:site1")
    assert (cursor.poll_failures, cursor.poll_error, cursor.poll_queued_at) == (5, "TransientError", None)
    assert sites_to_poll() == []  # backing off
    assert sites_to_poll(now=cursor.poll_retry_at + timedelta(milliseconds=1)) == [engine.site.pk]
    engine.openehr.changes_since = lambda since, overlap_seconds: iter([])
    assert run_site_poll(engine.site) is None
    cursor.refresh_from_db()
    assert (cursor.poll_failures, cursor.poll_error, cursor.poll_retry_at) == (0, "", None)
    assert cursor.poll_ok_at is not None


def test_a_poll_queued_or_running_is_not_queued_again(engine, settings):
    assert sites_to_poll() == [engine.site.pk]
    assert sites_to_poll() == []  # queued: single flight
    cursor = Cursor.objects.get(source="site:site1")
    later = cursor.poll_queued_at + timedelta(seconds=settings.CONFLICTDESK_POLL_STALE_SECONDS + 1)
    assert sites_to_poll(now=later) == [engine.site.pk]  # a lost message is taken over


def test_a_second_poll_while_one_runs_does_nothing(engine):
    """The run-time half of single flight: the site's advisory lock, held by another session."""
    import psycopg

    from sync.identity import site_source

    calls = []
    engine.openehr.changes_since = lambda since, overlap_seconds: calls.append(since) or iter([])
    Cursor.objects.get_or_create(source=site_source("site1"))
    params = connection.get_connection_params()
    key = detection.zlib.crc32(b"poll:site:site1")
    with psycopg.connect(**{k: v for k, v in params.items() if k != "cursor_factory"}) as other:
        other.execute("SELECT pg_advisory_lock(%s)", [key])
        assert run_site_poll(engine.site) is None and calls == []
        other.execute("SELECT pg_advisory_unlock(%s)", [key])
    run_site_poll(engine.site)
    assert len(calls) == 1


def test_the_poll_loop_waits_out_a_failing_site_back_off(engine, settings, monkeypatch):
    settings.CONFLICTDESK_RETRY_DELAYS = (1, 2, 4)
    settings.CONFLICTDESK_CENTRAL_POLL_SECONDS = 3600
    monkeypatch.setattr(detection, "close_old_connections", lambda: None)  # the test's transaction stays open
    engine.site.poll_interval_seconds = 1
    engine.site.save()
    now, polled = [0.0], []

    def unreachable(since, overlap_seconds):
        polled.append(now[0])
        return _unreachable(since, overlap_seconds)

    engine.openehr.changes_since = unreachable

    def sleep(seconds):
        now[0] += seconds

    detection.poll_loop(stop=lambda: now[0] > 10, sleep=sleep, clock=lambda: now[0])
    assert [round(t, 2) for t in polled] == [0.0, 1.0, 3.0, 7.0]  # 1, 2, 4, 4 s apart: backing off
