"""Coverage of the model files: per archetype and per FHIR resource type, does it map forward and back, do
tests prove each way and HAPI `$validate` it, which profile it claims.

    from sync.mapping.coverage import coverage
    cov = coverage(tests_dir)   # .rows (one per model file), .types (one per FHIR resource type), .lines(), .totals

The registry of what tests prove is a module-level literal in each test module that proves a row:

    COVERS = {"EVALUATION.goal.v1": "forward reverse hapi", ...}

keyed by the model file's ``metadata.name``; ``forward``: to_fhir of the archetype is checked, ``reverse``:
from_fhir / to_openehr back to it is checked, ``hapi``: its resources pass HAPI `$validate` with 0 errors.  It
is read statically (``ast``: no test module is imported), and ``check`` says what does not hold: a model file
without both-way tests, a declaration naming no model file or a way the module cannot show (a forward
declaration in a module that never calls to_fhir, a reverse one that never maps back, a hapi one with no
HAPI fixture; a helper module of the test tree that the module imports counts as its own source, so a round
trip written once and shared still shows).  ``tests/mapping/test_coverage.py`` fails on any of them.

A row maps a way when one of its rules does (a file whose every rule is ``unidirectional`` maps one way);
it counts as forward/reverse here only when a test proves that way too.  Per FHIR resource type: the
resources of the model files (a data type such as Dosage, mapped inline, is no resource; a composition-level
file makes the Encounter and the Composition; a hook listed in hooks.MAKES adds what it makes beside, the
ImagingStudy of an imaging report), Patient and Provenance not counted.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

from . import composition as composition_level
from . import fhirmodel, hooks
from .spec import SPEC_DIR, Spec, iter_rules, registry

WAYS = ("forward", "reverse", "hapi")
NOT_CONTENT = ("Patient", "Provenance")
REGISTRY_NAME = "COVERS"
# What a module must use to prove a way (plain substrings of its source).
EVIDENCE = {"forward": ("to_fhir",), "reverse": ("from_fhir", "to_openehr", "map_back"),
            "hapi": ("fhir_base_url",)}


@dataclass
class Row:
    """One model file."""
    name: str
    resources: list[str]
    profiles: list[str]
    maps: set[str]  # the ways its rules map: forward, reverse
    inline: str = ""  # the FHIR data type a cluster maps into inline (Dosage), else ""
    tests: dict[str, list[str]] = field(default_factory=dict)  # way -> test modules declaring it

    def proven(self, way: str) -> bool:
        return bool(self.tests.get(way)) and (way == "hapi" or way in self.maps)


@dataclass
class TypeRow:
    """One FHIR resource type: the model files making it."""
    resource: str
    rows: list[Row]

    def proven(self, way: str) -> bool:
        return any(r.proven(way) for r in self.rows)

    @property
    def profiles(self) -> list[str]:
        return sorted({p for r in self.rows for p in r.profiles})


@dataclass
class Coverage:
    rows: list[Row]
    problems: list[str]

    @property
    def types(self) -> list[TypeRow]:
        by: dict[str, list[Row]] = {}
        for r in self.rows:
            for t in r.resources:
                by.setdefault(t, []).append(r)
        return [TypeRow(t, rows) for t, rows in sorted(by.items())]

    @property
    def totals(self) -> dict:
        out = {}
        for label, items in (("archetypes", self.rows), ("resource types", self.types)):
            out[label] = {"total": len(items), **{w: sum(i.proven(w) for i in items) for w in WAYS},
                          "both ways and validated": sum(all(i.proven(w) for w in WAYS) for i in items)}
        return out

    def summary(self) -> list[str]:
        return [f"{label}: {t['total']}, forward {t['forward']}, reverse {t['reverse']}, HAPI-validated {t['hapi']}, "
                f"all three {t['both ways and validated']}" for label, t in self.totals.items()]

    def lines(self) -> list[str]:
        def mark(item, way):
            return way if item.proven(way) else "-" * len(way)
        out = ["archetype | FHIR | forward | reverse | hapi | profile"]
        out += [" | ".join([r.name, ", ".join(r.resources) or f"{r.inline} (inline)", *(mark(r, w) for w in WAYS),
                            ", ".join(map(_short, r.profiles)) or "-"]) for r in self.rows]
        out += ["", "FHIR resource type | archetypes | forward | reverse | hapi | profile"]
        out += [" | ".join([t.resource, str(len(t.rows)), *(mark(t, w) for w in WAYS),
                            ", ".join(map(_short, t.profiles)) or "-"]) for t in self.types]
        return out + [""] + self.summary()


def _short(profile: str) -> str:
    return profile.rsplit("/StructureDefinition/", 1)[-1]


# ------------------------------------------------------------------ model files
def _ways(spec: Spec) -> set[str]:
    out = set()
    for rule in iter_rules(spec.rules):
        if rule.unidirectional != "fhir->openehr":
            out.add("forward")
        if rule.unidirectional != "openehr->fhir":
            out.add("reverse")
    return out


def _profiles(spec: Spec) -> list[str]:
    """The structure definition the file names (when it is no base resource) and every profile a rule sets as a
    constant (a hook may add one by content, e.g. mCODE primary cancer condition: not listed)."""
    out = {f["value"] for rule in iter_rules(spec.rules) for m in rule.manual for f in m.fhir
           if f.get("path") == "meta.profile"}
    if not spec.structure_definition.endswith(f"/StructureDefinition/{spec.resource}"):
        out.add(spec.structure_definition)
    return sorted(out)


def _resources(spec: Spec) -> list[str]:
    if spec.archetype.startswith("openEHR-EHR-COMPOSITION."):
        return sorted(composition_level.level_types(spec))
    own = [spec.resource] if fhirmodel.is_resource(spec.resource) and spec.resource not in NOT_CONTENT else []
    made = {t for rule in iter_rules(spec.rules) for t in hooks.MAKES.get(rule.mapping_code or "", ())}
    return own + sorted(made - set(own))  # and what its hooks make beside them (an imaging report's ImagingStudy)


# ------------------------------------------------------------------ the registry in the tests
def declarations(tests_dir: Path) -> tuple[dict[str, dict[str, list[str]]], list[str]]:
    """(model name -> way -> modules declaring it, problems) from every ``COVERS`` under ``tests_dir``."""
    found: dict[str, dict[str, list[str]]] = {}
    problems = []
    for path in sorted(Path(tests_dir).rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        if REGISTRY_NAME not in source:
            continue
        module = str(path.relative_to(tests_dir))
        tree = ast.parse(source)
        source += "".join(_helper_sources(tree, path, Path(tests_dir)))
        for node in tree.body:
            if not (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == REGISTRY_NAME
                                                         for t in node.targets)):
                continue
            try:
                covers = ast.literal_eval(node.value)
            except ValueError:
                problems.append(f"{module}: {REGISTRY_NAME} is not a literal")
                continue
            for name, ways in covers.items():
                for way in str(ways).split():
                    if way not in WAYS:
                        problems.append(f"{module}: {name}: unknown way {way!r}")
                    elif not any(e in source for e in EVIDENCE[way]):
                        problems.append(f"{module}: {name}: declares {way} but uses none of {EVIDENCE[way]}")
                    else:
                        found.setdefault(name, {}).setdefault(way, []).append(module)
    return found, problems


def _helper_sources(tree: ast.Module, path: Path, tests_dir: Path) -> list[str]:
    """The sources of the test tree's own modules that ``tree`` imports (``from tests.x import``, ``from .x import``)."""
    found = []
    for node in tree.body:
        if not isinstance(node, ast.ImportFrom) or not node.module:
            continue
        if node.level:
            base = path.parent
            for _ in range(node.level - 1):
                base = base.parent
            target = base.joinpath(*node.module.split("."))
        elif node.module.split(".")[0] == tests_dir.resolve().name:
            target = tests_dir.resolve().parent.joinpath(*node.module.split("."))
        else:
            continue
        helper = target.with_suffix(".py")
        if helper.is_file():
            found.append(helper.read_text(encoding="utf-8"))
    return found


def coverage(tests_dir: Path, spec_dir: Path = SPEC_DIR) -> Coverage:
    declared, problems = declarations(tests_dir)
    specs = sorted(registry(str(spec_dir)).values(), key=lambda s: s.name)
    rows = [Row(s.name, _resources(s), _profiles(s), _ways(s), tests=declared.get(s.name, {}),
                inline="" if fhirmodel.is_resource(s.resource) else s.resource) for s in specs]
    names = {s.name for s in specs}
    problems += [f"{REGISTRY_NAME} names {n}, which no model file maps" for n in sorted(set(declared) - names)]
    problems += [f"{r.name}: no test module declares it {w} ({REGISTRY_NAME})" for r in rows
                 for w in ("forward", "reverse") if not r.proven(w)]
    return Coverage(rows, problems)
