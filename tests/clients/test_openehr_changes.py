"""The AQL change feed: keyset paging over time_committed, >= plus de-duplication."""

import json
from datetime import datetime, timedelta, timezone

import httpx
import pytest
import respx

from sync.clients.openehr import OpenEHRClient
from sync.clients.openehr_changes import CHANGES_AQL, iter_changes

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


class FakeCDR:
    """Latest-version-only store answering the change AQL like EHRbase does."""

    def __init__(self):
        self.latest = {}  # uid -> (version, committed_at)
        self.calls = []

    def commit(self, uid, at):
        version = self.latest.get(uid, (0, None))[0] + 1
        self.latest[uid] = (version, at)

    def query(self, aql, parameters, *, offset, fetch):
        assert aql == CHANGES_AQL
        self.calls.append((parameters["since"], offset))
        since = datetime.fromisoformat(parameters["since"])
        hits = sorted(
            ((at, uid, v) for uid, (v, at) in self.latest.items() if at >= since), key=lambda hit: hit[0]
        )
        return [
            {
                "ehr_id": "e1",
                "version_uid": f"{uid}::local.ehrbase.org::{v}",
                "committed_at": at.isoformat(),
                "change_type": "creation" if v == 1 else "modification",
                "template_id": "KDS_Prozedur",
            }
            for at, uid, v in hits[offset : offset + fetch]
        ]


def test_the_aql_compares_time_committed_itself_with_greater_or_equal():
    assert "WHERE v/commit_audit/time_committed >= $since" in CHANGES_AQL
    assert "ORDER BY v/commit_audit/time_committed ASC" in CHANGES_AQL


def test_it_reads_back_the_overlap_window():
    cdr = FakeCDR()
    cdr.commit("old", T0 - timedelta(seconds=10))
    cdr.commit("edge", T0 - timedelta(seconds=3))
    cdr.commit("new", T0 + timedelta(seconds=1))
    rows = list(iter_changes(cdr.query, T0, overlap_seconds=5, page_size=10))
    assert [r.uid for r in rows] == ["edge", "new"]
    assert cdr.calls[0][0] == "2026-03-01T11:59:55.000000+00:00"
    assert rows[1].committed_at == T0 + timedelta(seconds=1)
    assert rows[1].version == 1 and rows[1].template_id == "KDS_Prozedur"


def test_it_pages_by_keyset_and_drops_rows_seen_on_the_boundary():
    cdr = FakeCDR()
    for i in range(7):
        cdr.commit(f"c{i}", T0 + timedelta(seconds=i))
    rows = list(iter_changes(cdr.query, T0, overlap_seconds=0, page_size=3))
    assert [r.uid for r in rows] == [f"c{i}" for i in range(7)]
    assert [offset for _, offset in cdr.calls] == [0, 0, 0, 0]


def test_it_steps_through_a_full_page_sharing_one_instant():
    cdr = FakeCDR()
    for i in range(5):  # one contribution: five compositions, one time_committed
        cdr.commit(f"c{i}", T0)
    cdr.commit("later", T0 + timedelta(seconds=1))
    rows = list(iter_changes(cdr.query, T0, overlap_seconds=0, page_size=2))
    assert sorted(r.uid for r in rows) == ["c0", "c1", "c2", "c3", "c4", "later"]
    assert len(rows) == 6


def test_an_update_during_paging_does_not_hide_later_rows():
    cdr = FakeCDR()
    for i in range(4):
        cdr.commit(f"c{i}", T0 + timedelta(seconds=i))
    inner = cdr.query

    def query_then_update(*args, **kwargs):
        page = inner(*args, **kwargs)
        if len(cdr.calls) == 1:  # c0 is edited right after the first page was read
            cdr.commit("c0", T0 + timedelta(seconds=10))
        return page

    rows = list(iter_changes(query_then_update, T0, overlap_seconds=0, page_size=2))
    assert {r.uid for r in rows} == {"c0", "c1", "c2", "c3"}
    assert [r.version_uid for r in rows if r.uid == "c0"] == [
        "c0::local.ehrbase.org::1",
        "c0::local.ehrbase.org::2",
    ]


def test_it_refuses_a_naive_since():
    with pytest.raises(ValueError):
        list(iter_changes(FakeCDR().query, datetime(2026, 1, 1), overlap_seconds=0, page_size=10))


def test_the_client_runs_the_feed_through_post_query_aql():
    router = respx.Router(base_url="http://cdr.test/v1")
    route = router.post("/query/aql").respond(
        200,
        json={
            "columns": [{"name": n} for n in ("ehr_id", "version_uid", "committed_at", "change_type", "template_id")],
            "rows": [["e1", "u1::sys::1", "2026-03-01T12:00:01.5+00:00", "creation", "KDS_Prozedur"]],
        },
    )
    client = OpenEHRClient("http://cdr.test/v1", transport=httpx.MockTransport(router.handler))
    rows = list(client.changes_since(T0, overlap_seconds=1, page_size=50))
    assert [(r.ehr_id, r.uid, r.version) for r in rows] == [("e1", "u1", 1)]
    sent = json.loads(route.calls.last.request.content)
    assert sent["query_parameters"] == {"since": "2026-03-01T11:59:59.000000+00:00"}
    assert (sent["offset"], sent["fetch"]) == (0, 50)
