"""Detection records each version once, moves the cursor with the rows, and never runs our echoes."""
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

from sync.clients.openehr_changes import ChangeRow
from sync.detection import check_deletions, poll_central, poll_site
from sync.models import ChangeEvent, Cursor, EngineWrite, SyncRun

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)


def rows(*specs):
    return [ChangeRow("ehr-1", f"{uid}::site1::{v}", T0 + timedelta(seconds=s), "creation", "vitals") for uid, v, s in specs]


def test_a_site_poll_records_events_runs_and_the_cursor_together(engine, monkeypatch):
    feed = rows(("aaa", 1, 1), ("bbb", 2, 2))
    engine.openehr.changes_since = lambda since, overlap_seconds: iter(feed)
    assert poll_site(engine.site) == 2
    assert SyncRun.objects.count() == 2 and len(engine.sent) == 0  # hints wait for the commit
    assert Cursor.objects.get(source="site:site1").position == T0 + timedelta(seconds=2)
    assert poll_site(engine.site) == 0  # the overlap re-reads rows: de-duplicated
    assert ChangeEvent.objects.count() == 2


def test_a_version_we_wrote_is_an_echo_without_a_run(engine):
    EngineWrite.objects.create(destination="site:site1", object_id="aaa", version="aaa::site1::2")
    engine.openehr.changes_since = lambda since, overlap_seconds: iter(rows(("aaa", 2, 1)))
    assert poll_site(engine.site) == 0
    assert ChangeEvent.objects.get().status == ChangeEvent.Status.ECHO
    assert not SyncRun.objects.exists()


def test_central_history_is_queued_oldest_first_and_echoes_skipped(engine):
    def entry(rid, v, s):
        return SimpleNamespace(resource_type="Condition", id=rid, version_id=str(v), deleted=False,
                               last_updated=(T0 + timedelta(seconds=s)).isoformat())

    engine.fhir.history = lambda since, types: iter([entry("c1", 2, 5), entry("c1", 1, 3), entry("c2", 1, 4)])
    Cursor.objects.create(source="central", position=T0)
    EngineWrite.objects.create(destination="central", object_id="Condition/c2", version="1")
    assert poll_central() == 2
    runs = list(SyncRun.objects.order_by("pk").values_list("change_event__source_object_id", "change_event__source_version"))
    assert runs == [("Condition/c1", "1"), ("Condition/c1", "2")]
    assert Cursor.objects.get(source="central").position == T0 + timedelta(seconds=5)


def _asked_since(engine) -> list:
    asked = []
    engine.fhir.history = lambda since, types: asked.append(since) or iter([])
    return asked


def test_a_never_polled_central_server_is_read_from_now_not_from_its_beginning(engine, settings):
    settings.CONFLICTDESK_CENTRAL_SINCE = ""
    asked = _asked_since(engine)
    before = datetime.now(timezone.utc)
    poll_central()
    overlap = timedelta(seconds=settings.CONFLICTDESK_POLL_OVERLAP_SECONDS)
    assert before - overlap <= asked[0] <= datetime.now(timezone.utc) - overlap
    assert Cursor.objects.get(source="central").position >= before


def test_a_backfill_date_is_where_a_never_polled_central_server_is_read_from(engine, settings):
    settings.CONFLICTDESK_CENTRAL_SINCE = "2026-01-01T00:00:00Z"
    asked = _asked_since(engine)
    poll_central()
    overlap = timedelta(seconds=settings.CONFLICTDESK_POLL_OVERLAP_SECONDS)
    assert asked == [datetime(2026, 1, 1, tzinfo=timezone.utc) - overlap]


def _links(engine, *vo_uids, ehr_id="ehr-1"):
    from sync.models import PatientLink, RecordLink

    patient = PatientLink.objects.create(site=engine.site, ehr_id=ehr_id, fhir_patient_id=f"p-{ehr_id}")
    for vo in vo_uids:
        RecordLink.objects.create(site=engine.site, patient_link=patient, versioned_object_uid=vo,
                                  openehr_version_uid=f"{vo}::site1::1", fhir_resources=[{"type": "Observation", "id": vo}])


def _paged_live(engine, vo_uids, ehr_of=lambda vo: "ehr-1"):
    calls = []

    def query(aql, parameters=None, *, offset=None, fetch=None):
        calls.append((offset, fetch))
        rows = sorted(({"ehr_id": ehr_of(vo), "version_uid": f"{vo}::site1::1"} for vo in vo_uids),
                      key=lambda r: (r["ehr_id"], r["version_uid"]))
        return rows[offset:offset + fetch]

    engine.openehr.query = query
    engine.openehr.changes_since = lambda since, overlap_seconds: iter([])
    return calls


def test_the_hot_poll_never_reads_the_live_set(engine):
    _links(engine, "v-live", "v-gone")
    calls = _paged_live(engine, ["v-live"])
    assert poll_site(engine.site) == 0
    assert calls == [] and not ChangeEvent.objects.exists()


def test_deletions_are_found_by_reading_the_site_live_set_in_pages(engine, monkeypatch):
    from sync import detection
    from sync.clients.openehr import Revision

    monkeypatch.setattr(detection, "AQL_PAGE_SIZE", 2)
    _links(engine, "v-live", "v-gone")
    calls = _paged_live(engine, ["a", "b", "c", "d", "v-live"])
    engine.openehr.revision_history = lambda ehr, vo: [
        Revision(f"{vo}::site1::1", T0.isoformat(), "creation"), Revision(f"{vo}::site1::2", T0.isoformat(), "deleted")]
    assert check_deletions(engine.site) == 1
    assert calls == [(0, 2), (2, 2), (4, 2)]
    assert Cursor.objects.get(source="site:site1").deletions_checked_at is not None
    event = ChangeEvent.objects.get()
    assert (event.source_object_id, event.change_type, event.version_number) == ("v-gone", "deleted", 2)


def test_the_deletion_check_asks_one_paged_query_per_site_whatever_the_number_of_ehrs(engine, monkeypatch):
    from sync import detection
    from sync.clients.openehr import Revision

    monkeypatch.setattr(detection, "AQL_PAGE_SIZE", 2)
    ehrs = [f"ehr-{i}" for i in range(6)]
    for ehr in ehrs:
        _links(engine, f"{ehr}-live", f"{ehr}-gone", ehr_id=ehr)
    _links(engine, "all-gone", ehr_id="ehr-emptied")  # an EHR whose every composition was deleted
    calls = _paged_live(engine, [f"{ehr}-live" for ehr in ehrs], ehr_of=lambda vo: vo.rsplit("-", 1)[0])
    asked = []

    def history(ehr, vo):
        asked.append(vo)
        return [Revision(f"{vo}::site1::1", T0.isoformat(), "creation"),
                Revision(f"{vo}::site1::2", T0.isoformat(), "deleted")]

    engine.openehr.revision_history = history
    assert check_deletions(engine.site) == 7
    assert len(calls) == 4  # 6 live compositions at 2 a page, and the empty page that ends the feed: not 7 EHRs
    assert sorted(asked) == sorted([f"{ehr}-gone" for ehr in ehrs] + ["all-gone"])  # only the suspects
    assert check_deletions(engine.site) == 0  # recorded once


def test_a_composition_missed_between_pages_is_not_taken_for_a_deletion(engine):
    from sync.clients.openehr import Revision

    _links(engine, "v-shifted")
    _paged_live(engine, ["a"])  # v-shifted slipped between two pages
    engine.openehr.revision_history = lambda ehr, vo: [Revision(f"{vo}::site1::1", T0.isoformat(), "creation")]
    assert check_deletions(engine.site) == 0 and not ChangeEvent.objects.exists()


def test_a_linked_composition_the_site_has_no_history_of_does_not_stop_detection(engine, caplog):
    from sync.clients.errors import NotFound

    _links(engine, "v-purged")
    _paged_live(engine, [])

    def no_history(ehr, vo):
        raise NotFound(method="GET", path=f"ehr/{ehr}/versioned_composition/{vo}/revision_history", status=404)

    engine.openehr.revision_history = no_history
    assert check_deletions(engine.site) == 0
    assert not ChangeEvent.objects.exists()  # no invented deletion
    assert "no history at the site (first: v-purged)" in caplog.text
    caplog.clear()
    check_deletions(engine.site)
    assert "no history" not in caplog.text  # said once per process, not every pass


def test_reconcile_walks_the_keyset_paged_feed_and_can_keep_to_one_ehr(engine):
    from sync.clients.openehr import Revision
    from sync.workflow.reconcile import reconcile_site

    feed = rows(("aaa", 1, 1), ("bbb", 1, 2)) + [ChangeRow("ehr-2", "ccc::site1::1", T0, "creation", "vitals")]
    engine.openehr.changes_since = lambda since, overlap_seconds: iter(feed)
    engine.openehr.revision_history = lambda ehr, vo: [Revision(f"{vo}::site1::1", (T0 + timedelta(seconds=1)).isoformat(), "creation")]
    ChangeEvent.objects.create(direction="to_fhir", source="site:site1", site=engine.site, source_object_id="aaa",
                               source_version="aaa::site1::1", version_number=1, status="synced")
    report = reconcile_site(engine.site, T0 - timedelta(minutes=1), T0 + timedelta(minutes=1), ehr_id="ehr-1")
    assert dict(report.by_state) == {"synced": ["aaa::site1::1"]} and report.unaccounted == ["bbb::site1::1"]
