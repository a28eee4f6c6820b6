"""The scheduled check of the whole trail (every chain, every anchor) and its last result.

Beat runs ``audit.verify`` (``CONFLICTDESK_AUDIT_VERIFY_SECONDS``); each run is
itself an audit event in the ``audit`` partition, so the result is kept where
it cannot be quietly changed, and ``/metrics`` and the health page read the
latest one. A central server that cannot be read leaves the trail
"unverified", never "ok".
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .anchor import verify_anchors
from .models import AuditEvent
from .record import record_event, system_actor
from .verify import verify_all

log = logging.getLogger(__name__)

PARTITION = "audit"
ACTION = "audit.verify"


@dataclass(frozen=True)
class Verification:
    outcome: str  # "ok", "broken" or "unverified"
    at: datetime
    broken_chains: int
    anchor_problems: int | None

    @property
    def intact(self) -> bool:
        return self.outcome == "ok"


def verify_and_record(fhir_client: Any) -> Verification:
    """Verify every chain and every anchor; append the result to the trail and return it."""
    reports = verify_all()
    broken = sum(1 for r in reports if r.broken)
    try:
        problems = len(verify_anchors(fhir_client))
    except Exception as exc:  # the server is down or refusing: the anchors were not checked
        log.warning("audit verify: anchors not checked (%s)", type(exc).__name__)
        problems = None
    outcome = "broken" if broken or problems else ("unverified" if problems is None else "ok")
    event = record_event(action=ACTION, outcome=outcome, actor=system_actor(), partition=PARTITION,
                         detail={"chains": len(reports), "broken_chains": broken, "anchor_problems": problems})
    log.info("audit verify: %s (%s chains, %s broken, anchor problems %s)", outcome, len(reports), broken, problems)
    return Verification(outcome, event.occurred_at, broken, problems)


def last_verification() -> Verification | None:
    """The latest scheduled result, or None if verification never ran."""
    row = (AuditEvent.objects.filter(partition=PARTITION, action=ACTION).order_by("-partition_seq")
           .values_list("outcome", "occurred_at", "detail").first())
    if row is None:
        return None
    outcome, at, detail = row
    return Verification(outcome, at, detail.get("broken_chains", 0), detail.get("anchor_problems"))
