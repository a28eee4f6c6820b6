"""Conversion report over files or folders: every file ends in exactly one state.

    from sync.mapping.report import run, report
    rep = run(paths, opts=())      # .records (one FileRecord per file), .lines(), .summary, .failed
    lines, summary = report(paths)  # the same, as text

States (``STATES``):

* ``round-tripped``: converted, every FHIR resource valid, and the round trip compares equal with
  ``compare_clinical``, with nothing declared dropped (what travels only in the ``openehr-residue``
  extension comes back: still round-tripped, and listed as ``residue`` in the record);
* ``partial``: converted, valid, and every difference is a declared loss (entries or resources no model
  mapping reads, FHIR elements ``from_fhir`` declares dropped, a composition header no composition-level
  mapping reads, the nodes of a template that really are dropped);
* ``nothing mapped``: no model mapping reads any of it;
* ``skipped``: not a mapping input, with why (archetype definition, unknown format, a FLAT file without
  its OPT or with keys its template does not define, which EHRbase refuses too);
* ``failed``: invalid FHIR, a round-trip difference no loss declares, or a crash.

Round trips.  openEHR (canonical, or FLAT converted through its OPT's web template): to_fhir, then the
resources alone are mapped back (``map_back``, no base composition: what is not in FHIR cannot come
back) and each entry is compared with its source, less the entries declared unmapped; the header too
when an Encounter/Composition was made.  FHIR (a resource or a Bundle): from_fhir, to_fhir of the
composition it built, and each source resource compared with its twin; a difference is declared when
``from_fhir().losses`` names the element (or its resource) as lost.  A resource a FHIR-born entry keeps
by reference (a Practitioner, Device, Medication... in its feeder audit: the centre keeps it, the site
has the copy) compares with that copy.

Templates (.opt): registered first (compositions use them), then classed by mapping their example
composition (``example.example_composition``: every node the template defines, once): each ELEMENT is
``mapped`` when the FHIR resources without their residue give its value back, ``residue`` when only the
residue does, ``dropped`` when nothing does.  The template's state is that composition's.

Pure: reads files, returns records and text; the management command prints and writes JSON.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import composition as composition_level
from . import feeder, flat, residue, rmpath, templates, unclaimed
from .convert import to_fhir
from .errors import MappingError, UnmappedTemplate
from .example import example_composition
from .fidelity import compare_clinical, element_path
from .from_fhir import from_fhir, map_back
from .identifiers import parse_source_identifier
from .spec import registry
from .validate import validate_fhir

STATES = ("round-tripped", "partial", "nothing mapped", "skipped", "failed")
_FAKE_UID = "00000000-0000-4000-8000-000000000000::report::1"
_SITE = "report"
_ADDED = ("dictionary_item_added", "iterable_item_added")  # the mapping adds fixed codes/profiles: no loss
RESIDUE, DROPPED = "residue", "dropped"


@dataclass
class FileRecord:
    """What happened to one file (the JSON record of ``mapping_report --json``)."""
    file: str
    format: str  # opt | adl | canonical | flat | fhir | unknown
    state: str = "failed"
    why: str = ""
    template_id: str | None = None
    resources: list[dict] = field(default_factory=list)  # {resourceType, id}: FHIR made (openEHR in) / read (FHIR in)
    losses: list[dict] = field(default_factory=list)  # {path, reason, travels: residue | dropped}
    unmapped: dict = field(default_factory=lambda: {"archetypes": [], "resource_types": []})
    validation: list[str] = field(default_factory=list)
    differences: list[dict] = field(default_factory=list)  # undeclared round-trip differences {path, kind}
    nodes: list[dict] = field(default_factory=list)  # templates: {path, name, archetype, class, reason}
    detail: str = ""  # the rest of the text line

    @property
    def converted(self) -> bool:
        return self.state in ("round-tripped", "partial") or (self.state == "failed" and bool(self.resources))

    def line(self) -> str:
        state = "FAILED" if self.state == "failed" else self.state
        inner = "; ".join(x for x in (self.why, self.detail) if x)
        return f"{Path(self.file).name}: {state}" + (f" ({inner})" if inner else "")

    def as_json(self) -> dict:
        return asdict(self)


@dataclass
class Report:
    records: list[FileRecord]

    @property
    def counts(self) -> dict:
        out = {"files": len(self.records), "converted": sum(r.converted for r in self.records)}
        out.update({s: sum(r.state == s for r in self.records) for s in STATES})
        return out

    @property
    def failed(self) -> int:
        return self.counts["failed"]

    @property
    def summary(self) -> str:
        c = self.counts
        return (f"{c['files']} files, {c['converted']} converted, {c['round-tripped']} round-tripped, "
                f"{c['partial']} partial, {c['nothing mapped']} nothing mapped, {c['skipped']} skipped, "
                f"{c['failed']} failed")

    def lines(self) -> list[str]:
        out = [r.line() for r in self.records]
        for r in self.records:
            if r.format == "opt" and r.nodes:
                out.extend(template_lines(r))
        return out

    def as_json(self) -> dict:
        return {"summary": self.summary, "counts": self.counts, "files": [r.as_json() for r in self.records]}


# ------------------------------------------------------------------ files
def _files(paths) -> list[Path]:
    """Every file under the paths, once (a file reached through two given paths is one file)."""
    out: list[Path] = []
    seen: set[Path] = set()
    for p in map(Path, paths):
        for f in sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else [p]:
            if f.resolve() not in seen:
                seen.add(f.resolve())
                out.append(f)
    return out


def run(paths, opts=()) -> Report:
    """One record per file under ``paths`` (files or folders), templates registered first.  ``opts``: more
    OPTs for FLAT compositions (not reported themselves)."""
    files = _files(paths if isinstance(paths, (list, tuple)) else [paths])
    wts = []
    for o in [Path(o) for o in opts] + [f for f in files if f.suffix == ".opt"]:
        try:
            templates.register(o)
            wts.append(flat.web_template(o))
        except (ValueError, OSError):
            continue  # its own record says why (the OPT file itself), or --opt named a bad file
    records = []
    for f in files:
        try:
            records.append(_record(f, wts))
        except Exception as exc:  # noqa: BLE001 - a crash is a state of that file, the report goes on
            records.append(FileRecord(str(f), _format_of(f), "failed", f"crash: {exc.__class__.__name__}"))
    return Report(records)


def report(paths, opts=()) -> tuple[list[str], str]:
    """(one line per file, then per template its nodes; the summary line)."""
    rep = run(paths, opts)
    return rep.lines(), rep.summary


def _format_of(f: Path) -> str:
    return {".opt": "opt", ".adl": "adl", ".json": "json"}.get(f.suffix, "unknown")


def _record(f: Path, wts) -> FileRecord:
    if f.suffix == ".adl":
        return FileRecord(str(f), "adl", "skipped", "archetype definition (ADL): templates (.opt) are the input")
    if f.suffix == ".opt":
        return template_record(f)
    if f.suffix != ".json":
        return FileRecord(str(f), "unknown", "skipped", f"unknown format ({f.suffix or 'no suffix'})")
    try:
        doc = json.loads(f.read_text(encoding="utf-8-sig"))
    except ValueError:
        return FileRecord(str(f), "json", "failed", "not valid JSON")
    if isinstance(doc, dict) and "resourceType" in doc:
        return fhir_record(f, doc)
    if isinstance(doc, dict) and (doc.get("_type") == "COMPOSITION" or "content" in doc):
        return composition_record(str(f), doc, "canonical")
    if flat.is_flat(doc):
        return _flat_record(f, doc, wts)
    return FileRecord(str(f), "json", "skipped", "unknown format (JSON that is no FHIR resource, canonical or "
                                                 "FLAT composition)")


def _flat_record(f: Path, doc: dict, wts) -> FileRecord:
    wt = flat.template_for(doc, wts) or flat.template_for(doc)
    if wt is None:
        return FileRecord(str(f), "flat", "skipped", "no OPT (give it with --opt, or among the paths)")
    try:
        comp = flat.to_canonical(doc, wt)
    except flat.FlatError as exc:
        if str(exc).startswith(("could not consume FLAT keys", "keys outside web template")):
            return FileRecord(str(f), "flat", "skipped", "FLAT keys the template does not define: "
                              + ", ".join(exc.keys), template_id=wt.template_id)
        return FileRecord(str(f), "flat", "failed", f"FLAT conversion: {exc}", template_id=wt.template_id)
    return composition_record(str(f), comp, "flat")


# ------------------------------------------------------------------ openEHR compositions
def _template_id(comp: dict) -> str:
    return ((comp.get("archetype_details") or {}).get("template_id") or {}).get("value", "unknown")


def _with_uid(comp: dict) -> dict:
    comp = dict(comp)
    if not (comp.get("uid") or {}).get("value"):
        comp["uid"] = {"_type": "OBJECT_VERSION_ID", "value": _FAKE_UID}
    return comp


def _ref(r: dict) -> dict:
    return {"resourceType": r.get("resourceType"), "id": r.get("id")}


def _validate(resources: list[dict]) -> list[str]:
    return [f"{r.get('resourceType')}/{r.get('id')}: {m}" for r in resources for m in validate_fhir(r)]


@dataclass
class _Forward:
    """to_fhir of a composition and what its resources alone give back (shared by files and templates)."""
    comp: dict
    resources: list[dict]
    losses: list
    unmapped_entries: dict  # entry path -> archetype id (declared: no model mapping)
    level: bool  # an Encounter/Composition was made (the header is mapped)
    entries: list[tuple[str, dict]]  # (path, source entry) for every entry
    twins: dict  # entry path -> entry mapped back with the residue
    header: dict  # header mapped back with the residue ({} when not level)


def _forward(comp: dict) -> _Forward:
    comp = _with_uid(comp)
    res = to_fhir(comp, site=_SITE, ehr_id=_SITE, patient_ref="Patient/report")
    unmapped = {x.path: x.reason for x in res.losses if x.kind == "unmapped-entry"}
    entries = rmpath.entries(comp)
    level = any(r.get("resourceType") in composition_level.RESOURCES for r in res.resources)
    got, header = map_back(res.resources, template_id=_template_id(comp), header_for=comp if level else None)
    return _Forward(comp, res.resources, res.losses, unmapped, level, entries, _pair_entries(entries, got), header)


def _pair_entries(src: list[tuple[str, dict]], got: list[dict]) -> dict:
    """Source entry path -> the mapped-back entry with the same archetype node id, in order (the order
    map_back rebuilds them in); entries with no partner are left out."""
    pool: dict[str, list[dict]] = {}
    for e in got:
        pool.setdefault(str(e.get("archetype_node_id")), []).append(e)
    out = {}
    for path, entry in src:
        twins = pool.get(str(entry.get("archetype_node_id"))) or []
        if twins:
            out[path] = twins.pop(0)
    return out


def _root_unmapped(fw: _Forward) -> str | None:
    """The composition's root archetype when no composition-level mapping reads its header (a mapped root
    without a context is declared by to_fhir itself, at /context)."""
    if fw.level or "/context" in fw.unmapped_entries:
        return None
    return str(fw.comp.get("archetype_node_id") or "unknown root archetype")


def composition_record(name: str, comp: dict, fmt: str, *, nodes: bool = False) -> FileRecord:
    """A canonical composition (or FLAT converted, or a template's example): to FHIR and back.  With
    ``nodes`` every ELEMENT is classed too (``template_nodes``)."""
    rec = FileRecord(name, fmt, template_id=_template_id(comp))
    try:
        fw = _forward(comp)
    except MappingError as exc:
        rec.why = f"{exc.__class__.__name__}: {exc}"
        return rec
    rec.resources = [_ref(r) for r in fw.resources]
    if nodes:
        rec.nodes = template_nodes(fw)
    rec.losses = [{"path": x.path, "reason": x.reason, "travels": RESIDUE if x.kind == "extension" else DROPPED}
                  for x in fw.losses]
    rec.unmapped["archetypes"] = sorted({e.get("archetype_node_id") for p, e in fw.entries if p in fw.unmapped_entries})
    root = _root_unmapped(fw)
    if root and fw.resources:
        rec.losses.append({"path": "/", "reason": f"no composition-level mapping for {root}: name, composer and "
                           "context are not converted", "travels": DROPPED})
        rec.unmapped["archetypes"] = sorted(set(rec.unmapped["archetypes"]) | {root})
    if not fw.resources:
        rec.state = "nothing mapped"
        rec.why = f"no model mapping reads its {len(fw.entries)} entries" + _names(rec.unmapped["archetypes"])
        return rec
    rec.validation = _validate(fw.resources)
    rec.differences = _composition_differences(fw)
    rec.differences += [{"path": n["path"], "kind": "dropped_not_declared"} for n in rec.nodes
                        if not n["declared"] and not any(n["path"].startswith(d["path"].split("|")[0])
                                                         for d in rec.differences)]
    dropped = [x for x in rec.losses if x["travels"] == DROPPED]
    kept = [x for x in rec.losses if x["travels"] == RESIDUE]
    if rec.validation or rec.differences:
        rec.state = "failed"
        rec.why = "; ".join(filter(None, [f"{len(rec.validation)} INVALID" if rec.validation else "",
                                          _diff_text(rec.differences)]))
    else:
        rec.state = "partial" if dropped else "round-tripped"
    rec.detail = (f"{len(fw.resources)} resources, {'valid' if not rec.validation else 'invalid'}; {len(kept)} "
                  f"values travel in openehr-residue; {len(dropped)} dropped" + _names(rec.unmapped["archetypes"]))
    return rec


def _composition_differences(fw: _Forward) -> list[dict]:
    """Entries (less the declared unmapped ones) and, when mapped, the header: source vs mapped back."""
    out = []
    for path, entry in fw.entries:
        if path in fw.unmapped_entries:
            continue
        twin = fw.twins.get(path)
        if twin is None:
            out.append({"path": path, "kind": "entry_missing"})
            continue
        out.extend({"path": f"{path}|{_readable(d['path'])}", "kind": d["kind"]} for d in compare_clinical(entry, twin))
    if fw.level:
        head = {k: fw.comp[k] for k in composition_level.OWNED if k in fw.comp}
        out.extend({"path": f"/|{_readable(d['path'])}", "kind": d["kind"]} for d in compare_clinical(head, fw.header))
    return out


def _readable(deep: str) -> str:
    return element_path(deep) or "/"


def _names(names) -> str:
    return f" ({', '.join(names)})" if names else ""


def _diff_text(diffs: list[dict]) -> str:
    if not diffs:
        return ""
    shown = ", ".join(d["path"] for d in diffs[:5]) + (f" (+{len(diffs) - 5} more)" if len(diffs) > 5 else "")
    return f"round trip DIFFERENT, not declared lost: {shown}"


# ------------------------------------------------------------------ FHIR
def fhir_record(f: Path, doc: dict) -> FileRecord:
    bundle = doc.get("resourceType") == "Bundle"
    resources = [e["resource"] for e in doc.get("entry") or [] if isinstance(e, dict) and "resource" in e] \
        if bundle else [doc]
    rec = FileRecord(str(f), "fhir", resources=[_ref(r) for r in resources])
    try:
        out = from_fhir(resources, template_id="conflictdesk.report")
    except UnmappedTemplate:
        rec.state = "nothing mapped"
        rec.unmapped["resource_types"] = sorted({str(r.get("resourceType")) for r in resources})
        rec.why = _nothing_claims(resources)
        return rec
    except MappingError as exc:
        rec.why = f"{exc.__class__.__name__}: {exc}"
        return rec
    declared = list(out.losses)  # every kind (dropped, unmapped-entry/-resource, stale): FHIR data not kept
    rec.losses = [{"path": x.path, "reason": x.reason, "travels": DROPPED} for x in declared]
    whole = {x.path for x in declared if ":" not in x.path}
    rec.unmapped["resource_types"] = sorted({x.path.split("/")[0] for x in declared
                                             if ":" not in x.path and x.kind.startswith("unmapped")})
    comp = _with_uid(out.composition)
    subject = next((r["subject"]["reference"] for r in resources
                    if isinstance(r.get("subject"), dict) and r["subject"].get("reference")), "Patient/report")
    try:
        fwd = to_fhir(comp, site=_SITE, ehr_id=_SITE, patient_ref=subject).resources
    except MappingError as exc:
        rec.why = f"back to FHIR: {exc.__class__.__name__}: {exc}"
        return rec
    rec.validation = _validate(fwd)
    elements: dict[str, list[str]] = {}
    for x in declared:
        if ":" in x.path:
            ref, el = x.path.split(":", 1)
            elements.setdefault(ref, []).append(el)
    side = feeder.side_copies(comp)
    refs = {id(r): f"{r.get('resourceType')}/{r.get('id')}" for r in resources}
    for src, twin in _fhir_pairs([r for r in resources if refs[id(r)] not in whole and refs[id(r)] not in side],
                                 comp, fwd) + [(r, side[refs[id(r)]]) for r in resources if refs[id(r)] in side]:
        ref = f"{src.get('resourceType')}/{src.get('id')}"
        if twin is None:
            rec.differences.append({"path": ref, "kind": "resource_missing"})
            continue
        for d in compare_clinical(residue.strip(src), residue.strip(twin)):
            el = element_path(d["path"])
            if d["kind"] in _ADDED or any(el == x or el.startswith((x + ".", x + "[")) for x in elements.get(ref, [])):
                continue
            rec.differences.append({"path": f"{ref}:{el}", "kind": d["kind"]})
    lost = sorted({x.path.split(":", 1)[1].split(".")[0].split("[")[0] if ":" in x.path else x.path.split("/")[0]
                   for x in declared if x.kind != "refused"})
    refused = [x.path for x in declared if x.kind == "refused"]
    entries = len(rmpath.entries(out.composition))
    rec.detail = (f"{len(resources)} resources -> {entries} entries -> {len(fwd)} resources, "
                  f"{'valid' if not rec.validation else 'invalid'}; dropped: {', '.join(lost) if lost else 'nothing'}"
                  + (f"; the CDR would refuse (no time the openEHR RM requires): {', '.join(refused)}" if refused else ""))
    if rec.validation or rec.differences:
        rec.state = "failed"
        rec.why = "; ".join(filter(None, [f"{len(rec.validation)} INVALID" if rec.validation else "",
                                          _diff_text(rec.differences)]))
    else:
        rec.state = "partial" if declared else "round-tripped"
    return rec


def _nothing_claims(resources: list[dict]) -> str:
    """Why no entry was made: a type no model file reads at all (Provenance), or resources of a type the mapping
    reads whose code no file claims (an Observation of a kind no row knows), named by their codes."""
    read = {s.resource for s in registry().values()}
    types = sorted({str(r.get("resourceType")) for r in resources})
    unread = [t for t in types if t not in read]
    claimable = [r for r in resources if r.get("resourceType") in read]
    codes = sorted({f"{r.get('resourceType')} {_code_of(r)}" for r in claimable})
    needs = sorted({n for n in map(unclaimed.needs, claimable) if n})
    parts = ([f"no model mapping reads {', '.join(unread)}"] if unread else []) + \
        ([f"no model mapping claims {', '.join(codes)} (by code and category); left for a person"] if codes else []) + \
        needs
    return "; ".join(parts)


def _code_of(resource: dict) -> str:
    coding = next(iter((resource.get("code") or {}).get("coding") or []), {})
    return f"{coding.get('system')}|{coding.get('code')}" if coding else "without a code"


def _fhir_pairs(resources: list[dict], comp: dict, again: list[dict]) -> list[tuple[dict, dict | None]]:
    """(source resource, its twin among ``again``): by our source identifier's node path; else among the
    resources made from the entry whose feeder audit names it (born in FHIR), else among all: same type,
    one sharing a code first, then in order."""
    used: set[int] = set()
    by_path = {}
    for t in again:
        src = parse_source_identifier(t)
        if src:
            by_path.setdefault(src[2], t)
    feeder: dict[str, list[dict]] = {}  # "Type/id" -> the resources made from the entry that names it
    for path, entry in rmpath.entries(comp):
        made = [t for t in again if (parse_source_identifier(t) or ("", "", ""))[2].startswith(path)]
        for i in (entry.get("feeder_audit") or {}).get("originating_system_item_ids") or []:
            feeder[str(i.get("id", "")).split("/_history")[0]] = made
    out = []
    for r in resources:
        src = parse_source_identifier(r)
        twin = by_path.get(src[2]) if src else None
        if twin is None or id(twin) in used:
            pool = feeder.get(f"{r.get('resourceType')}/{r.get('id')}", again)
            same = [t for t in pool if t.get("resourceType") == r.get("resourceType") and id(t) not in used]
            twin = next((t for t in same if _codes(r) & _codes(t)), same[0] if same else None)
        if twin is not None:
            used.add(id(twin))
        out.append((r, twin))
    return out


def _codes(r: dict) -> set:
    return {(c.get("system"), c.get("code")) for c in (r.get("code") or {}).get("coding") or [] if isinstance(c, dict)}


# ------------------------------------------------------------------ templates
def template_record(opt: Path) -> FileRecord:
    """The template's example composition reported as a composition, plus every ELEMENT classed."""
    info = templates.register(opt)
    try:
        comp = example_composition(opt.read_text(encoding="utf-8-sig"))
    except (ValueError, KeyError, TypeError) as exc:
        return FileRecord(str(opt), "opt", "failed", f"no example composition: {exc.__class__.__name__}",
                          template_id=info.template_id)
    rec = composition_record(str(opt), comp, "opt", nodes=True)
    count = {k: sum(n["class"] == k for n in rec.nodes) for k in ("mapped", RESIDUE, DROPPED)}
    rec.detail = (f"template {info.template_id}: {len(rec.nodes)} leaf nodes, {count['mapped']} mapped, "
                  f"{count[RESIDUE]} residue, {count[DROPPED]} dropped"
                  + (f"; its example composition: {rec.detail}" if rec.detail else ""))
    return rec


def _leaves(comp: dict) -> list[tuple[str, dict]]:
    """(node path, ELEMENT) for every ELEMENT of the composition: entries and the context."""
    out = [(p, n) for p, n in rmpath.walk({"content": comp.get("content") or []}) if n.get("_type") == "ELEMENT"]
    ctx = comp.get("context")
    if isinstance(ctx, dict):
        out += [("/context" + p, n) for p, n in rmpath.walk(ctx) if n.get("_type") == "ELEMENT"]
    return out


def _same_value(a: dict | None, b: dict | None) -> bool:
    pick = ("value", "null_flavour")
    return b is not None and not compare_clinical({k: a.get(k) for k in pick if k in a},
                                                  {k: b.get(k) for k in pick if k in b})


def template_nodes(fw: _Forward) -> list[dict]:
    """Every ELEMENT of the example composition, classed by where its value ends (see module doc)."""
    try:  # the standard elements alone: the resources without their residue, mapped back
        got, header = map_back([residue.strip(r) for r in fw.resources], template_id=_template_id(fw.comp),
                               header_for=fw.comp if fw.level else None)
        std = _pair_entries(fw.entries, got)
    except (MappingError, KeyError, TypeError, ValueError, IndexError):
        std, header = {}, {}
    root = _root_unmapped(fw)
    reasons = {x.path: x.reason for x in fw.losses if x.kind == "extension"}
    out = []
    for path, el in _leaves(fw.comp):
        entry = next(((p, e) for p, e in fw.entries if path.startswith(p + "/")), None)
        if entry is None:  # the context
            rel, full_twin, std_twin = path, {"context": fw.header.get("context")}, {"context": header.get("context")}
        else:
            rel, full_twin, std_twin = path[len(entry[0]):], fw.twins.get(entry[0]), std.get(entry[0])
        steps = rmpath.parse(rel)
        back_std = (rmpath.find(std_twin, steps) or [None])[0] if std_twin else None
        back_full = (rmpath.find(full_twin, steps) or [None])[0] if full_twin else None
        node = {"path": path, "name": (el.get("name") or {}).get("value"), "archetype": _archetype(path),
                "class": "mapped", "reason": "", "declared": True}
        if _same_value(el, back_std):
            pass
        elif _same_value(el, back_full):
            node["class"] = RESIDUE
            node["reason"] = next((why for p, why in reasons.items()
                                   if p == path or p.startswith(path + "/") or path.startswith(p + "/")),
                                  "kept in the openehr-residue extension")
        else:
            node["class"] = DROPPED
            if entry is not None and entry[0] in fw.unmapped_entries:
                node["reason"] = fw.unmapped_entries[entry[0]]
            elif entry is None and root:
                node["reason"] = f"no composition-level mapping for {root}"
            else:
                node["reason"] = "in no FHIR element and not in the residue: not declared"
                node["declared"] = False
        out.append(node)
    return _per_node(out)


_RANK = {"mapped": 0, RESIDUE: 1, DROPPED: 2}


def _per_node(instances: list[dict]) -> list[dict]:
    """One entry per template node: the example holds some nodes more than once (a repeatable EVENT as a
    point and an interval event); a node is classed by its worst instance."""
    out: dict[tuple, dict] = {}
    for n in instances:
        key = (re.sub(r":\d+", "", n["path"]), n["name"])
        have = out.get(key)
        if have is None:
            out[key] = {**n, "path": key[0]}
        else:
            if _RANK[n["class"]] > _RANK[have["class"]]:
                have.update({"class": n["class"], "reason": n["reason"]})
            have["declared"] = have["declared"] and n["declared"]
    return list(out.values())


def _archetype(path: str) -> str:
    ids = re.findall(r"\[(openEHR-EHR-[A-Z_]+\.[^\]]+)\]", path)
    return ids[-1] if ids else ""


def template_lines(rec: FileRecord) -> list[str]:
    """'template X: N leaf nodes, ...' and one line per node: mapped / residue / dropped (why)."""
    out = [rec.detail]
    for kind in ("mapped", RESIDUE, DROPPED):
        for n in rec.nodes:
            if n["class"] == kind:
                out.append(f"  {kind}: {n['path']} '{n['name']}'" + (f" ({n['reason']})" if n["reason"] else ""))
    return out
