"""Where a FHIR-born entry came from: the central resource its FEEDER_AUDIT names.

from_fhir writes, on every entry it builds from FHIR resources that are not ours, a feeder audit whose
originating system is FHIR and whose first ``originating_system_item_ids`` entry is the group's primary
resource (``Type/id/_history/version``).  A later central edit of that resource must replace the entry
(from_fhir), and the site's edit of it must update that resource, not make a twin (the engine).
"""
from __future__ import annotations

from . import rmpath

SYSTEM_ID = "FHIR"


def born_entries(composition: dict) -> dict[str, str]:
    """``Type/id`` of the FHIR resource each FHIR-born entry was made from -> the entry's path."""
    out: dict[str, str] = {}
    for path, entry in rmpath.entries(composition):
        fa = entry.get("feeder_audit") or {}
        ids = fa.get("originating_system_item_ids") or []
        if (fa.get("originating_system_audit") or {}).get("system_id") == SYSTEM_ID and ids and isinstance(ids[0], dict):
            out.setdefault(str(ids[0].get("id", "")).split("/_history/")[0], path)
    return out
