"""Centre -> site: a central deletion (or entered-in-error) takes the entry out at the site.

A linked resource deleted centrally, or marked entered-in-error, removes the
entry it came from: the site gets a new composition version without it (the
record's other resources mapped on top of the site's composition, as any
reverse run), carrying a FEEDER_AUDIT that names the central version which
asked for it; when no clinical entry would remain, the composition itself is
deleted. Both writes quote the version the plan saw (If-Match / the preceding
version uid). The same holds for compositions the engine created from a
centrally born resource: the RecordLink is the record either way.
"""
from __future__ import annotations

import copy

from sync.clients.errors import NotFound
from sync.mapping import rmpath
from sync.mapping.composition import RESOURCES as COMPOSITION_LEVEL
from sync.mapping.from_fhir import PART_ONLY
from sync.mapping.identifiers import parse_source_identifier, split_source_path

from .deletion import deletion_provenance, is_retired, provenance_entry, retired


def removed_resource(fhir, event) -> tuple[dict | None, dict]:
    """(the version read, the resource as it was before the removal) for a central deletion or retirement.

    A deleted version has no body; the version before it says what was removed.
    Returns (None, previous) for a deletion, (resource, resource) for a retirement,
    and (resource, {}) for a change that removes nothing.
    """
    rtype, rid = event.source_object_id.split("/", 1)
    if event.change_type == "deleted":
        return None, fhir.vread(rtype, rid, str(int(event.source_version) - 1))
    resource = fhir.vread(rtype, rid, event.source_version)
    return resource, (resource if is_retired(resource) else {})


def remaining(resources: list[dict], removed: dict) -> list[dict]:
    """The record's resources that stay: not the removed one, none marked entered-in-error."""
    gone = (removed.get("resourceType"), removed.get("id"))
    return [r for r in resources if (r.get("resourceType"), r.get("id")) != gone and not is_retired(r)]


def nothing_left(resources: list[dict]) -> bool:
    """No clinical entry would remain: only the composition level (Encounter, Composition) or parts."""
    return all(r.get("resourceType") in (*COMPOSITION_LEVEL, *PART_ONLY) for r in resources)


def retire_leftovers(fhir, mapping, record: list[dict], *, site: str, ehr_id: str, deleted_version: str) -> list[dict]:
    """Mark the record's remaining central resources entered-in-error once its site composition is deleted.

    What remains when no clinical entry does is the composition level (Encounter,
    Composition) or parts: left live, they would stand for a record that no
    longer exists at either side. One transaction, each PUT quoting the version
    read just now (If-Match), with the DELETE Provenance of the site's deletion
    version; a resource already retired or gone is left alone, so a replay writes
    nothing twice. Returns the retired resources' {type, id, version}.
    """
    live = []
    for ref in record:
        try:
            current = fhir.read(ref["type"], ref["id"])
        except NotFound:
            continue
        if not is_retired(current):
            live.append(current)
    if not live:
        return []
    entries = [{"fullUrl": f"{r['resourceType']}/{r['id']}",
                "resource": retired({k: v for k, v in r.items() if k != "meta"}),
                "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}",
                            "ifMatch": f'W/"{r["meta"]["versionId"]}"'}} for r in live]
    targets = [e["request"]["url"] for e in entries]
    base = mapping.build_provenance(live, site, ehr_id, deleted_version)
    bundle = {"resourceType": "Bundle", "type": "transaction",
              "entry": [*entries, provenance_entry(deletion_provenance(base, targets, deleted_version))]}
    answer = fhir.transaction(bundle)
    return [{"type": e.resource_type, "id": e.id, "version": e.version_id} for e in answer.entries[:len(entries)]]


def without_entry(composition: dict, removed: dict) -> dict:
    """A copy of the site composition without the entry the removed resource was made from."""
    source = parse_source_identifier(removed)
    return without_keys(composition, [f"{source[0]}|{source[1]}|{source[2]}"] if source else [])


def without_keys(composition: dict, keys: list[str]) -> dict:
    """A copy of the site composition without the entries these record keys (source identifiers) came from.

    A resource made from a cluster inside an entry (the AdverseEvent of a diagnosis' CTCAE grading, the
    Medication of a statement's details) takes out that cluster only: the entry around it is another
    resource's, which nobody declared wrong.
    """
    out = copy.deepcopy(composition)
    paths, clusters = set(), []
    nodes = rmpath.node_paths({"content": out.get("content") or []})
    for key in keys:
        path = key.split("|", 2)[2] if key.count("|") >= 2 else ""
        node = nodes.get(path)
        if isinstance(node, dict) and "-CLUSTER." in str(node.get("archetype_node_id", "")):
            clusters.append(node)
            continue
        split = split_source_path(path) if path else None
        if split is not None:
            paths.add(split[0])
    for node in clusters:
        _drop(out, node)
    for path, node in rmpath.entries(out):
        if path in paths:
            _drop(out, node)
    return out


def feeder_audit(resource_ref: str, version: str) -> dict:
    """The composition's FEEDER_AUDIT naming the central version that removed an entry."""
    return {
        "_type": "FEEDER_AUDIT",
        "originating_system_audit": {"_type": "FEEDER_AUDIT_DETAILS", "system_id": "FHIR", "version_id": str(version)},
        "originating_system_item_ids": [
            {"_type": "DV_IDENTIFIER", "id": f"{resource_ref}/_history/{version}", "type": "fhir-id"},
        ],
    }


def _drop(tree, node) -> bool:
    """Remove ``node`` (by identity) from whichever list holds it."""
    if isinstance(tree, dict):
        return any(_drop(v, node) for v in tree.values())
    if isinstance(tree, list):
        for i, item in enumerate(tree):
            if item is node:
                del tree[i]
                return True
        return any(_drop(item, node) for item in tree)
    return False
