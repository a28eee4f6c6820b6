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
from sync.mapping.origins import born_entries
from sync.mapping.identifiers import parse_source_identifier


def with_central_identity(composition: dict, resources: list[dict]) -> list[dict]:
    """``resources`` (to_fhir's, in order) with the primary resource of each FHIR-born entry under its
    central id; copies where changed, the input is not modified."""
    born = {path: ref for ref, path in born_entries(composition).items()}
    renamed: dict[str, str] = {}
    taken: set[str] = set()
    for r in resources:
        src = parse_source_identifier(r)
        path = next((p for p in born if src and (src[2] == p or src[2].startswith(p + "/"))), None)
        if path is None or path in taken or not born[path].startswith(f"{r['resourceType']}/"):
            continue
        taken.add(path)
        renamed[f"{r['resourceType']}/{r['id']}"] = born[path]
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


def _rewrite(value, renamed: dict[str, str]):
    if isinstance(value, dict):
        out = {k: _rewrite(v, renamed) for k, v in value.items()}
        if isinstance(out.get("reference"), str) and out["reference"] in renamed:
            out["reference"] = renamed[out["reference"]]
        return out
    if isinstance(value, list):
        return [_rewrite(v, renamed) for v in value]
    return value

