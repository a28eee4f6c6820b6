"""openEHR parties (PARTY_PROXY) <-> FHIR References, the same rules wherever a party appears.

The composer and the health care facility of the composition level, the participations of its
Encounter and the orderer of a medication order all go through these two functions, so a party
reads back the same whichever row carried it.
"""
from __future__ import annotations

from urllib.parse import quote, unquote

from . import datatypes as dt
from . import terminology

NS_PREFIX = terminology.BASE + "/NamingSystem/openehr-namespace/"
FHIR_NS = "fhir"  # PARTY_REF namespace for parties that are FHIR references (Type/id)
SUBJECT = "$subject"  # PARTY_SELF placeholder, replaced by the patient reference
# composer of a composition made here without a source one: a placeholder, not a clinician
PLACEHOLDER_COMPOSER = {"_type": "PARTY_IDENTIFIED", "name": "ConflictDesk sync"}
_REF_TYPES = {"Organization": "ORGANISATION", "Practitioner": "PERSON", "RelatedPerson": "PERSON",
              "Patient": "PERSON", "PractitionerRole": "ROLE", "Device": "AGENT"}


def _ns_system(ns: str) -> str:
    return ns if ns.startswith(("http://", "https://", "urn:")) and " " not in ns else NS_PREFIX + quote(ns, safe="")


def party_to_reference(party: dict | None) -> dict | None:
    """PARTY_PROXY -> Reference: PARTY_SELF -> the record subject; PARTY_IDENTIFIED name -> display,
    external_ref -> reference (namespace 'fhir') or identifier, else identifiers[0] -> identifier."""
    if not isinstance(party, dict):
        return None
    if party.get("_type") == "PARTY_SELF":
        return {"reference": SUBJECT}
    ref: dict = {}
    ext = party.get("external_ref") or {}
    ident = (ext.get("id") or {}).get("value")
    if ident and ext.get("namespace") == FHIR_NS:
        ref["reference"] = ident
    elif ident:
        ref["identifier"] = {"system": _ns_system(ext.get("namespace") or "local"), "value": ident}
    if party.get("identifiers") and "identifier" not in ref:
        ref["identifier"] = dt.identifier_to_fhir(party["identifiers"][0])
    if party.get("name"):
        ref["display"] = party["name"]
    return ref or None


def reference_to_party(ref: dict | None, subject: str | None) -> dict | None:
    if not isinstance(ref, dict):
        return None
    target = ref.get("reference")
    if target and (target == subject or target == SUBJECT):
        return {"_type": "PARTY_SELF"}
    party: dict = {"_type": "PARTY_IDENTIFIED"}
    if ref.get("display"):
        party["name"] = ref["display"]
    ident = ref.get("identifier") or {}
    if target:
        kind = _REF_TYPES.get(target.split("/")[0], "PARTY")
        party["external_ref"] = {"_type": "PARTY_REF", "id": {"_type": "GENERIC_ID", "value": target,
                                                             "scheme": FHIR_NS},
                                 "namespace": FHIR_NS, "type": kind}
        if ident.get("value"):  # a reference with a business identifier: both kept
            party["identifiers"] = [dt.identifier_to_dv(ident)]
    elif ident.get("value"):
        sysuri = ident.get("system") or ""
        ns = unquote(sysuri[len(NS_PREFIX):]) if sysuri.startswith(NS_PREFIX) else (sysuri or "local")
        party["external_ref"] = {"_type": "PARTY_REF", "id": {"_type": "GENERIC_ID", "value": ident["value"],
                                                             "scheme": ns}, "namespace": ns, "type": "PARTY"}
    return party if len(party) > 1 else None
