"""The pure hashing rules: stable, documented, and sensitive to every field."""
import hashlib
from datetime import datetime, timedelta, timezone

import pytest

from audit.chain import CONTENT_FIELDS, GENESIS, canonical_json, event_content, event_hash, first_break, payload_hash

ROW = {
    "partition": "site:site1",
    "partition_seq": 1,
    "occurred_at": datetime(2026, 3, 1, 9, 30, 0, 5, tzinfo=timezone.utc),
    "actor": "worker@h:1",
    "actor_kind": "system",
    "action": "sync.detect",
    "outcome": "ok",
    "source": "site:site1",
    "source_object": "obs-1",
    "source_version": "v1",
    "destination": "",
    "destination_object": "",
    "destination_version": "",
    "patient_link_id": 7,
    "record_key": "k",
    "run_id": None,
    "source_hash": "a" * 64,
    "written_hash": "",
    "readback_hash": "",
    "detail": {"b": 1, "a": "x"},
    "prev_hash": GENESIS,
}


def test_it_serialises_canonically():
    assert canonical_json({"b": [1, "é"], "a": None}) == '{"a":null,"b":[1,"é"]}'


def test_it_hashes_payloads_regardless_of_key_order():
    assert payload_hash({"a": 1, "b": {"c": 2, "d": 3}}) == payload_hash({"b": {"d": 3, "c": 2}, "a": 1})
    assert payload_hash({"a": 1}) != payload_hash({"a": 2})


def test_it_keeps_the_documented_content_and_hash():
    content = event_content(ROW)
    assert list(content) == list(CONTENT_FIELDS)
    assert content["occurred_at"] == "2026-03-01T09:30:00.000005Z"
    # Written out by hand from the rule in audit/chain.py: if this changes, every stored chain stops verifying.
    expected = (
        '{"action":"sync.detect","actor":"worker@h:1","actor_kind":"system","destination":"",'
        '"destination_object":"","destination_version":"","detail":{"a":"x","b":1},'
        '"occurred_at":"2026-03-01T09:30:00.000005Z","outcome":"ok","partition":"site:site1","partition_seq":1,'
        f'"patient_link_id":7,"prev_hash":"{"0" * 64}","readback_hash":"","record_key":"k","run_id":null,'
        f'"source":"site:site1","source_hash":"{"a" * 64}","source_object":"obs-1","source_version":"v1",'
        '"written_hash":""}'
    )
    assert event_hash(ROW) == hashlib.sha256(expected.encode()).hexdigest()


def test_it_writes_timestamps_in_utc():
    plus_two = timezone(timedelta(hours=2))
    shifted = {**ROW, "occurred_at": ROW["occurred_at"].astimezone(plus_two)}
    assert event_hash(shifted) == event_hash(ROW)
    with pytest.raises(ValueError):
        event_hash({**ROW, "occurred_at": datetime(2026, 3, 1)})


@pytest.mark.parametrize("field", [f for f in CONTENT_FIELDS if f not in ("occurred_at", "detail", "partition_seq")])
def test_it_changes_the_hash_when_any_field_changes(field):
    changed = {**ROW, field: 99 if field in ("patient_link_id", "run_id") else "changed"}
    assert event_hash(changed) != event_hash(ROW)


def test_it_covers_time_detail_and_seq():
    assert event_hash({**ROW, "occurred_at": ROW["occurred_at"] + timedelta(microseconds=1)}) != event_hash(ROW)
    assert event_hash({**ROW, "detail": {"b": 2, "a": "x"}}) != event_hash(ROW)
    assert event_hash({**ROW, "partition_seq": 2}) != event_hash(ROW)


def _chain(n):
    rows, prev = [], GENESIS
    for seq in range(1, n + 1):
        row = {**ROW, "id": seq * 10, "partition_seq": seq, "prev_hash": prev}
        row["hash"] = prev = event_hash(row)
        rows.append(row)
    return rows


def test_it_finds_no_break_in_an_honest_chain():
    rows = _chain(4)
    assert first_break("p", rows, (4, rows[-1]["hash"])) == (4, None)
    assert first_break("p", [], None) == (0, None)


def test_it_names_the_kind_of_break():
    rows = _chain(4)
    rows[1]["action"] = "forged"
    _, broken = first_break("p", rows, (4, rows[-1]["hash"]))
    assert (broken.seq, broken.event_id, broken.kind, broken.content_ok, broken.link_ok) == (2, 20, "content", False, True)
    assert broken.stored == rows[1]["hash"] and broken.expected == event_hash(rows[1])

    rows = _chain(4)
    del rows[2]
    _, broken = first_break("p", rows, (4, rows[-1]["hash"]))
    assert (broken.seq, broken.event_id, broken.kind) == (3, 40, "gap")

    rows = _chain(4)
    _, broken = first_break("p", rows[:3], (4, rows[-1]["hash"]))
    assert (broken.seq, broken.event_id, broken.kind) == (4, None, "head")
