"""The runtime round-trip guard: every transform is mapped back and compared before anything is written.

Forward (openEHR -> FHIR): the resources are mapped back WITHOUT the source composition as base (the
mapping's ``map_back``: from_fhir's reverse path without its loss report), so the result's own content
(standard elements plus the residue extension) must reproduce the source; the source's entries, less those
the mapping declared unmapped, are compared with the entries mapped back (and the header, when a
composition-level mapping made an Encounter/Composition) by ``compare_clinical``, the comparison the
fidelity tests use.  Declared losses come back through the residue, so any difference
left is undeclared.

Reverse (FHIR -> openEHR): the built composition is mapped forward again and each source resource is
compared with its twin (pairs by source identifier path, else by type in order); a difference at an
element ``from_fhir`` declared lost, or in a resource it declared unread, is declared, any other is not.

Per site (``Site.fidelity_guard``): strict stops the run (FidelityFailed -> dead letter "fidelity" whose
detail is the three-way diff ``{source, mapped, mapped_back}`` the desk renders); record_only puts the
undeclared paths on ``SyncRun.losses`` (no values: the API shows losses) and the full diff in the
checkpoint, and goes on.  Every check is audited as ``guard.checked`` with ids and counts only.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from sync import mapping as real_mapping
from sync.mapping import feeder, rmpath
from sync.mapping.errors import MappingError
from sync.mapping.fidelity import element_path
from sync.mapping.identifiers import parse_source_identifier
from sync.mapping.residue import strip
from sync.models import Site

from .state import audit_run

HEADER = ("name", "language", "territory", "category", "composer", "context")  # what composition.py carries
LEVEL = ("Encounter", "Composition", "List")  # composition.RESOURCES
RULE = "fidelity.round_trip"
_GUARD_UID = "00000000-0000-4000-8000-00000000a11d::guard::1"
_ADDED = ("dictionary_item_added", "iterable_item_added")  # the mapping adds fixed codes/profiles (from_fhir)
# Resource types from_fhir reads as no entry by design (Patient, Provenance...): not composition content.
# (A Specimen is content: the specimen cluster of the lab result referencing it; one nothing references
# is declared lost by from_fhir.  A ServiceRequest is content (INSTRUCTION.service_request.v1); a
# laboratory order no file claims is declared lost by from_fhir, so it is not looked for either.)
_NOT_CONTENT = {"Provenance", "Patient", "Practitioner", "Organization", "Device"}


class FidelityFailed(Exception):
    """The round trip changes clinical content the mapping does not declare lost (dead letter "fidelity")."""

    def __init__(self, message: str, *, path: str, detail: dict, counts: dict):
        self.rule, self.path, self.detail, self.counts = RULE, path, detail, counts
        super().__init__(message)


@dataclass
class Check:
    """One guard check: declared losses, undeclared differences, and what the desk shows for them."""

    direction: str
    declared: list[dict] = field(default_factory=list)
    undeclared: list[dict] = field(default_factory=list)  # {path, kind, source, mapped_back}
    mapped: dict = field(default_factory=dict)  # the mapped side of the affected content
    site_id: int | None = None

    def diff(self) -> dict:
        """Exactly the keys the desk's dead-letter page renders side by side."""
        return {"source": {d["path"]: d["source"] for d in self.undeclared}, "mapped": self.mapped,
                "mapped_back": {d["path"]: d["mapped_back"] for d in self.undeclared}}

    def counts(self) -> dict:
        return {"declared": len(self.declared), "undeclared": len(self.undeclared)}


# ------------------------------------------------------------------ forward
def check_forward(mapping, source: dict, resources: list[dict], losses) -> Check:
    """Map ``resources`` back without a base and compare with ``source`` (see module doc)."""
    check = Check("to_fhir", declared=[_loss(x) for x in losses])
    unmapped = {d["path"] for d in check.declared if d.get("kind") == "unmapped-entry"}
    src = [(p, e) for p, e in rmpath.entries(source) if p not in unmapped]
    level = any(r.get("resourceType") in LEVEL for r in resources)
    try:
        got, head_back = _fn(mapping, "map_back")(resources, template_id=_template_id(source),
                                                  header_for=source if level else None)
    except (MappingError, TypeError, KeyError, AttributeError, ValueError, IndexError) as exc:
        check.undeclared.append({"path": "/", "kind": f"map_back_failed:{type(exc).__name__}",
                                 "source": f"{len(src)} mapped entries", "mapped_back": None})
        check.mapped = _resources_view(resources)
        return check
    compare = _fn(mapping, "compare_clinical")
    if compare({"content": [e for _, e in src]}, {"content": got}):  # the fidelity tests' own check
        check.undeclared += _entry_diffs(compare, src, got)
    if level:  # composition level mapped: the header too
        head = {k: source[k] for k in HEADER if k in source}
        for d in compare(head, head_back):
            check.undeclared.append({"path": _readable(d["path"]), "kind": d["kind"], "source": d["left"],
                                     "mapped_back": d["right"]})
    if check.undeclared:
        where = {d["path"].split("|", 1)[0] for d in check.undeclared}
        check.mapped = _resources_view([r for r in resources if _from_any(r, where)] or resources)
    return check


def _entry_diffs(compare, src: list[tuple[str, dict]], got: list[dict]) -> list[dict]:
    """Field-level differences, entry by entry: same archetype node id paired in order (as the
    comparison's normaliser orders them); an entry with no partner is missing or invented whole."""
    out = []
    pool: dict[str, list[dict]] = {}
    for e in got:
        pool.setdefault(str(e.get("archetype_node_id")), []).append(e)
    for path, entry in src:
        twins = pool.get(str(entry.get("archetype_node_id"))) or []
        if not twins:
            out.append({"path": path, "kind": "entry_missing", "source": entry, "mapped_back": None})
            continue
        twin = twins.pop(0)
        for d in compare(entry, twin):
            out.append({"path": f"{path}|{_readable(d['path'])}", "kind": d["kind"], "source": d["left"],
                        "mapped_back": d["right"]})
    for rest in pool.values():
        for e in rest:
            out.append({"path": f"/content[{e.get('archetype_node_id')}]", "kind": "entry_added", "source": None,
                        "mapped_back": e})
    return out


# ------------------------------------------------------------------ reverse
def map_reverse(mapping, resources: list[dict], *, template_id: str, base_composition: dict | None, **kw):
    """from_fhir (composition + declared losses): the reverse transform itself, so the guard knows the losses."""
    return _fn(mapping, "from_fhir")(resources, template_id=template_id, base_composition=base_composition, **kw)


def check_reverse(mapping, resources: list[dict], out) -> Check:
    """Map the built composition forward again and compare each source resource with its twin."""
    check = Check("to_openehr", declared=[_loss(x) for x in out.losses])
    comp = out.composition if (out.composition.get("uid") or {}).get("value") else \
        {**out.composition, "uid": {"_type": "OBJECT_VERSION_ID", "value": _GUARD_UID}}
    subject = next((r[k]["reference"] for r in resources for k in ("subject", "patient")  # AllergyIntolerance: patient
                    if isinstance(r.get(k), dict) and r[k].get("reference")), "Patient/guard")
    try:
        again = _fn(mapping, "to_fhir")(comp, site="guard", ehr_id="guard", patient_ref=subject).resources
    except (MappingError, TypeError, KeyError, AttributeError, ValueError, IndexError) as exc:
        again = []
        check.undeclared.append({"path": "/", "kind": f"map_forward_failed:{type(exc).__name__}",
                                 "source": f"{len(resources)} resources", "mapped_back": None})
    compare = _fn(mapping, "compare_clinical")
    lost = {d["path"] for d in check.declared}
    whole = [r for r in resources if f"{r.get('resourceType')}/{r.get('id')}" in lost
             or r.get("resourceType") in _NOT_CONTENT]  # declared unread: no twin to look for
    side = feeder.side_copies(out.composition)  # kept by reference in a FHIR-born entry: its twin is the copy
    refs = {id(r): f"{r.get('resourceType')}/{r.get('id')}" for r in resources}
    for r, twin in _pairs([r for r in resources if not any(r is w for w in whole) and refs[id(r)] not in side], again) \
            + [(r, side[refs[id(r)]]) for r in resources if refs[id(r)] in side and not any(r is w for w in whole)]:
        ref = f"{r.get('resourceType')}/{r.get('id')}"
        if twin is None:
            check.undeclared.append({"path": ref, "kind": "resource_missing", "source": strip(r), "mapped_back": None})
            continue
        mine, theirs = strip(r), strip(twin)
        elements = {p.split(":", 1)[1] for p in lost if p.startswith(ref + ":")}
        for d in compare(mine, theirs):
            element = element_path(d["path"])
            if d["kind"] in _ADDED or any(element == x or element.startswith((x + ".", x + "[")) for x in elements):
                continue
            known = _known(r.get("resourceType"), element)
            if known:
                check.declared.append({"path": f"{ref}:{element}", "reason": known, "kind": "known"})
                continue
            check.undeclared.append({"path": f"{ref}:{element}", "kind": d["kind"], "source": d["left"],
                                     "mapped_back": d["right"]})
    if check.undeclared:
        check.mapped = {"composition": {k: out.composition.get(k) for k in ("archetype_node_id", "content")}}
    return check


# What the mapping documents as not read back (README "Composition level", "Parties") without listing it
# in from_fhir's losses: recorded on the run as declared, never silently equal.
KNOWN = {
    ("*", "subject.display"): "the subject becomes the EHR's subject: only its reference is kept (PatientLink)",
    ("Composition", "section"): "document sections are navigation, not entries: ours are rebuilt from the "
                                "entries' identifiers; a FHIR-born document's come back as sent only while the site "
                                "has changed none of what they describe (composition._section_bases)",
}


def _known(rtype: str, element: str) -> str | None:
    for (t, prefix), why in KNOWN.items():
        if t in ("*", rtype) and (element == prefix or element.startswith((prefix + ".", prefix + "["))):
            return why
    return None


def _codes(resource: dict) -> set:
    return {(c.get("system"), c.get("code")) for c in (resource.get("code") or {}).get("coding") or []
            if isinstance(c, dict)}


def _pairs(resources: list[dict], again: list[dict]):
    """(source resource, its twin or None): by source identifier node path, else by type and a shared
    code, else by type in order."""
    by_path: dict[str, dict] = {}
    for t in again:
        src = parse_source_identifier(t)
        if src:
            by_path.setdefault(src[2], t)
    used: set[int] = set()
    out, later = [], []
    for r in resources:
        src = parse_source_identifier(r)
        twin = by_path.get(src[2]) if src else None
        if twin is not None and id(twin) not in used:
            used.add(id(twin))
            out.append((r, twin))
        else:
            later.append(r)
    for r in later:
        free = [t for t in again if id(t) not in used and t.get("resourceType") == r.get("resourceType")]
        twin = next((t for t in free if _codes(t) & _codes(r)), free[0] if free else None)
        if twin is not None:
            used.add(id(twin))
        out.append((r, twin))
    return out


# ------------------------------------------------------------------ the step's side
@dataclass
class Guarded:
    """What a transform step keeps from its checks: losses for the run, checkpoint, audit events."""

    checks: list[tuple[Check, str]]  # (check, mode)

    @property
    def losses(self) -> list[dict]:
        out = [d for c, _ in self.checks for d in c.declared]
        out += [{"path": d["path"], "reason": f"undeclared round-trip difference ({d['kind']}); recorded, "
                 "not stopped (guard record_only)", "kind": "undeclared"} for c, _ in self.checks for d in c.undeclared]
        return out

    @property
    def checkpoint(self) -> dict:
        diffs = [c.diff() for c, _ in self.checks if c.undeclared]
        return {"fidelity": diffs} if diffs else {}

    def audit(self, run) -> None:
        for check, mode in self.checks:
            _audit(run, check, outcome(check, mode), mode)


def outcome(check: Check, mode: str) -> str:
    if check.undeclared:
        return "recorded_only" if mode == Site.GuardMode.RECORD_ONLY else "blocked"
    return "declared_losses" if check.declared else "passed"


def enforce(checks: list[tuple[Check, str]]) -> Guarded:
    """Stop at the first strict check with undeclared differences; otherwise what the step records."""
    for check, mode in checks:
        if check.undeclared and mode != Site.GuardMode.RECORD_ONLY:
            first = check.undeclared[0]["path"].split("|", 1)
            raise FidelityFailed(
                f"the round trip changes {len(check.undeclared)} field(s) the mapping does not declare lost "
                f"({check.direction}, site {check.site_id})",
                path=first[0][:500], detail=check.diff(), counts={**check.counts(), "site_id": check.site_id,
                                                                  "direction": check.direction, "mode": mode})
    return Guarded(checks)


def _audit(run, check: Check, result: str, mode: str) -> None:
    audit_run(run, "guard.checked", result, detail={**check.counts(), "site_id": check.site_id,
                                                    "direction": check.direction, "mode": mode})


# ------------------------------------------------------------------ helpers
def _fn(mapping, name: str):
    """The services' mapping function, or the real one when a partial namespace leaves it out."""
    return getattr(mapping, name, None) or getattr(real_mapping, name)


def _template_id(composition: dict) -> str:
    return ((composition.get("archetype_details") or {}).get("template_id") or {}).get("value") or "guard"


def _loss(loss) -> dict:
    if isinstance(loss, dict):
        return loss
    return {"path": getattr(loss, "path", ""), "reason": str(loss), "kind": getattr(loss, "kind", "")}


def _resources_view(resources: list[dict]) -> dict:
    return {f"{r.get('resourceType')}/{r.get('id')}": strip(r) for r in resources}


def _from_any(resource: dict, entry_paths: set[str]) -> bool:
    src = parse_source_identifier(resource)
    return bool(src) and any(src[2] == p or src[2].startswith(p + "/") for p in entry_paths)


_TOKEN = re.compile(r"\['((?:[^'\\]|\\.)*)'\]|\[(\d+)\]")


def _readable(deep: str) -> str:
    """DeepDiff's root['data']['events'][0]['value'] -> /data/events[0]/value (indices into the
    normalised tree, where siblings are ordered by node id)."""
    out = ""
    for key, index in _TOKEN.findall(deep):
        out += f"/{key}" if key else f"[{index}]"
    return out or "/"


# ------------------------------------------------------------------ thin calls from the transform steps
def check_forward_step(ctx, source: dict, result) -> Guarded:
    """The forward transform's guard: raises FidelityFailed in strict mode, else what to record."""
    site = ctx.run.site
    check = check_forward(ctx.services.mapping, source, list(result.resources), result.losses)
    check.site_id = site.pk
    return enforce([(check, site.fidelity_guard)])


def check_reverse_target(mapping, site, resources: list[dict], out) -> tuple[Check, str]:
    """One target site's check in the reverse transform (enforce() decides once all are made)."""
    check = check_reverse(mapping, resources, out)
    check.site_id = site.pk
    return check, site.fidelity_guard
