"""What a step hands back to the runner, and the errors a step raises on purpose."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class StepResult:
    """A finished step: checkpoint updates plus where the run goes next.

    ``effects`` runs inside the transaction that commits the step (with the
    checkpoint, the RunAttempt and the audit event), so database state a step
    creates, such as EngineWrite rows or the RecordLink, commits exactly when
    the step does. Steps commit in batches (``runner.SEGMENTS``): several
    finished steps share one transaction, each keeping its own attempt row and
    audit event.
    """

    next_step: str | None = None
    terminal: str | None = None  # a SyncRun.Status when the run ends here
    checkpoint: dict[str, Any] = field(default_factory=dict)
    outcome: str = "ok"
    audit: dict[str, Any] = field(default_factory=dict)
    effects: Callable[[Any], None] | None = None
    event_status: str | None = None  # ChangeEvent status when the run ends
    # Commit right after this step even inside a segment: it had an external effect of its own
    # that a later step of the segment must not repeat (a resolution's site write).
    commit: bool = False


class ValidationFailed(Exception):
    """Content broke a rule before it was sent; dead-letters at once (cause validation)."""

    def __init__(self, message: str, *, rule: str = "", path: str = "", detail: Any = None):
        self.rule = rule
        self.path = path
        self.detail = detail
        super().__init__(message)
