"""Hook (``mappingCode``) of the CTCAE row: what the AdverseEvent takes from around its cluster.

``adverseEventContext`` (CLUSTER.ctcae.v1 in a problem_diagnosis -> AdverseEvent, one way): the
cluster grades the diagnosis it sits in, so ``resultingCondition`` is that Condition and ``date`` its
onset (else its date clinically recognised, the diagnosis' own dates; the cluster has none).  The
archetype names no cause: the suspects are what the same composition records as given or done (the
chemotherapy administration, the radiotherapy procedure), found as the care plan finds its members, by
the ids the forward mapping gives them.  Back, the Condition is the entry itself and the suspects are
entries of their own.
"""
from __future__ import annotations

from .hooks_careplan import member_paths
from .runtime import FWD

SUSPECT_TYPES = ("MedicationAdministration", "Procedure")


def adverse_event_context(ctx, rule, onode, fobj, fmodel, direction):
    cond = ctx.parent
    if direction != FWD or cond is None:
        return
    if cond.get("id"):
        fobj["resultingCondition"] = [{"reference": f"{cond['resourceType']}/{cond['id']}"}]
    asserted = [e.get("valueDateTime") for e in cond.get("extension") or []
                if e.get("url") == "http://hl7.org/fhir/StructureDefinition/condition-assertedDate"]
    date = cond.get("onsetDateTime") or next(filter(None, asserted), None)
    if date:
        fobj["date"] = date
    if ctx.composition is None or ctx.identify is None:
        return
    suspects = []
    for kind, path in member_paths(ctx.composition, SUSPECT_TYPES):
        probe = {"resourceType": kind}
        ctx.identify(probe, path)
        suspects.append({"instance": {"reference": f"{kind}/{probe['id']}"}})
    if suspects:
        fobj["suspectEntity"] = suspects
