"""Hook (``mappingCode``) of the care plan row: the plan's members.

``planMembers`` (INSTRUCTION.care_plan_request.v0 -> CarePlan): the archetype has no element that
names other entries, and an openEHR care plan is recorded together with what it plans (a tumour
board's plan composition holds the chemotherapy order, the radiotherapy referral and the goals).  So
the plan's members are the entries of its composition: every MedicationRequest / ServiceRequest made
from an INSTRUCTION activity is an ``activity.reference``, every Goal a ``goal`` reference, in
composition order.  Their ids are the ones the forward mapping gives those entries (``ctx.identify``
on the same node paths), so the references resolve inside the record.  One way: back, the referenced
resources are entries of their own (from_fhir places them in the same composition); without the
composition (a group re-mapped alone) there is nothing to name.
"""
from __future__ import annotations

from . import rmpath
from .runtime import FWD
from .spec import registry

ACTIVITY_TYPES = ("MedicationRequest", "ServiceRequest")
GOAL_TYPES = ("Goal",)


def plan_members(ctx, rule, onode, fobj, fmodel, direction):
    if direction != FWD or ctx.composition is None or ctx.identify is None:
        return
    activities, goals = [], []
    for kind, path in member_paths(ctx.composition, ACTIVITY_TYPES + GOAL_TYPES):
        probe = {"resourceType": kind}
        ctx.identify(probe, path)
        ref = {"reference": f"{kind}/{probe['id']}"}
        if kind in GOAL_TYPES:
            goals.append(ref)
        else:
            activities.append({"reference": ref})
    if activities:
        fobj["activity"] = activities
    if goals:
        fobj["goal"] = goals


def member_paths(composition: dict, types: tuple[str, ...]) -> list[tuple[str, str]]:
    """(resource type, node path the forward mapping identifies it by) of every entry of the composition
    mapped to one of ``types`` (a plan's members; an adverse event's suspect entities)."""
    specs = registry()
    out = []
    for path, entry in rmpath.entries(composition):
        spec = specs.get(entry.get("archetype_node_id") or "")
        if spec is None or spec.resource not in types:
            continue
        split = (spec.hierarchy or {}).get("openehr")
        if not split:
            out.append((spec.resource, path))
            continue
        steps = rmpath.parse(split.replace("$archetype", "").strip("/"))
        wanted = {id(n) for n in rmpath.find(entry, steps)}
        out.extend((spec.resource, path + rel) for rel, n in rmpath.walk(entry) if id(n) in wanted)
    return out
