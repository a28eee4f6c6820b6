"""Audit events and chain anchors as FHIR R4 AuditEvent resources (plain dicts).

Validated against ``fhir.resources.R4B`` (R4B's AuditEvent is R4's; the
package's default models are R5 and would reject these). The patient appears
only as a link id under our own identifier system, never by name.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fhir.resources.R4B.auditevent import AuditEvent as R4AuditEvent

from .chain import format_timestamp
from .models import AuditEvent

SYSTEM = "urn:conflictdesk"
ACTION_SYSTEM = f"{SYSTEM}:audit-action"
ANCHOR_CODE = "chain-anchor"
OBJECT_SYSTEM = f"{SYSTEM}:object"
PATIENT_LINK_SYSTEM = f"{SYSTEM}:patient-link"
CHAIN_SYSTEM = f"{SYSTEM}:audit-chain"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
OBSERVER = {"display": "ConflictDesk"}

# AuditEvent.outcome is 0 success, 4 minor failure, 8 serious failure, 12 major failure.
# Any outcome not named here exports as 8; outcomeDesc always carries our own word.
_OUTCOME_CODES = {
    **dict.fromkeys(("ok", "success", "done", "synced", "acknowledged"), "0"),
    **dict.fromkeys(("conflict", "retry", "refused", "denied", "skipped"), "4"),
}


def validate(resource: dict[str, Any]) -> dict[str, Any]:
    """Raise ``pydantic.ValidationError`` unless ``resource`` is a valid R4 AuditEvent; return it."""
    R4AuditEvent.model_validate(resource)
    return resource


def event_resource(event: AuditEvent) -> dict[str, Any]:
    """One audit row as an AuditEvent: who, what, both ends with their versions and hashes, and its link."""
    entities = [
        _object_entity(event.source, event.source_object, "4", "source", source_version=event.source_version,
                       sha256_as_read=event.source_hash),
        _object_entity(event.destination, event.destination_object, "4", "destination",
                       destination_version=event.destination_version, sha256_as_written=event.written_hash,
                       sha256_read_back=event.readback_hash),
        _chain_entity(event.partition, event.partition_seq, event.hash, prev_hash=event.prev_hash,
                      record_key=event.record_key, run_id=event.run_id),
    ]
    if event.patient_link_id is not None:
        entities.insert(0, {
            "what": {"identifier": {"system": PATIENT_LINK_SYSTEM, "value": str(event.patient_link_id)}},
            "type": {"system": ENTITY_TYPE, "code": "1", "display": "Person"},
            "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"},
        })
    return {
        "resourceType": "AuditEvent",
        "id": f"cd-audit-{event.pk}",
        "type": {"system": ACTION_SYSTEM, "code": event.action},
        "recorded": format_timestamp(event.occurred_at),
        "outcome": _OUTCOME_CODES.get(event.outcome, "8"),
        "outcomeDesc": event.outcome,
        "agent": [_agent(event.actor, requestor=event.actor_kind == "user", kind=event.actor_kind)],
        "source": {"observer": OBSERVER},
        "entity": [e for e in entities if e],
    }


def anchor_resource(partition: str, seq: int, hash_: str, recorded: datetime, actor: str,
                    installation: str | None = None) -> dict[str, Any]:
    """The head of one chain, as the central server will keep it; ``installation`` (source.site) finds it again."""
    source = {"observer": OBSERVER, **({"site": installation} if installation else {})}
    return {
        "resourceType": "AuditEvent",
        "type": {"system": ACTION_SYSTEM, "code": ANCHOR_CODE, "display": "Audit chain head anchored"},
        "recorded": format_timestamp(recorded),
        "outcome": "0",
        "agent": [_agent(actor, requestor=False, kind="system")],
        "source": source,
        "entity": [_chain_entity(partition, seq, hash_)],
    }


def anchored_head(resource: dict[str, Any]) -> tuple[str, int, str]:
    """(partition, seq, hash) from an anchor resource as read back from the server."""
    for entity in resource.get("entity", []):
        identifier = entity.get("what", {}).get("identifier", {})
        if identifier.get("system") == CHAIN_SYSTEM:
            details = {d["type"]: d.get("valueString") for d in entity.get("detail", [])}
            return details["partition"], int(details["seq"]), details["hash"]
    raise ValueError("resource carries no audit chain entity")


def _agent(actor: str, *, requestor: bool, kind: str) -> dict[str, Any]:
    return {"who": {"identifier": {"system": f"{SYSTEM}:actor:{kind}", "value": actor}}, "requestor": requestor}


def _chain_entity(partition: str, seq: int, hash_: str, **extra: Any) -> dict[str, Any]:
    details = {"partition": partition, "seq": str(seq), "hash": hash_, **extra}
    return {
        "what": {"identifier": {"system": CHAIN_SYSTEM, "value": f"{partition}#{seq}"}},
        "type": {"system": ENTITY_TYPE, "code": "4", "display": "Other"},
        "detail": _details(details),
    }


def _object_entity(where: str, obj: str, entity_type: str, role: str, **details: Any) -> dict[str, Any] | None:
    if not where and not obj:
        return None
    return {
        "what": {"identifier": {"system": OBJECT_SYSTEM, "value": f"{where}/{obj}" if obj else where}},
        "type": {"system": ENTITY_TYPE, "code": entity_type, "display": "Other"},
        "name": role,
        "detail": _details(details),
    }


def _details(values: dict[str, Any]) -> list[dict[str, str]]:
    """FHIR strings may not be empty, so blank values are left out rather than sent as ''."""
    return [{"type": k.replace("_", "-"), "valueString": str(v)} for k, v in values.items() if v not in ("", None)]
