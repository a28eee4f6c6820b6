"""Build the one FHIR transaction that writes a record centrally.

New resources are conditional creates on their source identifier and the
Provenance a PUT to an id derived from the source version, so a retried transaction finds what the
first attempt made. A type R4 gives no ``identifier`` search parameter (AdverseEvent) cannot be a
conditional create on it (HAPI-0488): it is a PUT to an id derived from its source identifier instead,
which a retry finds the same way. Linked resources are updates that quote the version the
conflict check saw (If-Match), so a concurrent central edit fails the whole
transaction (409) instead of being overwritten. References between the
record's resources are rewritten to the ids (or urn:uuids) used here.
"""
from __future__ import annotations

import uuid
from typing import Any

from sync.identity import CENTRAL, SOURCE_SYSTEM, provenance_id

from .content import refs_of, resource_key

_URN_NS = uuid.UUID("0b7f7e1a-2c55-4d0a-8d0b-8f4b3f6a1c22")
# R4 resource types with no 'identifier' search parameter (R4's search parameter registry; checked
# against HAPI's CapabilityStatement by tests/integration/test_deletions_no_status.py).
NO_IDENTIFIER_SEARCH = frozenset({"AdverseEvent"})


def build_transaction(resources: list[dict], provenance: dict | None, expected: dict[str, dict], version_uid: str):
    """Return (bundle, keys): ``keys[i]`` names entry i's record key (None for deletes/Provenance)."""
    refs: dict[str, str] = {}
    planned = []
    for resource in resources:
        key = resource_key(resource)
        linked = expected.get(key)
        old_ref = f"{resource['resourceType']}/{resource['id']}" if resource.get("id") else None
        if linked:
            new_ref = f"{linked['type']}/{linked['id']}"
        elif resource["resourceType"] in NO_IDENTIFIER_SEARCH:
            new_ref = f"{resource['resourceType']}/{uuid.uuid5(_URN_NS, key)}"
        else:
            new_ref = f"urn:uuid:{uuid.uuid5(_URN_NS, key)}"
        if old_ref:
            refs[old_ref] = new_ref
        refs.setdefault(f"urn:uuid:{resource.get('id', '')}", new_ref)
        planned.append((key, resource, linked, new_ref))

    entries, keys = [], []
    for key, resource, linked, new_ref in planned:
        body = _rewrite_refs({k: v for k, v in resource.items() if k not in ("id", "meta")}, refs)
        if linked:
            body["id"] = linked["id"]
            request = {"method": "PUT", "url": new_ref, "ifMatch": f'W/"{linked["version"]}"'}
            entries.append({"fullUrl": new_ref, "resource": body, "request": request})
        elif not new_ref.startswith("urn:"):  # no identifier search: created on an id fixed by the key
            body["id"] = new_ref.split("/", 1)[1]
            entries.append({"fullUrl": new_ref, "resource": body, "request": {"method": "PUT", "url": new_ref}})
        else:
            request = {"method": "POST", "url": body["resourceType"], "ifNoneExist": f"identifier={SOURCE_SYSTEM}|{key}"}
            entries.append({"fullUrl": new_ref, "resource": body, "request": request})
        keys.append(key)

    kept = {key for key, *_ in planned}
    for key, linked in expected.items():
        if key not in kept:  # the new version no longer has this resource
            url = f"{linked['type']}/{linked['id']}"
            entries.append({"request": {"method": "DELETE", "url": url, "ifMatch": f'W/"{linked["version"]}"'}})
            keys.append(None)

    if provenance is not None and resources:
        body = _rewrite_refs({k: v for k, v in provenance.items() if k != "meta"}, refs)
        body["id"] = provenance_id(version_uid)
        request = {"method": "PUT", "url": f"Provenance/{body['id']}"}
        entries.append({"fullUrl": f"Provenance/{body['id']}", "resource": body, "request": request})
        keys.append(None)
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}, keys


def _rewrite_refs(value: Any, refs: dict[str, str]) -> Any:
    if isinstance(value, dict):
        out = {k: _rewrite_refs(v, refs) for k, v in value.items()}
        if isinstance(out.get("reference"), str) and out["reference"] in refs:
            out["reference"] = refs[out["reference"]]
        return out
    if isinstance(value, list):
        return [_rewrite_refs(v, refs) for v in value]
    return value


def written_entries(keys: list[str | None], answer) -> list[dict]:
    """The record's resources as the transaction answered (deletes and the Provenance left out)."""
    return [
        {"key": key, "type": entry.resource_type, "id": entry.id, "version": entry.version_id}
        for key, entry in zip(keys, answer.entries)
        if key is not None
    ]


def central_write_audit(audit, written: list[dict], resources: list[dict], bundle: dict) -> dict:
    """The audit fields of a central transaction: where it went and the hash of what was sent."""
    return {
        "destination": CENTRAL,
        "destination_object": ",".join(refs_of(written))[:250],
        "written_hash": audit.payload_hash(resources),
        "detail": {"entries": len(bundle["entry"])},
    }
