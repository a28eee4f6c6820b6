"""FHIR-born detail kept at the site: the source resources in the entry's FEEDER_AUDIT.

An entry built from FHIR resources (not from our own, openEHR-born ones) keeps what FHIR sent in the
place the RM has for it: ``feeder_audit.original_content``, a DV_PARSABLE with formalism
``application/fhir+json`` holding a Bundle (type collection) of the source resources exactly as sent,
plus ``originating_system_item_ids`` naming each one (``Type/id/_history/version``).

The Bundle also says what to give back.  For every top-level element of a source resource that the
forward mapping of the entry does not reproduce (an identifier, a performer, a reference range's
``appliesTo``, a coding's version...), its Bundle entry carries an ``openehr-feeder-basis`` extension:
the openEHR node the resource maps to (entry-relative path), an anchor (hash of what the mapping gives
for the resource's code), the element's name and its ``basis``: a hash of what the forward mapping gave
for that element when the entry was made.  Mapping the entry forward again (``restore``), the element is
put back as sent only while the mapping still gives that: an edit at the site wins, and the stale FHIR
detail is reported, never re-applied, exactly as the ``openehr-residue`` does the other way.

Each entry with a node also carries ``whole``: a hash of everything the forward mapping gave for the
resource when the entry was made.  ``unchanged`` compares it again, so that what describes several
resources at once -- a FHIR-born document's sections, their titles, codes and narrative -- is given
back only while the site has changed none of the resources it describes (composition.py).

Side resources the group references but that are no entry (Practitioner, PractitionerRole,
Organization, Device, ServiceRequest, a referenced Medication...) are kept in the same Bundle without
that extension: the references come back as sent, so the centre's graph stays whole, and the site keeps
the resources themselves.

Hashes compare under ``compare_clinical``'s rules (the id part of references is not compared), so the
ids the resources get on each side do not matter.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from . import fhirmodel, rmpath, terminology
from .fidelity import clinical_content
from .residue import URL as RESIDUE_URL

FHIR_JSON = "application/fhir+json"
BASIS_URL = terminology.SD_BASE + "openehr-feeder-basis"
SYSTEM_ID = "FHIR"
# the Bundle's entries need a RESTful fullUrl for their relative references; the mapping does not know the
# centre's address, so a fixed stand-in names "the FHIR server the resource came from"
CENTRAL_BASE = terminology.BASE + "/central"
# not compared or given back: the resource's identity and narrative
_NOT_KEPT = frozenset({"resourceType", "id", "text"})
_ANCHORS = ("code", "type", "medicationCodeableConcept", "medicationReference")
_META_CLINICAL = ("tag", "security")  # the rest of meta is server bookkeeping or our profile claims
_PATIENT = frozenset({"subject", "patient"})  # the elements that name the record's patient (convert.patient_element)
# elements that interpret the rest of the resource (an interpretation 'high' says something about the value):
# given back only while the whole resource maps as it did, not just the element itself
_DEPENDENT = frozenset({"interpretation", "conclusion", "conclusionCode", "presentedForm", "note"})
# fixed codes the profiles we claim require (a US Core category slice): the sender's are given back beside them
_MERGED = frozenset({"category"})


@dataclass
class Kept:
    """One source resource kept in the feeder audit, with the elements to give back."""
    resource: dict
    node: str | None = None  # entry-relative path of the node it maps to; None: a side resource
    anchor: str | None = None
    elements: dict[str, str] = field(default_factory=dict)  # element name -> basis
    whole: str | None = None  # what the forward mapping gave for the whole resource when the entry was made

    @property
    def ref(self) -> str:
        return f"{self.resource.get('resourceType')}/{self.resource.get('id')}"


def _h(rtype: str, value) -> str:
    norm = _numbers(clinical_content({"resourceType": rtype, "v": value}))
    return "sha256:" + hashlib.sha256(json.dumps(norm, sort_keys=True, default=str).encode()).hexdigest()[:16]


def digest(value) -> str:
    """A basis of a value that is no single element of a resource (``keep``'s and ``restore``'s ``bases``)."""
    return _h("Basis", value)


def _numbers(v):
    """Numbers by value, as compare_clinical compares them: EHRbase gives a magnitude 107 back as 107.0."""
    if isinstance(v, dict):
        return {k: _numbers(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_numbers(x) for x in v]
    return int(v) if isinstance(v, float) and v.is_integer() else v


def view(res: dict, name: str):
    """The sender's part of one top-level element: our source identifiers, residue extensions, meta
    bookkeeping/profiles and the patient reference (the caller's patient_ref, in ``subject`` or, in an
    AllergyIntolerance, Immunization, FamilyMemberHistory, Consent, ``patient``) are the mapping's own."""
    v = res.get(name)
    if name == "identifier" and isinstance(v, list):
        v = [i for i in v if not (isinstance(i, dict) and i.get("system") == terminology.SOURCE_SYSTEM)] or None
    elif name == "identifier" and isinstance(v, dict) and v.get("system") == terminology.SOURCE_SYSTEM:
        v = None
    elif name in _PATIENT and isinstance(v, dict):
        v = {k: x for k, x in v.items() if k != "reference"} or None
    elif name == "extension" and isinstance(v, list):
        v = [e for e in v if not (isinstance(e, dict) and e.get("url") == RESIDUE_URL)] or None
    elif name == "meta" and isinstance(v, dict):
        v = {k: v[k] for k in _META_CLINICAL if k in v} or None
    return v


def _anchor(res: dict) -> str:
    rtype = str(res.get("resourceType"))
    return _h(rtype, [view(res, k) for k in _ANCHORS])


def basis(res: dict, name: str) -> str:
    """What the mapping gives that the element ``name`` describes: the element itself, all choices of a
    choice element (a medicationReference sent stands for the medicationCodeableConcept the mapping
    makes: a site edit of the drug changes that), or the whole resource for an element that interprets
    the rest (``_DEPENDENT``)."""
    rtype = str(res.get("resourceType"))
    if name in _DEPENDENT:
        return whole(res, but=name)
    return _h(rtype, {k: view(res, k) for k in _choice_group(rtype, name)})


def whole(res: dict, but: str | None = None) -> str:
    """What the forward mapping gives for the whole resource (but one element), as the sender's view of each
    element: a site edit of anything the resource says changes it."""
    rtype = str(res.get("resourceType"))
    return _h(rtype, {k: v for k in sorted(res) if k not in _NOT_KEPT and k != but
                      for v in [view(res, k)] if v is not None})


def differing(source: dict, twin: dict) -> dict[str, str]:
    """{element: basis} for the source's elements the twin (the forward mapping) does not reproduce."""
    rtype = str(source.get("resourceType"))
    out = {}
    for name in sorted(source):
        if name in _NOT_KEPT or view(source, name) is None or not _parsable(rtype, name, source[name]):
            continue
        if _h(rtype, view(source, name)) != _h(rtype, view(twin, name)):
            out[name] = basis(twin, name)
    return out


def _parsable(rtype: str, name: str, value) -> bool:
    """False for a code outside its required binding (a Procedure status 'final'): giving it back would
    make a resource the FHIR server refuses, so it stays a declared loss."""
    codes = fhirmodel.allowed_codes(rtype, name) if isinstance(value, str) else None
    return codes is None or value in codes


def keep(entry: dict, pairs: list[tuple[dict, dict | None, str | None]], side: list[dict],
         bases: dict[str, str] | None = None) -> list[Kept]:
    """Write the entry's feeder audit: ``pairs`` are (source resource, its forward twin or None, the twin's
    entry-relative node path); ``side`` the referenced resources that are no entry; ``bases``: an element's
    basis when it is not the twin's own element (a document's sections: the resources they describe)."""
    kept = [Kept(src, node, _anchor(twin), {k: (bases or {}).get(k, b) for k, b in differing(src, twin).items()},
                 whole(twin)) if twin is not None else Kept(src)
            for src, twin, node in pairs] + [Kept(r) for r in side]
    entries = []
    for k in kept:
        e: dict = {"fullUrl": f"{CENTRAL_BASE}/{k.ref}", "resource": k.resource}
        if k.anchor is not None:  # made into an entry: where it maps, even with nothing to give back
            where = [{"url": "node", "valueString": k.node or "/"}, {"url": "anchor", "valueString": k.anchor},
                     {"url": "whole", "valueString": k.whole}]
            e["extension"] = [{"url": BASIS_URL, "extension": where + [
                {"url": "element", "valueString": name}, {"url": "basis", "valueString": basis}]}
                for name, basis in k.elements.items()] or [{"url": BASIS_URL, "extension": where}]
        entries.append(e)
    ids = []
    for k in kept:
        ver = (k.resource.get("meta") or {}).get("versionId")
        ids.append({"_type": "DV_IDENTIFIER", "id": k.ref + (f"/_history/{ver}" if ver else ""), "type": "fhir-id"})
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    entry["feeder_audit"] = {
        "_type": "FEEDER_AUDIT",
        "originating_system_audit": {"_type": "FEEDER_AUDIT_DETAILS", "system_id": SYSTEM_ID},
        "originating_system_item_ids": ids,
        "original_content": {"_type": "DV_PARSABLE", "formalism": FHIR_JSON,
                             "value": json.dumps(bundle, ensure_ascii=False, sort_keys=True)}}
    return kept


def kept(node: dict) -> list[Kept]:
    """The resources kept in a node's feeder audit ([] when it holds no FHIR source Bundle)."""
    fa = node.get("feeder_audit") if isinstance(node, dict) else None
    content = (fa or {}).get("original_content") or {}
    if ((fa or {}).get("originating_system_audit") or {}).get("system_id") != SYSTEM_ID \
            or content.get("formalism") != FHIR_JSON:
        return []
    try:
        bundle = json.loads(content.get("value") or "")
    except (TypeError, ValueError):
        return []
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        return []
    out = []
    for e in bundle.get("entry") or []:
        if not isinstance(e, dict) or not isinstance(e.get("resource"), dict):
            continue
        k = Kept(e["resource"])
        for ext in e.get("extension") or []:
            sub = {s.get("url"): s.get("valueString") for s in ext.get("extension") or []} \
                if isinstance(ext, dict) and ext.get("url") == BASIS_URL else {}
            if sub.get("anchor"):
                k.node = "" if sub.get("node") == "/" else sub.get("node")
                k.anchor = sub.get("anchor")
                k.whole = sub.get("whole")
            if sub.get("anchor") and sub.get("element") and sub.get("basis"):
                k.elements[sub["element"]] = sub["basis"]
        out.append(k)
    return out


def side_resources(node: dict) -> list[dict]:
    """The resources a node's feeder audit keeps by reference: no node of the entry maps them."""
    return [k.resource for k in kept(node) if k.anchor is None]


def side_copies(composition: dict) -> dict[str, dict]:
    """``Type/id`` -> the copy kept by reference in any entry's feeder audit, or the composition's own (a
    FHIR-born document's author, custodian): what a round-trip check compares such a resource with (the
    centre keeps it; to_fhir does not send it again)."""
    nodes = [composition, *(e for _, e in rmpath.entries(composition))]
    return {f"{r.get('resourceType')}/{r.get('id')}": r for e in nodes for r in side_resources(e)}


def unchanged(node: dict, made: list[tuple[dict, str]]) -> set[str]:
    """The kept source resources (``Type/id``) that the node's forward mapping ``made`` exactly as when the
    entry was made (same node, same ``whole``): the site changed nothing they say.  Call it before
    ``restore``, which adds the sender's elements to ``made``."""
    records = [k for k in kept(node) if k.anchor is not None and k.whole]
    out: set[str] = set()
    for res, rel in made:
        now = whole(res)
        k = next((k for k in records if k.ref not in out and k.node == rel and k.whole == now
                  and k.resource.get("resourceType") == res.get("resourceType")), None)
        if k is not None:
            out.add(k.ref)
    return out


def restore(node: dict, made: list[tuple[dict, str]], bases: dict[str, str] | None = None) -> list[str]:
    """Give the kept elements back to the resources the node's forward mapping ``made`` ((resource, its
    node path relative to the node)), each only while its basis holds (``bases``: the basis now of an element
    that is not the resource's own, as ``keep`` was given it); returns the stale ones as ``Type/id:element``
    (the source resource's reference)."""
    records = [k for k in kept(node) if k.elements]
    stale: list[str] = []
    used: set[int] = set()
    for res, rel in made:
        anchor = _anchor(res)
        same = [k for k in records if id(k) not in used and k.resource.get("resourceType") == res.get("resourceType")]
        k = next((k for k in same if k.anchor == anchor and k.node == rel), None) \
            or next((k for k in same if k.anchor == anchor), None)
        if k is None:
            continue
        used.add(id(k))
        holds = {name: (bases or {}).get(name, basis(res, name)) == b  # all before any is put back
                 for name, b in k.elements.items()}
        retyped = False
        for name, ok in holds.items():
            if ok:
                retyped |= _put(res, name, k.resource)
            else:
                stale.append(f"{k.ref}:{name}")
        if retyped:  # the sender's value[x] type or code, not ours: the profile we claimed (mCODE ECOG: LOINC
            _drop_profiles(res)  # 89247-1, an integer) no longer holds and HAPI would refuse it; we claim none
    # a kept resource whose node the site changed so its code no longer maps the same: all of it is stale
    stale.extend(f"{k.ref}:{name}" for k in records if id(k) not in used
                 and any(r.get("resourceType") == k.resource.get("resourceType") and rel == k.node for r, rel in made)
                 for name in k.elements)
    return stale


def _drop_profiles(res: dict) -> None:
    meta = {k: v for k, v in (res.get("meta") or {}).items() if k != "profile"}
    if meta:
        res["meta"] = meta
    else:
        res.pop("meta", None)


def _put(res: dict, name: str, source: dict) -> bool:
    """res[name] := the source's value, keeping what is the mapping's own (our identifiers, residue,
    profile claims) and dropping the other choices of a choice element (medication[x]...).  True when ours
    is replaced in a way a profile we claim may not allow: the sender's form of a choice element is another
    type than the one we made, or the sender's code lacks a coding ours has."""
    value = rmpath.jcopy(view(source, name))
    rtype = str(res.get("resourceType"))
    if name == "identifier" and isinstance(res.get("identifier"), dict):
        return False  # 0..1 (Composition.identifier) and holding our source identifier: no room
    if name == "identifier":
        value = [i for i in res.get("identifier") or [] if i.get("system") == terminology.SOURCE_SYSTEM] + (value or [])
    elif name in _PATIENT:
        value = {**({"reference": res[name]["reference"]} if "reference" in (res.get(name) or {}) else {}),
                 **(value or {})}
    elif name == "extension":
        value = (value or []) + [e for e in res.get("extension") or [] if e.get("url") == RESIDUE_URL]
    elif name == "meta":
        value = {**{k: v for k, v in (res.get("meta") or {}).items() if k not in _META_CLINICAL}, **(value or {})}
    elif name in _MERGED and isinstance(value, list):
        sent = [_codes(v) for v in value]  # ours is added unless the sender has one with the same codes
        value = value + [x for x in res.get(name) or [] if _codes(x) not in sent]
    # the code a claimed profile may fix (mCODE's ECOG: LOINC 89247-1) replaced by the sender's without it
    retyped = name == "code" and not _codes(res.get(name)) <= _codes(value)
    for other in _choice_siblings(rtype, name, res):
        if other not in source:
            retyped |= res.pop(other, None) is not None
    if value in (None, [], {}):
        res.pop(name, None)
    else:
        res[name] = value
    return retyped


def _codes(cc) -> frozenset:
    """The (system, code) pairs of a CodeableConcept (its text and displays aside)."""
    return frozenset((c.get("system"), c.get("code")) for c in (cc.get("coding") or [] if isinstance(cc, dict) else [])
                     if isinstance(c, dict))


def _choice_siblings(rtype: str, name: str, res: dict) -> list[str]:
    """Other keys of ``res`` that are choices of the same ``base[x]`` as ``name``."""
    return [k for k in _choice_group(rtype, name) if k != name and k in res]


def _choice_group(rtype: str, name: str) -> list[str]:
    """Every choice of the ``base[x]`` that ``name`` is one of (sorted), else [name]."""
    for i in range(1, len(name)):
        if name[i].isupper():
            try:
                opts = fhirmodel.choices(rtype, name[:i])
            except fhirmodel.UnknownElement:
                return [name]
            if name[i:] in opts:
                return sorted(name[:i] + s for s in opts)
    return [name]
