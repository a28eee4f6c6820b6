"""A record born at the centre keeps its central identity when the site sends it back.

The reverse run writes a central resource (a tumour board's CarePlan, its orders and goals) into a
site composition; each entry's FEEDER_AUDIT names the resource it was made from (``Type/id`` first in
``originating_system_item_ids``), and the RecordLink knows the record by those central references.  When
the site then edits that composition, the forward mapping makes resources with our own source identifiers
and ids: sent as they are, the centre would get a second CarePlan and the original would be retired.
So the resource made from a FHIR-born entry is given back the central id and no source identifier of
ours (as the centre made it), and references to it are rewritten: the transaction updates the
original with If-Match (its record key is the central reference), and the next central edit finds the
entry again by its feeder audit (``sync.mapping.origins.born_entries``).  Entries made at the site
(say, the chemotherapy given) keep our identifiers and are created.
"""
from __future__ import annotations

from sync.identity import SOURCE_SYSTEM
from sync.mapping import feeder, rmpath
from sync.mapping.identifiers import parse_source_identifier
from sync.mapping.origins import born_entries


def with_central_identity(composition: dict, resources: list[dict]) -> list[dict]:
    """``resources`` (to_fhir's, in order) with every resource made from a FHIR-born entry under the central
    id it came from; copies where changed, the input is not modified.

    An entry's feeder audit names its resources (``originating_system_item_ids``: the group's primary
    first, then what it holds, e.g. a lab report's results and specimen); each resource the forward mapping
    makes under that entry takes the first not yet taken of its type, one sharing a code first (as the
    guard pairs twins), so a report's results keep their own ids whatever order they come in."""
    origins = _origins(composition)
    renamed: dict[str, str] = {}
    taken: set[str] = set()
    for r in resources:
        src = parse_source_identifier(r)
        path = next((p for p in origins if src and (src[2] == p or src[2].startswith(p + "/"))), None)
        if path is None:
            continue
        free = [(ref, kept) for ref, kept in origins[path]
                if ref not in taken and ref.startswith(f"{r['resourceType']}/")]
        if not free:
            continue
        ref = next((ref for ref, kept in free if kept is not None and _codes(kept) & _codes(r)), free[0][0])
        taken.add(ref)
        renamed[f"{r['resourceType']}/{r['id']}"] = ref
    if not renamed:
        return resources
    out = []
    for r in resources:
        r = _rewrite(r, renamed)
        ref = renamed.get(f"{r['resourceType']}/{r['id']}")
        if ref:
            r = {**r, "id": ref.split("/", 1)[1],
                 "identifier": [i for i in r.get("identifier") or [] if i.get("system") != SOURCE_SYSTEM]}
            if not r["identifier"]:
                del r["identifier"]
        out.append(r)
    return out


def _origins(composition: dict) -> dict[str, list[tuple[str, dict | None]]]:
    """Entry path -> the central resources its feeder audit names (``Type/id``, the kept copy if any), but
    those kept by reference: a side resource (a Practitioner, a result no row read) is made by no node, so no
    resource the site's entry makes is that one (an edited analyte never takes an unread result's id)."""
    out = {}
    for path in born_entries(composition).values():
        entry = rmpath.find_one(composition, path)
        records = feeder.kept(entry)
        kept = {k.ref: k.resource for k in records}
        side = {k.ref for k in records if k.anchor is None}
        ids = [str(i.get("id", "")).split("/_history/")[0]
               for i in entry["feeder_audit"]["originating_system_item_ids"] if isinstance(i, dict)]
        out[path] = [(ref, kept.get(ref)) for ref in ids if ref not in side]
    return out


def _codes(resource: dict) -> set:
    return {(c.get("system"), c.get("code")) for c in (resource.get("code") or {}).get("coding") or []
            if isinstance(c, dict)}


def _rewrite(value, renamed: dict[str, str]):
    if isinstance(value, dict):
        out = {k: _rewrite(v, renamed) for k, v in value.items()}
        if isinstance(out.get("reference"), str) and out["reference"] in renamed:
            out["reference"] = renamed[out["reference"]]
        return out
    if isinstance(value, list):
        return [_rewrite(v, renamed) for v in value]
    return value

