"""Hooks (``mappingCode``) for order identifiers: a DV_IDENTIFIER element of an archetype's protocol that
names an order by who assigned the number <-> the resource's ``identifier`` typed by HL7 v2-0203 (issue 21).

* ``placerIdentifier``: the requester's order identifier (lab at0062, service request at0010, imaging
  at0028) <-> the identifier typed ``PLAC`` (Placer Identifier: "assigned by the placer of the order");
* ``fillerIdentifier``: the receiver's order identifier (lab at0063, service request at0011, imaging
  at0031) <-> the identifier typed ``FILL`` (Filler Identifier: "assigned by the filler of the order",
  HL7 v2 ORC-3/OBR-3, what FHIR's DiagnosticReport.identifier maps from; the MII KDS lab report's Befund-ID).

The elements are 0..1: the first identifier of that type fills it; any further ones, an identifier of
another type or none (whose assigner is not said), and the parts of an Identifier a DV_IDENTIFIER has no
place for (period, use, an assigner Reference) stay in the feeder audit of a FHIR-born entry, never guessed
into an order number.  Forward the element gives an Identifier with that type coding (and the DV_IDENTIFIER's
own type as the text), so an openEHR-born order identifier says who assigned it.
"""
from __future__ import annotations

from . import datatypes as dt
from . import fhirpath, rmpath
from .runtime import FWD, f_base, o_base
from .terminology import SOURCE_SYSTEM

V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
_DISPLAY = {"PLAC": "Placer Identifier", "FILL": "Filler Identifier"}


def _typed(code: str):
    def hook(ctx, rule, onode, fobj, fmodel, direction):
        obase, osteps = o_base(ctx, rule.openehr, onode)
        fbase, fbmodel, fpath = f_base(ctx, rule.fhir, fobj, fmodel)
        if direction == FWD:
            for el in rmpath.find(obase, osteps):
                dv = (el or {}).get("value") or {}
                if dv.get("_type") != "DV_IDENTIFIER" or not dv.get("id"):
                    continue
                ident = dt.identifier_to_fhir(dv)
                ident["type"] = {"coding": [{"system": V2_0203, "code": code, "display": _DISPLAY[code]}],
                                 **({"text": dv["type"]} if dv.get("type") else {})}
                fhirpath.put(fbase, fbmodel, fpath, ident)
            return
        for ident in fhirpath.get_values(fbase, fpath):
            if not isinstance(ident, dict) or ident.get("system") == SOURCE_SYSTEM or not ident.get("value"):
                continue
            codings = (ident.get("type") or {}).get("coding") or []
            if any(isinstance(c, dict) and (c.get("system"), c.get("code")) == (V2_0203, code) for c in codings):
                rmpath.ensure(obase, osteps)["value"] = dt.identifier_to_dv(ident)
                return  # 0..1
    hook.__name__ = f"{code.lower()}_identifier"
    return hook


placer_identifier = _typed("PLAC")
filler_identifier = _typed("FILL")
