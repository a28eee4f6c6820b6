"""What a transform returns: FHIR resources or a composition, and the losses found on the way.

At the bottom of the package so that every step that finds a loss (entries, the composition
level, the reverse mapping) can report one without importing the transform that collects them.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Loss:
    """One piece of source data that has no standard element on the other side."""
    path: str
    reason: str
    kind: str = "extension"  # extension | dropped | unmapped-entry | unmapped-resource | stale | refused

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class MappingResult:
    resources: list[dict] = field(default_factory=list)
    losses: list[Loss] = field(default_factory=list)


@dataclass
class OpenEHRResult:
    composition: dict
    losses: list[Loss] = field(default_factory=list)
