"""Shard chains: stable per record, spread across records."""
from audit.partitions import record_partition


def test_a_record_always_lands_in_the_same_shard_of_its_source():
    key = "site:site1:0b9a8e52-4a33-4d4c-9c4e-1f0e0c7b3a21"
    assert record_partition("site:site1", key) == record_partition("site:site1", key)
    assert record_partition("site:site1", key).startswith("site:site1#")


def test_records_spread_over_the_shards():
    shards = {record_partition("site:site1", f"site:site1:record-{i}") for i in range(400)}
    assert len(shards) == 16


def test_an_event_without_a_record_stays_in_its_source_chain():
    assert record_partition("central", "") == "central"
