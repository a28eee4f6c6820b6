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


def _claim_rank(cond: Condition) -> int:
    """0: the entry names the resource's code (a 'one of' on code.*: a vital sign by its LOINC code, a
    TNM category by its LOINC/SNOMED code, a laboratory analyte by a LOINC code of a laboratory class);
    1: other conditions (a category, hasMember); 2: a catch-all made only of 'empty' conditions."""
    parts = cond.criteria if cond.operator == ALL_OF else [cond]
    if any(c.operator == "one of" and c.target_attribute.startswith("code.") for c in parts):
        return 0
    return 2 if all(c.operator == "empty" for c in parts) else 1


def spec_for_resource(resource: dict) -> Spec | None:
    """Pick the model file that claims a FHIR resource: its resource type and one of its
    fhirConfig.match entries (any of; an entry may be an all-of group).  A file without match claims
    every resource of its type (one file per type: Condition, Procedure...); an Observation file
    always says which ones it reads.  When several files claim a resource, a claim by code wins over
    a claim by category or structure (a TNM category Observation sent with category laboratory is
    staging, not a laboratory result), then entry-level files before cluster files, then the more
    specific all-of group (a laboratory Observation with hasMember is a panel before it is an
    analyte).  None: nothing claims it; from_fhir reports it ``unmapped-resource`` and leaves it for a
    person (no file is a default for unknown Observations)."""
    hits = []
    for s in registry().values():
        if s.resource != resource.get("resourceType"):
            continue
        if not s.match:
            hits.append((2, s))
            continue
        ranks = [_claim_rank(m) for m in s.match if resource_matches(resource, m)]
        if ranks:
            hits.append((min(ranks), s))
    if not hits:
        return None
    return min(hits, key=lambda h: (h[0], h[1].is_cluster, -_specificity(h[1]), h[1].archetype))[1]


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


def written_elements(spec: Spec) -> frozenset[str]:
    """Top-level FHIR elements (choice bases: ``value``, ``effective``) the file's rules may write on its own
    resource, declarative rows, manual entries and hook rows alike: where the archetype has a home for what a
    sender gives there (from_fhir checks that a FHIR-born value[x] found one).  Empty for a file whose rows are
    not rooted at ``$resource`` (a cluster inside a report's result): its paths say nothing about the top level."""
    rooted = (spec.hierarchy or {}).get("fhir", "$resource") == "$resource"
    if not rooted:
        return frozenset()
    out = set()
    for r in spec.rules:
        # a manual entry's paths are relative to its rule's element: top-level only on a rule at the resource
        paths = [r.fhir or ""] + ([str(f.get("path", "")) for m in r.manual for f in m.fhir]
                                  if r.fhir in (None, "$resource") else [])
        for p in paths:
            p = p.removeprefix("$resource").lstrip(".")
            if p and not p.startswith("$"):
                out.add(re.split(r"[.\[]", p, maxsplit=1)[0])
    return frozenset(out)


def hook_elements(spec: Spec) -> set[str]:
    """Top-level FHIR elements a file's hook rules name in ``with.fhir`` (``$resource.hasMember``): the
    references found there are read by that file (a stage group's T/N/M), not mapped on their own."""
    return {r.fhir.replace("$resource", "").lstrip(".").split(".")[0] for r in spec.rules
            if r.mapping_code and (r.fhir or "").startswith("$resource.")}
