"""Change detection on an openEHR CDR through AQL on ``commit_audit/time_committed``.

What EHRbase gives us (docs/real-servers.md A.6) and what follows from it:

* Only the latest version of each composition is visible, and deleted
  compositions drop out entirely. This feed is good for state sync; deletes
  must be found another way (``revision_history`` or comparing id sets).
* The WHERE clause must compare ``v/commit_audit/time_committed`` itself; the
  ``/value`` form is SELECT-only.
* Several compositions can share one ``time_committed`` (one contribution),
  so a strict ``>`` on the last seen time can lose rows. We use ``>=`` and
  de-duplicate on ``version_uid``.
* Offset paging alone is unsafe while sites keep committing: an update moves
  a composition to the end of the ordering and shifts every later row one
  place left, so a row can slip between two pages unseen. We page by keyset
  instead (restart from the last row's time) and only fall back to an offset
  when a whole page shares one instant.

The caller keeps its watermark and passes ``overlap_seconds`` to re-read a
small window, which absorbs clock skew between commit and visibility. Rows in
that window come back again; the engine's steps are idempotent by version uid.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Iterator

CHANGES_AQL = (
    "SELECT e/ehr_id/value AS ehr_id, c/uid/value AS version_uid, "
    "v/commit_audit/time_committed/value AS committed_at, "
    "v/commit_audit/change_type/value AS change_type, "
    "c/archetype_details/template_id/value AS template_id "
    "FROM EHR e CONTAINS VERSION v CONTAINS COMPOSITION c "
    "WHERE v/commit_audit/time_committed >= $since "
    "ORDER BY v/commit_audit/time_committed ASC"
)

Query = Callable[..., list[dict[str, Any]]]


@dataclass(frozen=True)
class ChangeRow:
    """One composition whose latest version was committed in the window."""

    ehr_id: str
    version_uid: str
    committed_at: datetime
    change_type: str | None
    template_id: str | None

    @property
    def uid(self) -> str:
        return self.version_uid.split("::", 1)[0]

    @property
    def version(self) -> int:
        return int(self.version_uid.rsplit("::", 1)[1])


def iter_changes(
    query: Query, since: datetime, *, overlap_seconds: float, page_size: int
) -> Iterator[ChangeRow]:
    """Yield each changed composition once, oldest commit first.

    ``query`` is ``OpenEHRClient.query``. ``since`` must be timezone-aware:
    EHRbase compares instants, and a naive time would silently shift by the
    server's offset.
    """
    if since.tzinfo is None:
        raise ValueError("since must be timezone-aware")
    cursor = since - timedelta(seconds=overlap_seconds)
    offset = 0
    # Only rows at or after the cursor can come back, so only those are remembered:
    # memory stays at about a page however long the feed (a first poll, a catch-up).
    seen: dict[str, datetime] = {}  # version uid -> its commit time
    while True:
        rows = [_row(r) for r in query(CHANGES_AQL, {"since": _instant(cursor)}, offset=offset, fetch=page_size)]
        fresh = [row for row in rows if row.version_uid not in seen]
        for row in fresh:
            seen[row.version_uid] = row.committed_at
            yield row
        if len(rows) < page_size:
            return
        if fresh:
            cursor, offset = rows[-1].committed_at, 0
            seen = {uid: at for uid, at in seen.items() if at >= cursor}
        else:
            # A full page of rows we already had: they all share the cursor's
            # instant, so step over them within it.
            offset += len(rows)


def _row(raw: dict[str, Any]) -> ChangeRow:
    return ChangeRow(
        ehr_id=raw["ehr_id"],
        version_uid=raw["version_uid"],
        committed_at=datetime.fromisoformat(raw["committed_at"]),
        change_type=raw.get("change_type"),
        template_id=raw.get("template_id"),
    )


def _instant(moment: datetime) -> str:
    # Full microseconds: rounding the cursor down would re-read rows we have
    # already de-duplicated, rounding it up would skip some.
    return moment.isoformat(timespec="microseconds")
