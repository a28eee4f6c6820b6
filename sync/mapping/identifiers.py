"""Our source identifier: which site record a FHIR resource was made from.

Every resource the forward mapping makes carries ``{system: SOURCE_SYSTEM, value:
"{site}|{versioned object uid}|{node path}"}`` and an id derived from that value, so a re-sync
updates the same resource and the reverse mapping finds the entry (and event) it came from.
The identifier is built once and read once, here; the engine's record keys and the desk read
it through these functions.
"""
from __future__ import annotations

import re
import uuid
from typing import Iterator

from . import fhirmodel
from .terminology import SOURCE_SYSTEM

_NS = uuid.UUID("5b0c1f8e-4d1a-4c47-9a53-6f1f1e0c2a10")
_ENTRY_STEP = re.compile(r"\[(openEHR-EHR-(?:OBSERVATION|EVALUATION|INSTRUCTION|ACTION|ADMIN_ENTRY)\.[^\]]+)\]")


def build_source_identifier(site: str, vo_uid: str, path: str) -> dict:
    """The Identifier stamped on a resource made from node ``path`` of versioned object ``vo_uid`` at ``site``."""
    return {"system": SOURCE_SYSTEM, "value": f"{site}|{vo_uid}|{path}"}


def stamp(resource: dict, ident: dict) -> None:
    """Give ``resource`` the id and identifier of source identifier ``ident``, in the shape its type holds:
    a list, or a single Identifier where the type allows one (AdverseEvent.identifier is 0..1)."""
    resource["id"] = resource_id(ident["value"])
    many = fhirmodel.field(resource["resourceType"], "identifier")[0]
    resource["identifier"] = [ident] if many else ident


def resource_id(identifier_value: str) -> str:
    """Deterministic logical id, so a re-sync updates the same FHIR resource."""
    return str(uuid.uuid5(_NS, identifier_value))


def _source_identifiers(resource: dict) -> Iterator[dict]:
    """The resource's identifiers in our system.  A few types (Composition, Bundle) hold a single
    Identifier, not a list: both shapes are read."""
    idents = resource.get("identifier") or []
    for ident in idents if isinstance(idents, list) else [idents]:
        if isinstance(ident, dict) and ident.get("system") == SOURCE_SYSTEM:
            yield ident


def source_identifier_value(resource: dict) -> str | None:
    """The ``site|vo_uid|path`` value stamped on a resource, if any: the engine keys records by it."""
    return next((ident.get("value") for ident in _source_identifiers(resource)), None)


def parse_source_identifier(resource: dict) -> tuple[str, str, str] | None:
    """(site, versioned object uid, node path) from the first well-formed source identifier, if any."""
    for ident in _source_identifiers(resource):
        if str(ident.get("value", "")).count("|") >= 2:
            site, vo, path = ident["value"].split("|", 2)
            return site, vo, path
    return None


def split_source_path(path: str) -> tuple[str, str] | None:
    """'/content[..SECTION..]/items[..OBSERVATION..]/data[at0001]/events[at0006]:1/...' -> (entry path, rest)."""
    m = None
    for m in _ENTRY_STEP.finditer(path):
        break
    if not m:
        return None
    end = path.find("/", m.end())
    end = len(path) if end < 0 else end
    return path[:end], path[end:]
