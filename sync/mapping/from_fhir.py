"""FHIR resources -> one canonical openEHR composition.

Resources are grouped back into the entries they came from (our source
identifier names the entry and event), or one entry per resource group when
they were born in FHIR.  Residue items are re-applied (unless the FHIR side
has since edited the value), and what FHIR had that openEHR cannot hold is
reported by mapping the result forward again and comparing.
"""
from __future__ import annotations

import copy
import re
from datetime import datetime, timezone

from . import careplan_action
from . import composition as composition_level
from . import datatypes as dt
from . import engine, feeder, fhirmodel, residue, rmcheck, rmpath, templates, unclaimed
from .convert import rebuild_group
from .errors import MalformedInput, UnmappedTemplate
from .fidelity import compare_clinical, element_path
from .identifiers import build_source_identifier, parse_source_identifier, split_source_path, stamp
from .lookup import archetype_of, hook_elements, parent_spec, slot_rule, spec_for_resource, written_elements
from .origins import born_entries
from .parties import PLACEHOLDER_COMPOSER
from .results import Loss, OpenEHRResult
from .spec import registry

_SKIP_TYPES = {"Provenance", "Patient", "Practitioner", "Organization", "Device",
               *composition_level.RESOURCES}  # Encounter/Composition/List: composition level (composition.py)
# orders no file claims (a laboratory order a report is basedOn): read by no mapping, like the types above
_ORDERS = frozenset({"ServiceRequest"})
# read only as part of what references them (a Specimen: a report's or result's): alone, no entry
# (public: the engine sends a central one that belongs to no synced record to no site)
PART_ONLY = frozenset({"Specimen"})


def _refs(obj) -> list[str]:
    out = []
    if isinstance(obj, dict):
        for k in sorted(obj):  # never the JSON key order: the same resource reloaded must group the same
            v = obj[k]
            if k == "reference" and isinstance(v, str):
                out.append(v)
            else:
                out.extend(_refs(v))
    elif isinstance(obj, list):
        for v in obj:
            out.extend(_refs(v))
    return out


def _groups(resources: list[dict]):
    """[(top spec, [primary, *children] or [lone child], source entry path | None, event node, event idx)]."""
    specs = registry()
    by_ref = {}
    for r in resources:
        by_ref[f"{r.get('resourceType')}/{r.get('id')}"] = r
        by_ref[f"urn:uuid:{r.get('id')}"] = r
    # a resource of another type than its source node's file maps (the ImagingStudy an imaging report's hook
    # made from its protocol) is no entry: it goes along with the resource naming it, read by that hook
    named = [(r, n if n is None or specs[n].resource == r.get("resourceType") else None)
             for r, n in ((r, archetype_of(r)) for r in resources)]
    names = {id(r): n for r, n in named}

    def own_entry(cur: dict, k: dict) -> bool:
        """k is mapped on its own, not as part of cur: an entry-level resource (a MedicationAdministration
        naming its MedicationRequest), or a slot resource of cur's own kind that cur's file has no slot
        for (a lab panel Observation's hasMember analytes).  Other resources go along (Medication;
        T/N/M members, read by the stage group's hook)."""
        ksrc, csrc = parse_source_identifier(k), parse_source_identifier(cur)
        if ksrc and csrc and ksrc[2].startswith(csrc[2] + "/"):
            return False  # made from a node inside cur's source node (TNM members of a stage group)
        ks, cs = specs.get(names.get(id(k)) or ""), specs.get(names.get(id(cur)) or "")
        if ks is not None and ks is cs and any(x in _refs(cur.get(e)) for e in hook_elements(cs)
                                               for x in (f"{k.get('resourceType')}/{k.get('id')}", f"urn:uuid:{k.get('id')}")):
            return False  # read by cur's own file through a hook (a stage group's hasMember: T/N/M)
        return ks is not None and (not ks.is_cluster or (ks is cs and slot_rule(cs, ks) is None))

    def reach(r: dict) -> list[dict]:
        """Resources r references, and (transitively) what referenced slot resources reference:
        a TNM stage group brings its T/N/M members along."""
        found: list[dict] = []

        def visit(cur):  # depth first, in reference order: the order the forward mapping emits
            for x in _refs(cur):
                k = by_ref.get(x)
                if k is None or k is r or any(k is f for f in found) or own_entry(cur, k):
                    continue
                found.append(k)
                if specs.get(names.get(id(k)) or "") is not None and specs[names[id(k)]].is_cluster:
                    visit(k)
        visit(r)
        return found

    used: set[int] = set()
    out = []
    for r, name in named:
        spec = specs.get(name) if name else None
        if spec is None or spec.is_cluster:
            continue
        kids = reach(r)
        used.update(id(k) for k in kids)
        out.append((spec, [r] + kids, r))
    loose = [r for r, name in named if specs.get(name or "") is not None and specs[name].is_cluster
             and id(r) not in used]
    inner = {id(k) for r in loose for k in reach(r)}
    for r in loose:
        if id(r) in inner:
            continue  # brought along by another slot resource
        named = [(g, spec) for spec, g, a in out if not parse_source_identifier(r)
                 and {f"{a['resourceType']}/{a.get('id')}", f"urn:uuid:{a.get('id')}"} & set(_refs(r))
                 and slot_rule(spec, specs[names[id(r)]])]
        if named:  # FHIR-born, naming a primary with a slot for it (a TNM Observation's focus: its Condition)
            named[0][0].extend([r] + [k for k in reach(r) if id(k) not in used and not any(k is x for x in named[0][0])])
            continue
        parent = parent_spec(specs[names[id(r)]])
        if parent and r.get("resourceType") not in PART_ONLY:
            out.append((parent, [r] + [k for k in reach(r) if id(k) not in used], r))
    result = []
    for spec, group, anchor in out:
        src = parse_source_identifier(anchor)
        entry_path, event_node, event_idx = None, None, 0
        if src:
            split = split_source_path(src[2])
            if split:
                entry_path, rest = split
                m = re.search(_split_pattern(spec), rest)  # hierarchy split
                if m:
                    event_node, event_idx = m.group(1), int(m.group(2) or 0)
        result.append((spec, group, entry_path, event_node, event_idx))
    return result


def _relabel_root(comp: dict, root: str | None) -> None:
    """A composition built before the template's root was read right is labelled with a nested archetype (the
    first archetype_id of its OPT's text: an OBSERVATION, a CLUSTER); its next version gets the template's root."""
    if not root or "-COMPOSITION." not in root or "-COMPOSITION." in (comp.get("archetype_node_id") or ""):
        return
    comp["archetype_node_id"] = root
    details = comp.get("archetype_details")
    if isinstance(details, dict) and isinstance(details.get("archetype_id"), dict):
        details["archetype_id"]["value"] = root


def _skeleton(template_id: str, language: str, territory: str, start_time: str | None, level: list[dict],
              root: str | None = None) -> dict:
    info = templates.get(template_id)
    root = root or (info.root_archetype if info else composition_level.list_root(level)
                    or "openEHR-EHR-COMPOSITION.encounter.v1")
    return {"_type": "COMPOSITION", "name": {"_type": "DV_TEXT", "value": info.concept if info else template_id},
            "archetype_node_id": root,
            "archetype_details": {"_type": "ARCHETYPED", "archetype_id": {"_type": "ARCHETYPE_ID", "value": root},
                                  "template_id": {"_type": "TEMPLATE_ID", "value": template_id},
                                  "rm_version": "1.0.4"},
            "language": dt.code_phrase("ISO_639-1", info.language if info else language),
            "territory": dt.code_phrase("ISO_3166-1", territory),
            "category": dt.coded_text("event", "openehr", "433"),
            "composer": dict(PLACEHOLDER_COMPOSER),
            "context": {"_type": "EVENT_CONTEXT",
                        "start_time": {"_type": "DV_DATE_TIME", "value": start_time or
                                       datetime.now(timezone.utc).isoformat()},
                        "setting": dt.coded_text("other care", "openehr", "238")},
            "content": []}


def _place(composition: dict, entry_path: str | None, entry: dict) -> None:
    """Put the entry where it came from (replacing the old one), else at the end of content."""
    if entry_path:
        steps = rmpath.parse(entry_path)
        parent = rmpath.find(composition, steps[:-1])[0] if len(steps) > 1 and rmpath.find(
            composition, steps[:-1]) else (composition if len(steps) == 1 else None)
        if parent is not None:
            old = rmpath.find(composition, steps)
            lst = parent.setdefault(steps[-1].attr, [])
            if old:
                lst[[i for i, x in enumerate(lst) if x is old[0]][0]] = entry
            else:
                lst.append(entry)
            return
    composition.setdefault("content", []).append(entry)


def _skipped(r: dict) -> bool:
    """Read by no mapping by design: parties, Provenance, the composition level, an order no file claims."""
    t = r.get("resourceType")
    return t in _SKIP_TYPES or (t in _ORDERS and spec_for_resource(r) is None)


def _side(group: list[dict], resources: list[dict], taken: set[int]) -> list[dict]:
    """The resources a FHIR-born group references (transitively) that are no entry of their own nor the
    composition level: parties, devices, the order a lab report is based on... kept in the entry's feeder
    audit (``feeder.keep``), so the references come back as sent."""
    by_ref = {}
    for r in resources:
        by_ref[f"{r.get('resourceType')}/{r.get('id')}"] = r
        by_ref[f"urn:uuid:{r.get('id')}"] = r
    out: list[dict] = []
    todo = list(group)
    while todo:
        for x in _refs(todo.pop(0)):
            k = by_ref.get(x)
            if k is None or id(k) in taken or k.get("resourceType") in ("Patient", "Provenance") \
                    or any(k is o for o in out):
                continue
            out.append(k)
            todo.append(k)
    return out


def _homed(groups: list, held: frozenset[str] | None) -> list:
    """``groups`` without the part-only members (a Specimen) whose archetype the target template lacks
    (its CLUSTER.specimen slot unfilled): such a member is no node of the entry but a side resource, kept
    whole in the entry's feeder audit, its references given back as sent."""
    if held is None:
        return groups
    return [(spec, [g[0]] + [k for k in g[1:] if k.get("resourceType") not in PART_ONLY or archetype_of(k) in held],
             *rest) for spec, g, *rest in groups]


def from_fhir(resources: list[dict], *, template_id: str, base_composition: dict | None = None,
              language: str = "en", territory: str = "DE", archetypes: frozenset[str] | None = None,
              root: str | None = None) -> OpenEHRResult:
    """Build the composition and report FHIR data that has no place in it (see module doc).  ``archetypes``:
    those the target template holds, ``root``: its root COMPOSITION archetype, when the caller knows them and the
    template is not registered here (the engine reads both from the site's web template)."""
    if not isinstance(resources, list) or not all(isinstance(r, dict) and "resourceType" in r for r in resources):
        raise MalformedInput("resources must be a list of FHIR resources", path="resources")
    wanted = [r for r in resources if not _skipped(r)]
    registered = templates.get(template_id)
    groups = _homed(_groups(wanted), archetypes if archetypes is not None else
                    registered.archetypes if registered else None)
    losses: list[Loss] = []
    grouped = {id(r) for _, g, *_ in groups for r in g}
    level = [r for r in resources if r.get("resourceType") in composition_level.RESOURCES]
    sides = {id(g[0]): _side(g, resources, grouped | {id(r) for r in level}) for _, g, *_ in groups
             if not parse_source_identifier(g[0])}
    kept = {id(r) for s in sides.values() for r in s}
    # what a FHIR-born Encounter/Composition references that is no entry: kept in the composition's feeder audit
    born_level = [r for r in level if not parse_source_identifier(r)]
    level_side = _side(born_level, resources, grouped | {id(r) for r in level} | kept) if born_level else []
    kept |= {id(r) for r in level_side}
    for r in wanted:
        if id(r) not in grouped and id(r) not in kept:
            if r.get("resourceType") in PART_ONLY:
                losses.append(Loss(f"{r.get('resourceType')}/{r.get('id')}", "read only with the report or result "
                                   "that references it; none does here", "unmapped-entry"))
            else:  # no file claims it (fhirConfig.match): never filed under a default meaning, left for a person
                losses.append(Loss(f"{r.get('resourceType')}/{r.get('id')}", unclaimed.reason(r), "unmapped-resource"))
    for r in resources:  # read by no mapping by design (parties, unclaimed orders, Provenance): still declared
        if _skipped(r) and r.get("resourceType") not in composition_level.RESOURCES and id(r) not in kept:
            losses.append(Loss(f"{r.get('resourceType')}/{r.get('id')}",
                               f"not composition content: from_fhir reads no {r.get('resourceType')}", "unmapped-entry"))
    if not groups and not level:
        raise UnmappedTemplate("none of the resources has a model mapping", path=template_id, rule="registry")
    if registered:
        missing = {s.archetype for s, *_ in groups} - registered.archetypes
        if missing:
            raise UnmappedTemplate("template has no slot for mapped archetype(s) " + ", ".join(sorted(missing)),
                                   path=template_id, rule="template.slots")
    if base_composition is not None:
        comp = copy.deepcopy(base_composition)
        lang = (comp.get("language") or {}).get("code_string", language)
        _relabel_root(comp, root or (registered.root_archetype if registered else None))
    else:
        times = [t for _, g, *_ in groups for t in [g[0].get("effectiveDateTime")] if t]
        comp = _skeleton(template_id, language, territory, min(times) if times else None, level, root)
        lang = comp["language"]["code_string"]
        vo = {parse_source_identifier(g[0])[1] for _, g, *_ in groups if parse_source_identifier(g[0])}
        if len(vo) == 1:
            comp["uid"] = {"_type": "HIER_OBJECT_ID", "value": vo.pop()}
    merged: dict[object, tuple[str | None, list]] = {}
    rebuilt = []
    born = born_entries(comp) if base_composition is not None else {}
    for n, (spec, group, entry_path, event_node, event_idx) in enumerate(groups):
        # a FHIR-born resource replaces the entry it made (whose feeder audit names it), never a twin beside it
        entry_path = entry_path or born.get(f"{group[0].get('resourceType')}/{group[0].get('id')}")
        stale: list[str] = []
        entry = rebuild_group(spec, group, event_node, lang, apply_residue=True, stale=stale)
        losses.extend(Loss(p, "FHIR value changed since sync; openEHR-only detail dropped", "stale") for p in stale)
        rebuilt.append((spec, group, entry))
        merged.setdefault(entry_path or ("new", n), (entry_path, []))[1].append((event_idx, entry))
    # each entry is re-forwarded beside the others: a care plan names the requests and goals recorded with it
    beside = {"content": [entry for *_, entry in rebuilt]}
    for spec, group, entry in rebuilt:
        losses.extend(_fhir_losses(spec, group, entry, lang, beside, side=sides.get(id(group[0]))))
    for entry_path, parts in sorted(merged.values(), key=lambda v: _source_order(v[0])):
        _place(comp, entry_path, _merge_events(parts))
    plans = [(next(r for r in g if r.get("resourceType") == "CarePlan"), e) for s, g, e in rebuilt
             if s.archetype == careplan_action.REQUEST and any(r.get("resourceType") == "CarePlan" for r in g)]
    if plans:  # a plan's status other than the request alone says: an ACTION.care_plan beside it
        said = careplan_action.reverse(comp, plans, language=lang, archetypes=archetypes if archetypes is not None
                                       else registered.archetypes if registered else None,
                                       based=base_composition is not None)
        losses = [x for x in losses if not careplan_action.covered(x, [p for p, _ in plans], said)] + said
    if level:
        losses.extend(composition_level.apply(comp, level, lang, side=level_side))
    return OpenEHRResult(comp, losses + _refused(comp))


def _refused(comp: dict) -> list[Loss]:
    """One loss per entry missing what the RM requires (rmcheck), named by the resources it was made from:
    the site's CDR refuses the composition, and no time is made up for it."""
    entries = dict(rmpath.entries(comp))
    by_entry: dict[str, list[rmcheck.Missing]] = {}
    for m in rmcheck.missing(comp):
        by_entry.setdefault(m.entry, []).append(m)
    out = []
    for path, gaps in by_entry.items():
        ids = (entries[path].get("feeder_audit") or {}).get("originating_system_item_ids") or []
        refs = [str(i.get("id", "")).split("/_history")[0] for i in ids] or [path]
        needs = ", ".join(m.name for m in gaps)
        out.append(Loss(", ".join(refs), f"the openEHR RM requires {needs} (1..1) and the source gives no time for "
                        f"{path}: the site's CDR refuses the composition; nothing is made up, left for a person",
                        "refused"))
    return out


def map_back(resources: list[dict], *, template_id: str, header_for: dict | None = None) -> tuple[list[dict], dict]:
    """(entries, header) the resources map back to without a base composition.

    from_fhir's own reverse path (group, rebuild each group with its residue, merge the events of one
    entry) without its loss report, which costs a second forward mapping per group: the runtime fidelity
    guard maps every forward result back with it (bench/guard.py), and tests/engine/test_guard_corpus.py
    holds it equal to from_fhir's composition.  ``header_for`` is the source composition when its header
    was mapped too (an Encounter/Composition was made): the header (composition.OWNED) is rebuilt by its
    root archetype's composition-level file; without it the header is {}."""
    info = templates.get(template_id)
    lang = info.language if info else "en"  # as _skeleton: there is no base composition to take it from
    merged: dict[object, list] = {}
    wanted = [r for r in resources if not _skipped(r)]
    for n, (spec, group, entry_path, event_node, event_idx) in enumerate(_groups(wanted)):
        entry = rebuild_group(spec, group, event_node, lang, apply_residue=True)
        merged.setdefault(entry_path or ("new", n), []).append((event_idx, entry))
    entries = [_merge_events(parts) for _, parts in sorted(merged.items(), key=lambda kv: _source_order(kv[0]))]
    header: dict = {}
    spec = composition_level.spec_for(header_for) if header_for is not None else None
    if spec is not None:
        enc, doc, _ = composition_level.pick([r for r in resources
                                              if r.get("resourceType") in composition_level.RESOURCES], spec.resource)
        shell = composition_level.rebuild(spec, enc, doc, lang, apply_residue=True)
        header = {k: shell[k] for k in composition_level.OWNED if k in shell}
    return entries, header


def _source_order(entry_path) -> tuple:
    """Sort key putting entries in their source order whatever order their groups came in (a lab report
    sent as its single result Observation is grouped after the DiagnosticReports): the k-th same-id
    sibling after the (k-1)-th, so ``_place`` finds ``/content[X]`` before ``/content[X]:1`` is placed
    (placed first into an empty composition, ``:1`` would sit where ``/content[X]`` is looked for and be
    replaced).  Stable: entries of different archetypes keep their order; entries born in FHIR last."""
    if not isinstance(entry_path, str):
        return (1,)
    return (0, *((st.idx or 0) for st in rmpath.parse(entry_path)))


def _merge_events(parts: list[tuple[int, dict]]) -> dict:
    """One entry from the single-event entries a hierarchy split made of it, events in source order."""
    parts.sort(key=lambda p: p[0])
    first = parts[0][1]
    hist, attr = _history(first)
    for _, other in parts[1:]:
        oh, _ = _history(other)
        if hist is not None and oh is not None:
            hist.setdefault(attr, []).extend(oh.get(attr) or [])
    return first


def _history(entry: dict):
    """(container, list attribute) the hierarchy split: HISTORY.events, INSTRUCTION.activities, or the
    list its file's split names (a family history's per-relative clusters: data/items)."""
    d = entry.get("data")
    if isinstance(d, dict) and "events" in d:
        return d, "events"
    if "activities" in entry:
        return entry, "activities"
    spec = registry().get(str(entry.get("archetype_node_id")))
    steps = engine.split_steps(spec) if spec is not None else []
    holders = rmpath.find(entry, steps[:-1]) if steps else []
    return (holders[0], steps[-1].attr) if holders else (None, None)


def _split_pattern(spec) -> str:
    """The source-path step a hierarchy split made (node id, sibling index): an event or activity, or the
    node the file splits on (a family history's per-relative cluster)."""
    steps = engine.split_steps(spec)
    if steps and steps[-1].attr not in ("events", "activities") and steps[-1].node:
        return rf"/{steps[-1].attr}\[({re.escape(steps[-1].node)})\](?::(\d+))?"
    return r"/(?:events|activities)\[([^\]]+)\](?::(\d+))?"


def _fhir_losses(spec, group: list[dict], entry: dict, lang: str, composition: dict | None = None,
                 side: list[dict] | None = None) -> list[Loss]:
    """What the group's resources had that mapping the rebuilt entry forward does not give back.

    ``side`` is given for a FHIR-born group: its resources (and ``side``) are then kept in the entry's
    feeder audit with what the forward mapping does not reproduce (``feeder``), and only what even that
    cannot give back is a loss."""
    made: list[tuple[dict, str]] = []

    def identify(res, path):
        src = parse_source_identifier(group[0])
        stamp(res, build_source_identifier(src[0] if src else "x", src[1] if src else "x", path))
        made.append((res, path))

    try:
        engine.run_forward(spec, entry, node_path="", identify=identify, language=lang, composition=composition)
    except Exception:  # noqa: BLE001 - a failing re-forward means everything is unconfirmed
        made = []
    pool: dict[str, list[tuple[dict, str]]] = {}
    for b, path in made:
        pool.setdefault(b.get("resourceType"), []).append((b, path))
    pairs: list[tuple[dict, dict | None, str | None]] = []
    for r in group:
        mine = residue.strip(r)
        cands = pool.get(r.get("resourceType")) or []
        # a member no row read (a report's result with a LOINC code no row reads) made no node: it is no twin of
        # another member's resource, which shares no code with it (pairing them gave that resource the unread
        # one's code back: the site's haemoglobin went back as the other test, a wrong meaning)
        if r is not group[0]:
            cands = [c for c in cands if _shares_code(mine, c[0])]
        if not cands:
            pairs.append((r, None, None))
            continue
        # the subject (AllergyIntolerance: patient) comes back from the caller's patient_ref; only the reference survives
        who = "patient" if "patient" in mine else "subject"
        seen = [{**c, who: {"reference": mine[who]["reference"]}} if "reference" in (mine.get(who) or {})
                else c for c, _ in cands]
        i = _closest(mine, seen)
        twin, path = cands[i]
        left = pool[r.get("resourceType")]
        left.pop(next(k for k, (c, _) in enumerate(left) if c is twin))
        pairs.append((r, twin, path))
    out = []
    if side is not None:
        out = [Loss(f"{r.get('resourceType')}/{r.get('id')}:{name}", UNREAD, "unread")
               for r, t, _ in pairs if t is not None
               for name in _unread([spec, spec_for_resource(r)] if r is group[0] else [spec_for_resource(r)],
                                   residue.strip(r), t)]
        feeder.keep(entry, [(r, residue.strip(t) if t is not None else None, p) for r, t, p in pairs], side)
        feeder.restore(entry, [(t, p) for _, t, p in pairs if t is not None])
    for r, twin, _ in pairs:
        if twin is None:
            # FHIR-born: a member is kept whole in the feeder audit, referenced as sent; the group's own resource
            # that the rebuilt entry does not make again (a claimed finding whose cluster got nothing it could
            # place: the entry forwards as another type) is a loss, never a silent change of type
            if side is None or r is group[0]:
                out.append(Loss(f"{r.get('resourceType')}/{r.get('id')}", "resource could not be mapped back", "dropped"))
            continue
        mine = residue.strip(r)
        twin = residue.strip(twin)
        who = "patient" if "patient" in mine else "subject"
        if "reference" in (mine.get(who) or {}):  # the caller's patient_ref, and what the feeder audit kept
            twin = {**twin, who: {**(twin.get(who) or {}), "reference": mine[who]["reference"]}}
        for d in sorted(compare_clinical(mine, twin), key=lambda d: (d["path"], d["kind"])):  # not key order
            if d["kind"] in ("dictionary_item_added", "iterable_item_added"):
                continue  # the mapping adds fixed codes/profiles: not a loss of source data
            el = element_path(d["path"])
            out.append(Loss(f"{r.get('resourceType')}/{r.get('id')}:{el}", _why_lost(mine, el), "dropped"))
    return out


UNREAD = ("the sender's value is in a form this mapping does not read: the site's entry holds no value (the feeder "
          "audit keeps it, given back as sent while the entry is unchanged); left for a person")
_DATUM = "value"  # an Observation's value[x]: its one datum


def _unread(specs: list, source: dict, twin: dict) -> list[str]:
    """The FHIR-born resource's value[x] when the archetype has a home for a value (a file of ``specs``, the
    group's or the one claiming the resource, writes one) but the rebuilt entry, mapped forward, has none: a
    form the rows do not read (an ECOG grade sent as a code where they read an integer).  The feeder audit still
    gives the value back exactly, so without this the report called the file round-tripped while the site's
    entry held no score.  Other elements in a form the rows do not read (an onset as an age, a reference the
    site has no node for) are what the feeder audit is for."""
    sent = [k for k in source if k.startswith(_DATUM) and k != _DATUM and k[len(_DATUM)].isupper()]
    home = any(_DATUM in written_elements(s) for s in specs if s is not None)  # the group's file or the claiming one
    if not sent or not home or any(k.startswith(_DATUM) for k in twin):
        return []
    return sent


def _why_lost(resource: dict, element: str) -> str:
    """Why a FHIR element did not come back: the source broke its required binding (a Procedure status 'final'
    is no Procedure status: nothing valid to give back, feeder.differing keeps it out), or no openEHR element of
    the mapping holds it."""
    rtype = str(resource.get("resourceType"))
    value = resource.get(element)
    codes = fhirmodel.allowed_codes(rtype, element) if isinstance(value, str) else None
    if codes is not None and value not in codes:
        return (f"the source's {rtype}.{element} is no code of its required value set ({' | '.join(sorted(codes))}): "
                "invalid FHIR, not given back")
    return "no openEHR element for this FHIR data in the mapping"


_ADDED = ("dictionary_item_added", "iterable_item_added")


def _codes(res: dict) -> set:
    cc = res.get("code")
    if not isinstance(cc, dict):
        return set()
    return {(c.get("system"), c.get("code")) for c in cc.get("coding") or [] if isinstance(c, dict)} | (
        {("text", cc["text"])} if cc.get("text") else set())


def _shares_code(source: dict, made: dict) -> bool:
    """Whether ``made`` can be the source's resource made again: a coding or the text of their codes in common
    (the mapping keeps the codes it reads), or no code on either side to tell them apart by."""
    a, b = _codes(source), _codes(made)
    return not a or not b or bool(a & b)


def _closest(mine: dict, cands: list[dict]) -> int:
    """The twin of ``mine`` among the re-forwarded resources of its type: the one with the fewest
    removed or changed elements, the first on a tie (never by position alone: a stage group's members
    come back in T, N, M order whatever order hasMember listed them in)."""
    if len(cands) == 1:
        return 0
    cost = [sum(1 for d in compare_clinical(mine, c) if d["kind"] not in _ADDED) for c in cands]
    return min(range(len(cands)), key=lambda i: (cost[i], i))


def to_openehr(resources: list[dict], *, template_id: str, base_composition: dict | None = None, **kw) -> dict:
    """Canonical openEHR JSON composition from FHIR resources (see from_fhir for losses)."""
    return from_fhir(resources, template_id=template_id, base_composition=base_composition, **kw).composition
