"""Which model file maps what: by archetype, by incoming FHIR resource, and the slot rules between files.

Lookups over the loaded specs (spec.py) that the interpreter, both transforms and the
composition level share; they read the registry and never map anything.
"""
from __future__ import annotations

import re

from . import fhirpath
from .errors import UnknownArchetype
from .identifiers import parse_source_identifier
from .spec import ALL_OF, Condition, Rule, Spec, registry

_ARCHETYPE_STEP = re.compile(r"\[(openEHR-EHR-[A-Z_]+\.[^\]]+)\]")


def spec_for_archetype(archetype_id: str) -> Spec:
    s = registry().get(archetype_id)
    if s is None:
        raise UnknownArchetype("no model mapping for archetype", path=archetype_id)
    return s


def resource_matches(resource: dict, cond: Condition) -> bool:
    """One fhirConfig.match entry holds for ``resource``: a condition, or an all-of group (every one)."""
    if cond.operator == ALL_OF:
        return all(resource_matches(resource, c) for c in cond.criteria)
    return fhirpath.matches(resource, cond.target_attribute, cond.operator, cond.criteria)


def _specificity(spec: Spec) -> int:
    """How many conditions the file's most demanding match entry joins (an all-of group counts each)."""
    return max((len(m.criteria) if m.operator == ALL_OF else 1 for m in spec.match), default=0)


def spec_for_resource(resource: dict) -> Spec | None:
    """Pick the model file that reads a FHIR resource: resource type plus any fhirConfig.match
    condition.  Entry-level files are tried before cluster files, so a specific row (a vital sign
    by its LOINC code) wins over a generic one (any laboratory Observation); among files of one
    level an all-of group is more specific than a single condition (a laboratory Observation with
    hasMember is a panel before it is an analyte)."""
    specs = sorted(registry().values(), key=lambda s: (s.is_cluster, -_specificity(s), s.archetype))
    # catch-all conditions (no match, operator 'empty') are tried after every specific one
    for catch_all in (False, True):
        for s in specs:
            if s.resource != resource.get("resourceType"):
                continue
            conds = [m for m in s.match if catch_all or m.operator != "empty"]
            if (not s.match and catch_all) or any(resource_matches(resource, m) for m in conds):
                return s
    return None


def archetype_of(resource: dict) -> str | None:
    """The archetype id of the model file that reads ``resource``: the last mapped archetype on its
    source identifier's node path (the node it was made from), else the file spec_for_resource picks."""
    src = parse_source_identifier(resource)
    if src:
        arch = _ARCHETYPE_STEP.findall(src[2])
        if arch and arch[-1] in registry():
            return arch[-1]
    s = spec_for_resource(resource)
    return s.archetype if s else None


def slot_rule(spec: Spec, child: Spec) -> Rule | None:
    """The rule of ``spec`` whose slot ``child`` (a cluster file) fills, if any."""
    return next((r for r in spec.rules if r.slot_archetype and child.archetype.endswith(r.slot_archetype)), None)


def parent_spec(child: Spec) -> Spec | None:
    """The entry-level file with a slot for the cluster file ``child`` (a lone stage group -> diagnosis)."""
    return next((s for s in registry().values() if not s.is_cluster and slot_rule(s, child)), None)
