"""Which chain an event joins.

Appends to one chain are serialised by its head row lock, so one chain per
site would make every run at a site wait for every other run's commit. A
record's events are spread over a fixed number of shard chains per source by
a stable hash of the record key: runs of different records rarely share a
head, and all events of one record stay in one chain, in order.
"""
from __future__ import annotations

import zlib

DEFAULT_SHARDS = 16


def record_partition(source: str, record_key: str, shards: int = DEFAULT_SHARDS) -> str:
    """'site:site1' + a record key -> 'site:site1#07' (the same shard for the same record, always)."""
    if not record_key:
        return source
    return f"{source}#{zlib.crc32(record_key.encode('utf-8')) % shards:02d}"
