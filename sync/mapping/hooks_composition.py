"""Hooks (``mappingCode``) of the COMPOSITION-level row: parties and participations of the context.

* ``partyReference``: a PARTY_PROXY of the composition shell (composer, health_care_facility) <->
  a Reference, by the party rules of parties.py;
* ``participations``: EVENT_CONTEXT.participations <-> Encounter.participant.

Paths are composition-shell paths (``context/health_care_facility``), see composition.py.
"""
from __future__ import annotations

from . import datatypes as dt
from . import fhirpath
from .parties import SUBJECT, party_to_reference, reference_to_party


def _o_parent(ctx, path: str, onode: dict, create: bool):
    """(parent dict, attribute) for a composition-shell path like 'context/health_care_facility'."""
    parts = path.replace("$archetype", "").strip("/").split("/")
    cur = onode
    for p in parts[:-1]:
        if p not in cur:
            if not create:
                return None, parts[-1]
            cur[p] = {"_type": "EVENT_CONTEXT"} if p == "context" else {}
        cur = cur[p]
    return cur, parts[-1]


def _subject(ctx) -> str | None:
    return (ctx.resource.get("subject") or {}).get("reference")


def party_reference(ctx, rule, onode, fobj, fmodel, direction):
    """PARTY_PROXY (composer, health_care_facility) <-> Reference (see party_to_reference)."""
    fpath = rule.fhir.replace("$resource", "").lstrip(".")
    if direction == "openehr->fhir":
        parent, attr = _o_parent(ctx, rule.openehr, onode, False)
        ref = party_to_reference((parent or {}).get(attr))
        if ref:
            fhirpath.put(ctx.resource, ctx.spec.resource, fpath, ref)
        return
    refs = fhirpath.get_values(ctx.resource, fpath)
    party = reference_to_party(refs[0] if refs else None, _subject(ctx))
    if party:
        parent, attr = _o_parent(ctx, rule.openehr, onode, True)
        parent[attr] = party


def participations(ctx, rule, onode, fobj, fmodel, direction):
    """PARTICIPATION list <-> Encounter.participant: function -> type, performer -> individual,
    time (DV_INTERVAL of DV_DATE_TIME) -> period.  mode has no FHIR element (residue)."""
    fpath = rule.fhir.replace("$resource", "").lstrip(".")
    if direction == "openehr->fhir":
        parent, attr = _o_parent(ctx, rule.openehr, onode, False)
        for p in (parent or {}).get(attr) or []:
            part: dict = {}
            fn = p.get("function")
            if isinstance(fn, dict):
                part["type"] = [dt.coded_to_fhir(fn) if "defining_code" in fn else dt.text_to_fhir_cc(fn)]
            ref = party_to_reference(p.get("performer"))
            if ref and ref.get("reference") != SUBJECT:
                part["individual"] = ref
            t = p.get("time") or {}
            period = {k: dt.datetime_to_fhir(t[o]["value"]) for k, o in (("start", "lower"), ("end", "upper"))
                      if isinstance(t.get(o), dict) and t[o].get("value")}
            if period:
                part["period"] = period
            if part:
                fhirpath.put(ctx.resource, ctx.spec.resource, fpath, part)
        return
    out = []
    for part in fhirpath.get_values(ctx.resource, fpath):
        performer = reference_to_party(part.get("individual"), _subject(ctx))
        if performer is None:
            continue  # RM PARTICIPATION needs a performer: reported as lost by the re-forward check
        types = part.get("type") or []
        p = {"_type": "PARTICIPATION", "function": dt.cc_to_dv(types[0]) if types else
             {"_type": "DV_TEXT", "value": "participant"}, "performer": performer}
        period = part.get("period") or {}
        if period:
            p["time"] = {"_type": "DV_INTERVAL", "lower_unbounded": not period.get("start"),
                         "upper_unbounded": not period.get("end"), "lower_included": True, "upper_included": True}
            for k, o in (("start", "lower"), ("end", "upper")):
                if period.get(k):
                    p["time"][o] = {"_type": "DV_DATE_TIME", "value": period[k]}
        out.append(p)
    if out:
        parent, attr = _o_parent(ctx, rule.openehr, onode, True)
        parent[attr] = out
