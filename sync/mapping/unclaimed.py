"""Why nothing claims a FHIR resource, and what a site's template would need to hold it (issue 21).

A resource no model file claims is left for a person (``unmapped-resource``), never filed under a near
meaning.  The data steward who reads that needs to know what to add: a grouper's grouping needs a SECTION;
a known concept with no archetype element (``codemaps/unhomed.yml``) names the element it would need."""
from __future__ import annotations

import functools
from pathlib import Path

import yaml

LEFT = "no model mapping claims this resource (by its code and category); left for a person"
SECTION = "openEHR-EHR-SECTION.adhoc.v1"


@functools.lru_cache(maxsize=1)
def _unhomed() -> dict:
    return yaml.safe_load((Path(__file__).parent / "codemaps" / "unhomed.yml").read_text(encoding="utf-8"))


def is_grouper(resource: dict) -> bool:
    """An Observation that only groups others (a panel: hasMember, no value, no component, no absent reason)."""
    return (resource.get("resourceType") == "Observation" and bool(resource.get("hasMember"))
            and not any(k.startswith("value") or k in ("component", "dataAbsentReason") for k in resource))


def known(resource: dict) -> dict | None:
    """The unhomed.yml row of the resource's code, or of a profile it declares."""
    table = _unhomed()
    codes = table.get("codes") or {}
    for c in (resource.get("code") or {}).get("coding") or []:
        row = codes.get(f"{c.get('system')}|{c.get('code')}")
        if row:
            return row
    for p in (resource.get("meta") or {}).get("profile") or []:
        key = (table.get("profiles") or {}).get(str(p).split("|")[0])
        if key:
            return codes[key]
    return None


def needs(resource: dict) -> str | None:
    """What the site's template would need for this resource, when that is known; else None."""
    if is_grouper(resource):
        n = len(resource["hasMember"])
        return (f"a grouper of {n} member{'s' if n != 1 else ''}: each member maps on its own when it is sent; "
                f"the grouping itself would need a SECTION ({SECTION}) in the site's template")
    row = known(resource)
    return f"{row['concept']}: needs {row['needs']}" if row else None


def reason(resource: dict) -> str:
    """The loss reason of a resource nothing claims: left for a person, and what would hold it when known."""
    why = needs(resource)
    return f"{LEFT}; {why}" if why else LEFT
