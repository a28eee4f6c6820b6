"""Echo suppression: the versions the engine itself wrote.

A write step records every version it created in the same transaction as its
checkpoint (invariant 7); detection and each run's first step ask here before
treating a version as a change, so the engine's own writes never flow back.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

from sync.models import EngineWrite, SyncRun


def is_own_write(destination: str, object_id: str, version: str) -> bool:
    return EngineWrite.objects.filter(destination=destination, object_id=object_id, version=version).exists()


def recording(destination: str, writes: Iterable[tuple[str, str]]) -> Callable[[SyncRun], None]:
    """A step effect that remembers (object id, version) pairs written to ``destination``."""
    writes = list(writes)

    def effect(run: SyncRun) -> None:
        # One statement for the whole transaction's answer; a re-run's pairs are already there.
        EngineWrite.objects.bulk_create(
            [EngineWrite(destination=destination, object_id=o, version=v, run=run) for o, v in writes],
            ignore_conflicts=True,
        )

    return effect


def central_writes(written: list[dict]) -> list[tuple[str, str]]:
    """(Type/id, version) pairs of a central transaction's answer (see bundle.written_entries)."""
    return [(f"{w['type']}/{w['id']}", w["version"]) for w in written]
