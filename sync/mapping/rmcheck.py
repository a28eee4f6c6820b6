"""What the openEHR reference model requires of an entry that a FHIR resource need not give (issue 21).

FHIR's ``effective[x]``, ``performed[x]`` and ``occurrence[x]`` are optional; the RM's ``HISTORY.origin``,
``EVENT.time`` and ``ACTION.time`` are not (1..1).  from_fhir never makes a time up: a result sent without
one maps to an entry the site's CDR refuses.  This check names that entry and the attribute before anything
is sent, so the mapping report calls the file refused rather than round-tripped, and the engine dead-letters
the run for a person with the rule broken instead of EHRbase's 400."""
from __future__ import annotations

from dataclasses import dataclass

from . import rmpath

# RM type -> its attributes of multiplicity 1..1 that a FHIR resource may leave empty
REQUIRED = {"HISTORY": ("origin",), "POINT_EVENT": ("time",), "INTERVAL_EVENT": ("time",), "ACTION": ("time",)}


@dataclass(frozen=True)
class Missing:
    """A required RM attribute absent at ``path`` (a node path), inside the entry at ``entry``."""
    entry: str
    path: str
    rm_type: str
    attribute: str

    @property
    def name(self) -> str:
        return f"{self.rm_type}.{self.attribute}"

    @property
    def rule(self) -> str:
        return f"rm.{self.name}"


def missing(composition: dict) -> list[Missing]:
    """Every required attribute of REQUIRED absent in the composition's entries, in entry order."""
    out = []
    for entry_path, entry in rmpath.entries(composition):
        for path, node in [(entry_path, entry), *rmpath.walk(entry, entry_path)]:
            for attr in REQUIRED.get(node.get("_type"), ()):
                if node.get(attr) in (None, {}, ""):
                    out.append(Missing(entry_path, path, node["_type"], attr))
    return out
