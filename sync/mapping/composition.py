"""COMPOSITION-level rows: the composition header and EVENT_CONTEXT <-> Encounter + Composition.

A composition whose root archetype has a model file (``specs/model/composition/``) becomes:

* the file's resource (an Encounter), mapped by the engine from the composition *shell* (the
  composition without ``content``: paths such as ``context/start_time``);
* a FHIR Composition, the document header, the same for every composition-level row:
  title <-> name, author <-> composer, category <-> category, language <-> language,
  date <- context/start_time (one way; the Encounter owns the time), status final, type LOINC
  34109-9 Note, encounter -> the Encounter, one section per openEHR SECTION (and one untitled
  section for entries outside SECTIONs) whose entries reference the resources made from the
  entries.  Sections are navigation only: entries find their place again by their identifiers.

Round trip: as for entries, the shell is rebuilt from the two resources and compared with the
source; differences go into openehr-residue (root attributes on the Composition, context on the
Encounter), so the header and context come back exactly.  ``archetype_details`` and ``uid`` are
identity, decided by the template / base composition, not by this mapping.  Parties follow
parties.py; the row's hooks (``partyReference``, ``participations``) are in hooks_composition.py.

Any other COMPOSITION root (a report, a report-result, a case: no model file) becomes the FHIR Composition
alone (``document_only``): the document header every row has, no Encounter (the record names no visit), the
rest of its header in the Composition's residue.  A header from_fhir made up for resources sent without one
(``_made_up``) makes nothing: its time and setting are the sync's, not data.

Persistent lists (problem, medication, adverse reaction list: a file whose resource is a List) become one
**List** instead: the file maps the shell (title <- name, date <- start_time, source <- composer), and
``entry.item`` references every resource made from the composition's entries (one way: on the way back the
entries are entries of their own and the List only gives the header).  No Encounter, no FHIR Composition:
a list is no encounter's document, and the List carries the whole header's residue.
"""
from __future__ import annotations

import copy
import functools

from . import datatypes as dt
from . import engine, feeder, residue, rmpath
from .errors import MappingError
from .fidelity import compare_clinical, element_path
from .identifiers import build_source_identifier, parse_source_identifier, split_source_path, stamp
from .parties import PLACEHOLDER_COMPOSER, SUBJECT, party_to_reference, reference_to_party
from .results import Loss
from .runtime import FWD, REV, Ctx, Unit
from .spec import Spec, iter_rules, registry

OWNED = ("name", "language", "territory", "category", "composer", "context")
RESOURCES = ("Encounter", "Composition", "List")  # every type a composition-level row makes
LIST = "List"
DOCUMENT = "Composition"  # the row of a root archetype without a model file: the document header alone
DOCUMENT_SD = "http://hl7.org/fhir/StructureDefinition/Composition"
# a FHIR-born document's own identifier: the site keeps it (feeder audit), the document it sends back names itself
_ID_TAKEN = ("kept at the site (the composition's feeder audit), not given back: Composition.identifier is 0..1 and "
             "holds the source identifier of the document the site sends (the sender's would name two documents)")
NOTE_TYPE = {"coding": [{"system": "http://loinc.org", "code": "34109-9", "display": "Note"}]}


def spec_for(composition: dict) -> Spec | None:
    """The composition-level row of a composition's root archetype: its model file, else the document header
    alone (``document_only``) for any other COMPOSITION archetype; None when the root is none."""
    arch = composition.get("archetype_node_id") or \
        ((composition.get("archetype_details") or {}).get("archetype_id") or {}).get("value")
    s = registry().get(arch or "")
    if s is not None and "-COMPOSITION." in s.archetype:
        return s
    return document_only(arch) if arch and "-COMPOSITION." in arch else None


@functools.lru_cache(maxsize=64)
def document_only(archetype: str) -> Spec:
    """The row of a COMPOSITION archetype without a model file (a report, a report-result, a case...): the FHIR
    Composition of every row (title, author, date, category, language, sections), no Encounter.  What every
    composition has is said there; the rest of its header (its context's setting, facility, other_context: a
    report's id and status...) travels in that Composition's openehr-residue and comes back exactly.  An
    Encounter would claim a visit the record does not name."""
    return Spec(name=f"{archetype.removeprefix('openEHR-EHR-')} (document header)", archetype=archetype,
                entry_name=archetype, resource=DOCUMENT, structure_definition=DOCUMENT_SD, match=[], hierarchy=None,
                rules=[], source="sync/mapping/composition.py (document_only)")


# ------------------------------------------------------------------ the Composition resource
def _sections(items: list, prefix: str, attr: str, by_entry: dict[str, list[str]]) -> tuple[list, list]:
    """(references of entries directly here, sub-sections) for a content/items list."""
    refs, subs, seen = [], [], {}
    for item in items or []:
        if not isinstance(item, dict):
            continue
        nid = item.get("archetype_node_id", "")
        k = seen.get(nid, 0)
        seen[nid] = k + 1
        path = f"{prefix}/{attr}[{nid}]" + (f":{k}" if k else "")
        if "-SECTION." in nid:
            inner, nested = _sections(item.get("items") or [], path, "items", by_entry)
            sec = {"title": (item.get("name") or {}).get("value", "")}
            if inner:
                sec["entry"] = inner
            if nested:
                sec["section"] = nested
            if inner or nested:
                subs.append(sec)
        else:
            refs.extend(by_entry.get(path, []))
    return refs, subs


def level_types(spec: Spec) -> tuple[str, ...]:
    """The resource types a composition-level row makes: its file's resource, plus the document header for an
    Encounter row."""
    return (spec.resource,) if spec.resource in (LIST, DOCUMENT) else (spec.resource, "Composition")


def list_root(resources: list[dict]) -> str | None:
    """The root archetype of the list a List's code names (a List-row file's fixed code), for a composition made
    without a registered template; None when no List names one."""
    codes = {(c.get("system"), c.get("code")) for r in resources if r.get("resourceType") == LIST
             for c in (r.get("code") or {}).get("coding") or []}
    for spec in registry().values():
        if spec.resource == LIST and "-COMPOSITION." in spec.archetype and codes & {
                (c.get("system"), c.get("code")) for rule in iter_rules(spec.rules) for m in rule.manual
                for f in m.fhir if f.get("path") == "code" for c in f["value"].get("coding") or []}:
            return spec.archetype
    return None


def _entry_references(entry_resources: list[dict]) -> list[dict]:
    return [{"item": {"reference": f"{r['resourceType']}/{r['id']}"}} for r in entry_resources
            if parse_source_identifier(r)]


def document_forward(shell: dict, composition: dict, encounter: dict | None, entry_resources: list[dict]) -> dict:
    by_entry: dict[str, list[str]] = {}
    for r in entry_resources:
        src = parse_source_identifier(r)
        split = split_source_path(src[2]) if src else None
        if split:
            by_entry.setdefault(split[0], []).append({"reference": f"{r['resourceType']}/{r['id']}"})
    loose, subs = _sections(composition.get("content") or [], "", "content", by_entry)
    doc: dict = {"resourceType": "Composition", "status": "final", "type": copy.deepcopy(NOTE_TYPE)}
    if (shell.get("language") or {}).get("code_string"):
        doc["language"] = shell["language"]["code_string"]
    if isinstance(shell.get("category"), dict) and "defining_code" in shell["category"]:
        doc["category"] = [dt.coded_to_fhir(shell["category"])]
    if encounter is not None:
        doc["encounter"] = {"reference": f"Encounter/{encounter.get('id')}"}
    start = ((shell.get("context") or {}).get("start_time") or {}).get("value")
    if start:
        doc["date"] = dt.datetime_to_fhir(start)
    author = party_to_reference(shell.get("composer"))
    doc["author"] = [author or {"extension": [{"url": dt.DAR_EXT, "valueCode": "unknown"}]}]
    doc["title"] = (shell.get("name") or {}).get("value") or "openEHR composition"
    sections = ([{"entry": loose}] if loose else []) + subs
    if sections:
        doc["section"] = sections
    return doc


def document_reverse(doc: dict, shell: dict) -> None:
    if doc.get("title"):
        shell["name"] = {"_type": "DV_TEXT", "value": doc["title"]}
    if doc.get("language"):
        shell["language"] = dt.code_phrase("ISO_639-1", doc["language"])
    cats = doc.get("category") or []
    if cats:
        shell["category"] = dt.cc_to_dv(cats[0])
    authors = doc.get("author") or []
    party = reference_to_party(authors[0] if authors else None, (doc.get("subject") or {}).get("reference"))
    if party:
        shell["composer"] = party


# ------------------------------------------------------------------ units (both resources)
def _skeleton(spec: Spec) -> dict:
    return {"_type": "COMPOSITION", "archetype_node_id": spec.archetype, "context": {"_type": "EVENT_CONTEXT"}}


def rebuild(spec: Spec, encounter: dict | None, doc: dict | None, lang: str, *, apply_residue: bool = False,
            stale: list | None = None) -> dict:
    """The composition shell (OWNED attributes) that the two resources describe."""
    shell = _skeleton(spec)
    if encounter is not None:
        ctx = Ctx(spec=spec, direction=REV, archetype=shell, oroot=shell, resource=encounter,
                         unit=Unit(), language=lang)
        engine.reverse(ctx, spec.rules, encounter, spec.resource, shell)
    if doc is not None:
        document_reverse(doc, shell)
        if doc.get("date") and not shell["context"].get("start_time"):
            shell["context"]["start_time"] = {"_type": "DV_DATE_TIME", "value": doc["date"]}
    if apply_residue:
        items = [it for r in (encounter, doc) if r for it in residue.decode(r)]
        bad = residue.apply(shell, items)
        if stale is not None:
            stale.extend(bad)
    return shell


def _shell(spec: Spec, composition: dict) -> dict:
    out = {k: copy.deepcopy(composition[k]) for k in OWNED if k in composition}
    return {"_type": "COMPOSITION", "archetype_node_id": spec.archetype, **out}


def _diff(original: dict, rebuilt: dict) -> tuple[list, list]:
    """Residue items for root attributes and for the context (paths under /context)."""
    o, r = dict(original), dict(rebuilt)
    oc, rc = o.pop("context", None) or {}, r.pop("context", None) or {}
    root = residue.diff(o, r)
    ctx = [residue.Item("/context" + it.path, it.attr, it.value, it.basis) for it in residue.diff(oc, rc)]
    return root, ctx


def forward(composition: dict, entry_resources: list[dict], *, identify, patient_ref: str, language: str,
            uid: str, unchanged: frozenset[str] | set[str] = frozenset(), sent: bool = False):
    """(resources, losses) for the composition level; ([], []) when the root archetype is unmapped.
    ``unchanged``: the FHIR-born resources the entries gave exactly as when they were made
    (``feeder.unchanged``): a FHIR-born document's sections come back only while they describe those.
    ``sent``: the caller holds the sender's Encounter/Composition (``apply``), so the header is no made-up one."""
    spec = spec_for(composition)
    if spec is None or not sent and _made_up(composition):
        return [], []
    if spec.resource == DOCUMENT and not sent and not any(parse_source_identifier(r) for r in entry_resources):
        return [], []  # the header of no mapped entry: a document of nothing (its entries are reported unmapped)
    if not isinstance(composition.get("context"), dict):
        return [], [Loss("/context", "composition has no event context: no Encounter/Composition made",
                         "unmapped-entry")]
    shell = _shell(spec, composition)
    is_list = spec.resource == LIST
    enc = None if spec.resource == DOCUMENT else {"resourceType": spec.resource}
    if enc is not None:
        identify(enc, "/" if is_list else "/context")
        ctx = Ctx(spec=spec, direction=FWD, archetype=shell, oroot=shell, resource=enc,
                  unit=Unit(), identify=identify, language=language)
        engine.forward(ctx, spec.rules, shell, enc, spec.resource)
    if is_list:
        doc = None
        refs = _entry_references(entry_resources)
        if refs:
            enc["entry"] = refs
    else:
        doc = document_forward(shell, composition, enc, entry_resources)
        identify(doc, "/")  # Composition.identifier is 0..1: a single Identifier (identifiers.stamp)
    made = [r for r in (enc, doc) if r is not None]
    for res in made:
        res["subject"] = {"reference": patient_ref}
        _replace_subject(res, patient_ref)
    # born in FHIR: what the Encounter/Composition said beyond the mapping, while it still applies
    made_at = ([(enc, "/" if is_list else "/context")] if enc is not None else []) + ([(doc, "/")] if doc else [])
    stale = [Loss(p, "FHIR-born detail not given back: the site changed what it describes", "stale")
             for p in feeder.restore(composition, made_at, _section_bases(composition, unchanged))] \
        if "feeder_audit" in composition else []
    root_items, ctx_items = _diff(shell, rebuild(spec, enc, doc, language))
    if ctx_items:
        (enc or doc).setdefault("extension", []).extend(residue.encode(ctx_items))
    if root_items:
        (doc or enc).setdefault("extension", []).extend(residue.encode(root_items))
    if compare_clinical(shell, rebuild(spec, enc, doc, language, apply_residue=True)):
        raise MappingError("residue does not restore the composition header", composition_uid=uid, path="/",
                           rule=spec.name)
    return made, stale + _losses(root_items + ctx_items)


def _made_up(composition: dict) -> bool:
    """A header from_fhir wrote for resources that came without one: composed by the sync itself and no
    Encounter, Composition or List of the sender kept in the composition's feeder audit.  Its start time and
    'other care' setting are ours, not data: sent to the centre they would be an encounter nobody had."""
    return composition.get("composer") == PLACEHOLDER_COMPOSER and \
        not any(k.resource.get("resourceType") in RESOURCES for k in feeder.kept(composition))


def _section_refs(sections) -> list[str]:
    """Every entry reference of a document's sections, nested ones too, in order."""
    out: list[str] = []
    for sec in sections or []:
        if isinstance(sec, dict):
            out += [e["reference"] for e in sec.get("entry") or [] if isinstance(e, dict) and e.get("reference")]
            out += _section_refs(sec.get("section"))
    return out


def _section_bases(composition: dict, described: set[str] | frozenset[str]) -> dict[str, str]:
    """The basis of a FHIR-born document's ``section``: the entries its sections reference among
    ``described`` (every FHIR-born resource of the entries when the composition was made; those unchanged
    when it is mapped again) and how many entries the site recorded itself.  So the sender's sections --
    titles, codes, narrative, grouping -- come back only while the site has changed, removed and added none
    of what they describe: a narrative naming the dose the site has since changed is never given back."""
    doc = next((k.resource for k in feeder.kept(composition) if k.resource.get("resourceType") == "Composition"), None)
    return {"section": _section_basis(doc["section"], composition, described)} if doc and "section" in doc else {}


def _section_basis(sections: list, composition: dict, described: set[str] | frozenset[str]) -> str:
    entries = [e for _, e in rmpath.entries(composition)]
    own = sum(1 for e in entries if not any(k.anchor is not None for k in feeder.kept(e)))
    return feeder.digest({"described": sorted(r for r in _section_refs(sections) if r in described),
                          "site_entries": own})


def _born_entry_resources(composition: dict) -> set[str]:
    """``Type/id`` of every FHIR-born resource an entry of the composition was made from."""
    return {k.ref for _, e in rmpath.entries(composition) for k in feeder.kept(e) if k.anchor is not None}


def _replace_subject(obj, patient_ref: str) -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "reference" and v == SUBJECT:
                obj[k] = patient_ref
            else:
                _replace_subject(v, patient_ref)
    elif isinstance(obj, list):
        for v in obj:
            _replace_subject(v, patient_ref)


def _losses(items) -> list:
    out = []
    for it in items:
        if it.attr == "-":
            continue
        v = it.value.get("value") if isinstance(it.value, dict) else None
        why = "time without zone: FHIR requires one, 'Z' assumed; original kept in openehr-residue" \
            if isinstance(v, str) and dt.is_naive_time(v) else \
            "no standard FHIR element (or a different form) in the mapping; kept in openehr-residue extension"
        out.append(Loss(f"{it.path}/{it.attr}" if it.attr != "*" else it.path or "/", why))
    return out


# ------------------------------------------------------------------ FHIR -> openEHR
def pick(resources: list[dict], kind: str = "Encounter") -> tuple[dict | None, dict | None, list[dict]]:
    """(the row's resource of type ``kind``, the Composition (none for a List row), other composition-level
    resources not used) from a resource list.  A document-only row (``kind`` Composition) has no resource of
    its own: (None, the Composition, the rest)."""
    docs = [r for r in resources if r.get("resourceType") == "Composition"] if kind != LIST else []
    encs = [r for r in resources if r.get("resourceType") == kind] if kind != DOCUMENT else []
    doc = docs[0] if docs else None
    enc = None
    want = ((doc or {}).get("encounter") or {}).get("reference", "")
    for e in encs:
        if want and want.endswith(f"Encounter/{e.get('id')}") or want == f"urn:uuid:{e.get('id')}":
            enc = e
    enc = enc or (encs[0] if encs else None)
    rest = [r for r in resources if r.get("resourceType") in RESOURCES and r is not doc and r is not enc]
    return enc, doc, rest


def apply(comp: dict, resources: list[dict], lang: str, side: list[dict] | None = None) -> list:
    """Write the header/context the Encounter + Composition describe into ``comp``; returns losses.  ``side``:
    the resources a FHIR-born Encounter/Composition references that are no entry (a document's author,
    custodian, attester: Practitioner, Organization...), kept by reference in the composition's feeder audit."""
    spec = spec_for(comp)
    enc, doc, rest = pick(resources, spec.resource if spec else "Encounter")
    losses = [Loss(f"{r['resourceType']}/{r.get('id')}", "a second or another kind of composition-level "
                   "resource: only one row per composition", "unmapped-entry") for r in rest]
    if spec is None or (enc is None and doc is None):
        losses += [Loss(f"{r['resourceType']}/{r.get('id')}", "the composition's root archetype has no "
                        "composition-level mapping", "unmapped-entry") for r in (enc, doc) if r]
        return losses
    stale: list[str] = []
    shell = rebuild(spec, enc, doc, lang, apply_residue=True, stale=stale)
    losses += [Loss(p, "FHIR value changed since sync; openEHR-only detail dropped", "stale") for p in stale]
    for k in OWNED:
        if k == "context" and (enc is None or not (shell.get("context") or {}).get("start_time")):
            comp["context"] = {**(comp.get("context") or {}), **shell["context"]}  # keep what the caller had
            continue
        if k in shell:
            comp[k] = shell[k]
    if "uid" not in comp:
        src = parse_source_identifier(enc or doc)
        if src:
            comp["uid"] = {"_type": "HIER_OBJECT_ID", "value": src[1]}
    losses += _reverse_losses(spec, enc, doc, comp, lang, side or [])
    return losses


def _reverse_losses(spec, enc, doc, comp, lang, side: list[dict]) -> list:
    """FHIR data of the two resources that mapping the rebuilt header forward does not give back."""
    subject = ((enc or doc).get("subject") or {}).get("reference") or "Patient/x"
    paths: dict[int, str] = {}
    try:
        back, _ = forward({**comp, "content": []}, [], patient_ref=subject, language=lang, uid="x", sent=True,
                          identify=lambda r, p: paths.update({id(r): p}) or stamp(r, build_source_identifier("x", "x", p))
                          or r.update(id=(enc or doc).get("id")))
    except Exception:  # noqa: BLE001 - a failing re-forward means nothing is confirmed
        back = []
    if parse_source_identifier(enc or doc) is None:  # born in FHIR: kept in the composition's feeder audit
        by_type = {r["resourceType"]: r for r in back}
        twin_of = {t: residue.strip(b) for t, b in by_type.items()}
        # a document's sections: kept with the entries they describe as their basis (``_section_bases``)
        bases = {"section": _section_basis(doc["section"], comp, _born_entry_resources(comp))} \
            if doc and doc.get("section") else {}
        feeder.keep(comp, [(r, twin_of[r["resourceType"]], paths.get(id(by_type[r["resourceType"]])))
                           if r["resourceType"] in by_type else (r, None, None) for r in (enc, doc) if r], side, bases)
        feeder.restore(comp, [(b, paths.get(id(b), "")) for b in back], bases)
    twins = {r["resourceType"]: residue.strip(r) for r in back}
    out = []
    for r in (enc, doc):
        if r is None:
            continue
        mine = residue.strip(r)
        twin = twins.get(r["resourceType"], {"resourceType": r["resourceType"]})
        # the subject comes back from the caller's patient reference: only that reference survives (its
        # display, identifier... are lost); our own document's sections are rebuilt from the entries'
        # identifiers, a FHIR-born document's sections (titles, codes, narrative, grouping) are not read
        if "reference" in (mine.get("subject") or {}):  # what the feeder audit kept stays (display...)
            twin["subject"] = {**(twin.get("subject") or {}), "reference": mine["subject"]["reference"]}
        for x in (mine, twin):
            x.pop("encounter", None)
            if r["resourceType"] == LIST:
                x.pop("entry", None)  # the listed resources come back as entries of their own
            if parse_source_identifier(r) is not None:
                x.pop("section", None)
        for d in sorted(compare_clinical(mine, twin), key=lambda d: (d["path"], d["kind"])):  # not key order
            if d["kind"] in ("dictionary_item_added", "iterable_item_added"):
                continue
            el = element_path(d["path"])
            why = _ID_TAKEN if r["resourceType"] == "Composition" and el.split(".")[0].split("[")[0] == "identifier" \
                else "no openEHR element for this FHIR data in the mapping"
            out.append(Loss(f"{r['resourceType']}/{r.get('id')}:{el}", why, "dropped"))
    return out
