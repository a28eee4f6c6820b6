"""Viewing a central resource's source: every request leaves a ``source.viewed`` event, whatever its outcome."""
from __future__ import annotations

from typing import Any

from django.db import transaction

from audit.record import record_event
from sync import source
from sync.identity import CENTRAL, record_key, site_source

from .actor import actor_of


def do_view_source(resource_type: str, resource_id: str, *, acting_user, fmt: str = "canonical") -> source.SourceResult:
    """``source.source_of`` with its audit event (who asked for which source; ids and hashes only).

    Raises what ``source_of`` raises, after auditing the refusal.
    """
    actor, located = actor_of(acting_user), None
    try:
        source.check_format(fmt)
        located = source.locate(resource_type, resource_id)
        result = source.fetch(located, fmt=fmt)
    except source.SourceError as exc:
        _audit(actor, resource_type, resource_id, fmt, exc.outcome, getattr(exc, "located", None) or located,
               shown_hash="", last_hash=getattr(exc, "last_synced_hash", ""))
        raise
    _audit(actor, resource_type, resource_id, fmt, "ok", located, shown_hash=result.hash,
           last_hash=result.last_synced_hash)
    return result


def _audit(actor, resource_type, resource_id, fmt, outcome, located, *, shown_hash, last_hash) -> None:
    fields: dict[str, Any] = {
        "destination": CENTRAL,
        # Only echo a reference that passed validation: the audit row must not carry arbitrary input.
        "destination_object": f"{resource_type}/{resource_id}" if outcome != "invalid" else "",
        "detail": {"format": fmt if fmt in source.FORMATS else "invalid"},
    }
    if located is not None:
        fields.update(
            source=site_source(located.site.name),
            source_object=located.vo_uid,
            source_version=located.version_uid,
            record_key=record_key(located.site.name, located.vo_uid),
            patient_link_id=located.record_link.patient_link_id if located.record_link else None,
            source_hash=shown_hash,
        )
        fields["detail"].update(site_id=located.site.pk, via=located.via, provenance=located.provenance,
                                last_synced_hash=last_hash)
    with transaction.atomic():
        record_event(action="source.viewed", outcome=outcome, actor=actor, **fields)
