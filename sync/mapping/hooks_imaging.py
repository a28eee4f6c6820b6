"""Hooks of the imaging row (issue 18): the findings of an imaging report.

* ``findingStatus``: a finding's Observation (CLUSTER.imaging_exam.v1 in the report's result) has no status of
  its own in openEHR; it takes its report's, as a laboratory panel does (one way).  Two DiagnosticReport codes
  have no Observation twin: partial (some results available) -> preliminary, its child in R4's report status
  hierarchy; appended -> amended, its parent (Observation has amended, and corrected under it).
"""
from __future__ import annotations

from .runtime import FWD

REPORT_TO_OBSERVATION = {"registered": "registered", "partial": "preliminary", "preliminary": "preliminary",
                         "final": "final", "amended": "amended", "corrected": "corrected", "appended": "amended",
                         "cancelled": "cancelled", "entered-in-error": "entered-in-error", "unknown": "unknown"}


def finding_status(ctx, rule, onode, fobj, fmodel, direction):
    """Observation.status (1..1) of a finding: its report's status (see module doc)."""
    if direction == FWD:
        ctx.resource["status"] = REPORT_TO_OBSERVATION.get((ctx.parent or {}).get("status"), "unknown")
