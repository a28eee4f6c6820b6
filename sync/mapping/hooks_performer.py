"""Who performed an entry: FHIR ``performer`` <-> the entry's ``other_participations`` with function 'performer'.

Issue 21: a performer sent from FHIR (the lab that ran a test, the nurse who took a blood pressure, the
surgeon of a procedure, the nurse who gave a dose) has a home in openEHR, the ENTRY's
``other_participations``, and goes there rather than only into the feeder audit; a site's participation
with that function comes to FHIR the same way.  Parties by parties.py's rules (a FHIR reference kept as a
PARTY_REF in namespace 'fhir', a business identifier as one in its own namespace, the display as the name).

The two FHIR shapes, by resource type:

* Observation, DiagnosticReport: ``performer`` is a list of References;
* Procedure, MedicationAdministration, Immunization: ``performer`` is a list of {function, actor}; the
  actor is the party.  ``function`` (a role code such as SNOMED 'primary surgeon') has no home in the
  participation that keeps its meaning here (PARTICIPATION.function is what marks the performer), so it
  stays in the feeder audit / residue, applied back while the participation is unchanged.

Only participations whose function reads exactly 'performer' are read: a site's other participations
(a witness, a requester, an informant) mean something else and stay where they are.  The subject as a
performer (PARTY_SELF: a patient's own home reading) is kept in the residue, not sent as the patient's
reference in ``performer`` (R4 allows Patient there, but the forward mapping would have to invent the
reference before the patient link is known).  Several resources made from one entry (a vital sign's
events) share its performers; on the way back a performer already recorded is not added twice.
"""
from __future__ import annotations

from .parties import party_to_reference, reference_to_party
from .runtime import FWD

FUNCTION = "performer"
ACTOR_SHAPED = frozenset({"Procedure", "MedicationAdministration", "Immunization"})


def entry_performer(ctx, rule, onode, fobj, fmodel, direction):
    """FHIR performer <-> other_participations with function 'performer' (see module doc)."""
    entry, res = ctx.archetype, ctx.resource
    actor_shaped = res.get("resourceType") in ACTOR_SHAPED
    if direction == FWD:
        refs = [party_to_reference(p["performer"]) for p in _performers(entry)
                if p["performer"].get("_type") != "PARTY_SELF"]
        refs = [r for r in refs if r]
        if refs:
            res["performer"] = [{"actor": r} for r in refs] if actor_shaped else refs
        return
    subject = (res.get("subject") or res.get("patient") or {}).get("reference")
    for item in res.get("performer") or []:
        ref = item.get("actor") if actor_shaped and isinstance(item, dict) else item
        party = reference_to_party(ref, subject) if isinstance(ref, dict) else None
        if party is None or party.get("_type") == "PARTY_SELF":
            continue
        participation = {"_type": "PARTICIPATION", "function": {"_type": "DV_TEXT", "value": FUNCTION},
                         "performer": party}
        held = entry.setdefault("other_participations", [])
        if participation not in held:
            held.append(participation)


def _performers(entry: dict) -> list[dict]:
    return [p for p in entry.get("other_participations") or []
            if isinstance(p, dict) and (p.get("function") or {}).get("value") == FUNCTION
            and isinstance(p.get("performer"), dict)]
