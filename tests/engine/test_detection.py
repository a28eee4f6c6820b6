"""Detection records each version once, moves the cursor with the rows, and never runs our echoes."""
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

from sync.clients.openehr_changes import ChangeRow
from sync.detection import poll_central, poll_site
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
    EngineWrite.objects.create(destination="central", object_id="Condition/c2", version="1")
    assert poll_central() == 2
    runs = list(SyncRun.objects.order_by("pk").values_list("change_event__source_object_id", "change_event__source_version"))
    assert runs == [("Condition/c1", "1"), ("Condition/c1", "2")]
    assert Cursor.objects.get(source="central").position == T0 + timedelta(seconds=5)
