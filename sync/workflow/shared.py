"""Step helpers written once for the forward, reverse and resolution runs."""
from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings
from django.utils import timezone

from sync.models import Conflict, RecordLink

from .result import ValidationFailed


def template_id(composition: dict | None) -> str:
    """The template a composition says it was committed against ("" when it names none)."""
    if not composition:
        return ""
    return ((composition.get("archetype_details") or {}).get("template_id") or {}).get("value") or ""


def issue_path(issue: Any) -> str:
    """Where a validation issue is, without its message (which may quote values)."""
    if isinstance(issue, dict):
        return str(issue.get("path") or issue.get("loc") or "")[:500]
    return str(issue).split(":", 1)[0][:500]


def check_fhir(mapping, resource: dict, *, what: str = "", server=None, name_type: bool = True) -> None:
    """ValidationFailed naming the first R4 issue of ``resource`` (and the server's, when asked).

    ``name_type=False`` for a resource read from outside: its resourceType is input, not a
    name of ours, and never goes into a message or a rule.
    """
    issues = mapping.validate_fhir(resource)
    if server is not None and not issues:
        issues = server_issues(server.validate(resource))
    if issues:
        rtype = resource.get("resourceType") if name_type else None
        raise ValidationFailed(
            f"{what}{rtype or 'the resource'} fails R4 validation ({len(issues)} issue(s))",
            rule=f"fhir.r4.{rtype}" if rtype else "fhir.r4",
            path=issue_path(issues[0]) or "/",
            detail={"issues": [str(i) for i in issues]} if name_type else None,
        )


def server_issues(outcome: dict) -> list[str]:
    return [
        f"{i.get('code')}@{','.join(i.get('expression') or i.get('location') or [])}"
        for i in outcome.get("issue", [])
        if i.get("severity") in ("error", "fatal")
    ]


def check_template_claim(composition: dict, expected: str) -> str:
    """The template the composition claims, which must be ``expected`` (when there is one)."""
    claimed = template_id(composition)
    if expected and claimed != expected:
        raise ValidationFailed("composition names another template", rule="composition.template",
                               path="/archetype_details/template_id")
    return claimed


def open_conflict(run, link: RecordLink, **fields) -> Conflict:
    """The record's new open conflict (an older open one is superseded): an effect, in the run's commit."""
    Conflict.objects.filter(record_link=link, status=Conflict.Status.OPEN).update(
        status=Conflict.Status.SUPERSEDED, closed_at=timezone.now()
    )
    return Conflict.objects.create(run=run, record_link=link, base_content=link.base_content,
                                   base_hash=link.canonical_hash, **fields)


def sampled(key: str) -> bool:
    """Whether this write gets the independent vread (CONFLICTDESK_READBACK_VREAD_RATE).

    Decided by the key's hash, not a random draw, so a replayed run decides the same.
    """
    rate = float(settings.CONFLICTDESK_READBACK_VREAD_RATE)
    if rate <= 0:
        return False
    return rate >= 1 or int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) < rate * 0x100000000


def stored_view(resource: dict) -> dict:
    """A resource as stored, for the read-back hash: meta kept to its versionId.

    HAPI's ``meta.source`` and ``lastUpdated`` differ between a write's answer and
    a later read of the same version (a no-change update answers without source).
    """
    out = {k: v for k, v in resource.items() if k != "meta"}
    version = (resource.get("meta") or {}).get("versionId")
    if version is not None:
        out["meta"] = {"versionId": str(version)}
    return out
