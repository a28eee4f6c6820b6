"""Conversion report over files or folders: one line per file and a summary.

Pure: reads files, returns text; the Django management command only prints it.
Templates (.opt) are registered (so later compositions can use them) and
listed; canonical compositions are mapped to FHIR, validated, and mapped back;
FHIR resources/bundles are mapped to openEHR and forward again.  FLAT
compositions are listed as not supported (they need a web template).

Per template (OPT given in the paths), every leaf data path (ELEMENT) is classed as mapped (a rule
of the archetype's model file reads it), lost (its archetype is mapped but no rule reads it: the
value travels in the openehr-residue extension) or unmapped (its archetype has no model file).
"""
from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from . import templates
from .convert import to_fhir
from .errors import MappingError, UnmappedTemplate
from .fidelity import compare_clinical
from .from_fhir import from_fhir, to_openehr
from .spec import registry
from .validate import validate_fhir

_FAKE_UID = "00000000-0000-4000-8000-000000000000::report::1"


def _files(paths) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        out.extend(sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else [p])
    return [f for f in out if f.suffix in (".json", ".opt")]


def _composition_line(doc: dict) -> tuple[str, bool, bool]:
    comp = dict(doc)
    if not (comp.get("uid") or {}).get("value"):
        comp["uid"] = {"_type": "OBJECT_VERSION_ID", "value": _FAKE_UID}
    res = to_fhir(comp, site="report", ehr_id="report", patient_ref="Patient/report")
    if not res.resources:
        return "nothing mapped (" + f"{len(res.losses)} unmapped entries)", None, None
    invalid = sum(1 for r in res.resources if validate_fhir(r))
    back = to_openehr(res.resources, template_id=_template_id(comp), base_composition=comp)
    equal = not compare_clinical(comp, back)
    kept = [x for x in res.losses if x.kind == "extension"]
    unmapped = [x for x in res.losses if x.kind == "unmapped-entry"]
    return (f"converted {len(res.resources)} resources, {'validated' if not invalid else f'{invalid} INVALID'}, "
            f"round-trip {'equal' if equal else 'DIFFERENT'}; {len(kept)} leaf values only in openehr-residue, "
            f"{len(unmapped)} entries without mapping{_why(unmapped)}"), not invalid, equal


def _why(unmapped) -> str:
    names = sorted({m.group(1) for x in unmapped for m in [re.search(r"no model mapping for (\S+?);", x.reason)] if m})
    return f" ({', '.join(names)})" if names else ""


def _template_id(comp: dict) -> str:
    return ((comp.get("archetype_details") or {}).get("template_id") or {}).get("value", "unknown")


def _fhir_line(doc: dict) -> tuple[str, bool, bool]:
    resources = [e["resource"] for e in doc.get("entry") or [] if "resource" in e] \
        if doc.get("resourceType") == "Bundle" else [doc]
    out = from_fhir(resources, template_id="conflictdesk.report")
    comp = out.composition
    comp["uid"] = {"_type": "OBJECT_VERSION_ID", "value": _FAKE_UID}
    fwd = to_fhir(comp, site="report", ehr_id="report", patient_ref="Patient/report")
    invalid = sum(1 for r in fwd.resources if validate_fhir(r))
    dropped = [x for x in out.losses if x.kind == "dropped"]
    unmapped = [x for x in out.losses if x.kind == "unmapped-entry"]
    why = sorted({x.path.split(":", 1)[-1].split(".")[0].split("[")[0] for x in dropped})
    return (f"converted {len(comp.get('content') or [])} entries, back to {len(fwd.resources)} resources "
            f"{'validated' if not invalid else f'{invalid} INVALID'}; {len(unmapped)} resources without mapping; "
            f"lost elements: {', '.join(why) if why else 'none'}"), not invalid, True


def report(paths) -> tuple[list[str], str]:
    """Return (one line per file, summary 'N files, N converted, N round-tripped, N failed')."""
    lines, n, conv, rt, failed = [], 0, 0, 0, 0
    opts: list[Path] = []
    for f in _files(paths if isinstance(paths, (list, tuple)) else [paths]):
        n += 1
        try:
            if f.suffix == ".opt":
                info = templates.register(f)
                lines.append(f"{f.name}: template {info.template_id}, {len(info.archetypes)} archetypes (registered)")
                opts.append(f)
                continue
            doc = json.loads(f.read_text(encoding="utf-8-sig"))
            if "resourceType" in doc:
                text, ok, equal = _fhir_line(doc)
            elif doc.get("_type") == "COMPOSITION" or "content" in doc:
                text, ok, equal = _composition_line(doc)
            else:
                lines.append(f"{f.name}: skipped (FLAT or unknown JSON format: not supported)")
                continue
            lines.append(f"{f.name}: {text}")
            if ok is None:
                continue
            lines.pop()
            conv += 1 if ok else 0
            rt += 1 if ok and equal else 0
            failed += 0 if ok and equal else 1
            lines.append(f"{f.name}: {text}")
        except UnmappedTemplate:
            lines.append(f"{f.name}: nothing mapped (no model mapping reads these resources)")
        except MappingError as exc:
            failed += 1
            lines.append(f"{f.name}: FAILED {exc.__class__.__name__}: {exc}")
        except (ValueError, KeyError, TypeError) as exc:
            failed += 1
            lines.append(f"{f.name}: FAILED {exc.__class__.__name__}")
    for f in opts:
        lines.extend(template_lines(f))
    return lines, f"{n} files, {conv} converted, {rt} round-tripped, {failed} failed"


# ------------------------------------------------------------------ per-template leaf paths
_NS = "{http://schemas.openehr.org/v1}"


def opt_leaf_paths(xml: str) -> list[tuple[str, str, str]]:
    """(archetype id, path relative to that archetype's root, full path) for every ELEMENT of an OPT."""
    root = ET.fromstring(xml).find(f"{_NS}definition")
    out: list[tuple[str, str, str]] = []

    def walk(node, full: str, arch: str, rel: str) -> None:
        if node.findtext(f"{_NS}rm_type_name") == "ELEMENT":
            out.append((arch, rel, full))
            return
        for attr in node.findall(f"{_NS}attributes"):
            name = attr.findtext(f"{_NS}rm_attribute_name")
            for child in attr.findall(f"{_NS}children"):
                aid = child.findtext(f"{_NS}archetype_id/{_NS}value")
                nid = aid or child.findtext(f"{_NS}node_id") or ""
                step = f"/{name}[{nid}]" if nid else f"/{name}"
                if aid:
                    walk(child, full + step, aid, "")
                else:
                    walk(child, full + step, arch, rel + step)

    if root is not None:
        walk(root, "", root.findtext(f"{_NS}archetype_id/{_NS}value") or "", "")
    return out


def _rule_paths(spec) -> list[str]:
    """openEHR paths (archetype-relative, node ids only) the rules of a model file read."""
    base = re.sub(r",\s*'[^']*'", "", (spec.hierarchy or {}).get("openehr", "")).replace("$archetype", "").strip("/")
    out = []

    def visit(rules, prefix: str) -> None:
        for r in rules:
            p = re.sub(r",\s*'[^']*'", "", r.openehr or "")
            if p.startswith("$archetype"):
                here = p[len("$archetype"):].strip("/")
            elif p.startswith("$openehrRoot"):
                here = "/".join(x for x in (base, p[len("$openehrRoot"):].strip("/")) if x)
            else:
                here = "/".join(x for x in (prefix, p.strip("/")) if x)
            if r.openehr:
                out.append("/" + here)
            for m in r.manual:
                for c in (m.openehr_condition,):
                    if c and c.target_root:
                        out.append("/" + "/".join(x for x in (prefix or base, re.sub(r",\s*'[^']*'", "", c.target_root)) if x))
            visit(r.followed_by, here if r.openehr else prefix)

    visit(spec.rules, base)
    return out


def _mapped(rel: str, rules: list[str]) -> bool:
    rel = re.sub(r"\[(at[\d.]+)\]", r"[\1]", rel)
    return any(rel == p or p.startswith(rel + "/") for p in rules)  # the element, or its value/null_flavour


def template_lines(opt: Path) -> list[str]:
    """'template X: N leaf data paths, M mapped, K lost, U unmapped' plus one line per leaf path."""
    xml = opt.read_text(encoding="utf-8-sig")
    info = templates.parse_opt(xml)
    specs = registry()
    rows = {"mapped": [], "lost": [], "unmapped": []}
    for arch, rel, full in opt_leaf_paths(xml):
        spec = specs.get(arch)
        if spec is None:
            rows["unmapped"].append(f"{full} (no model mapping for {arch})")
        elif _mapped(rel, _rule_paths(spec)):
            rows["mapped"].append(full)
        else:
            rows["lost"].append(f"{full} (no rule in {spec.source}: kept in openehr-residue)")
    out = [f"template {info.template_id}: {sum(map(len, rows.values()))} leaf data paths, {len(rows['mapped'])} "
           f"mapped, {len(rows['lost'])} lost, {len(rows['unmapped'])} in archetypes without mapping"]
    for kind in ("mapped", "lost", "unmapped"):
        out.extend(f"  {kind}: {x}" for x in rows[kind])
    return out
