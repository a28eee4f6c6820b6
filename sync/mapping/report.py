"""Conversion report over files or folders: one line per file and a summary.

Pure: reads files, returns text; the Django management command only prints it.
Templates (.opt) are registered (so later compositions can use them) and
listed; canonical compositions are mapped to FHIR, validated, and mapped back;
FHIR resources/bundles are mapped to openEHR and forward again.  FLAT
compositions are listed as not supported (they need a web template).
"""
from __future__ import annotations

import json
from pathlib import Path

from . import templates
from .convert import to_fhir
from .errors import MappingError, UnmappedTemplate
from .fidelity import compare_clinical
from .from_fhir import from_fhir
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
    from .from_fhir import to_openehr
    back = to_openehr(res.resources, template_id=_template_id(comp), base_composition=comp)
    equal = not compare_clinical(comp, back)
    kept = [x for x in res.losses if x.kind == "extension"]
    unmapped = [x for x in res.losses if x.kind == "unmapped-entry"]
    return (f"converted {len(res.resources)} resources, {'validated' if not invalid else f'{invalid} INVALID'}, "
            f"round-trip {'equal' if equal else 'DIFFERENT'}; {len(kept)} leaf values only in openehr-residue, "
            f"{len(unmapped)} entries without mapping"), not invalid, equal


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
    for f in _files(paths if isinstance(paths, (list, tuple)) else [paths]):
        n += 1
        try:
            if f.suffix == ".opt":
                info = templates.register(f)
                lines.append(f"{f.name}: template {info.template_id}, {len(info.archetypes)} archetypes (registered)")
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
            failed += 0 if ok else 1
            lines.append(f"{f.name}: {text}")
        except UnmappedTemplate:
            lines.append(f"{f.name}: nothing mapped (no model mapping reads these resources)")
        except MappingError as exc:
            failed += 1
            lines.append(f"{f.name}: FAILED {exc.__class__.__name__}: {exc}")
        except (ValueError, KeyError, TypeError) as exc:
            failed += 1
            lines.append(f"{f.name}: FAILED {exc.__class__.__name__}")
    return lines, f"{n} files, {conv} converted, {rt} round-tripped, {failed} failed"
