"""The canonical clinical content of a record: what conflict detection compares.

A record is the set of FHIR resources one composition maps to. Its content is
each resource's clinical content (the mapping layer decides what is clinical:
no ids, no meta) keyed by the resource's source identifier, so the same record
read on either side compares equal whatever ids and versions the servers gave.
The RecordLink keeps this content (and its hash) as the three-way base.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

from sync.identity import source_identifier_value


def resource_key(resource: dict) -> str:
    return source_identifier_value(resource) or f"{resource['resourceType']}/{resource.get('id', '')}"


def record_content(resources: Iterable[dict], clinical_content: Callable[[Any], Any]) -> dict[str, Any]:
    return {resource_key(r): clinical_content(r) for r in resources}


def refs_of(link_resources: list[dict]) -> list[str]:
    return [f"{r['type']}/{r['id']}" for r in link_resources]
