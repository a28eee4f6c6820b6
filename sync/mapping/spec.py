"""Load FHIRconnect model files (the subset we support) into plain dataclasses.

Unknown keys are rejected rather than ignored: a mapping file that uses a
FHIRconnect feature this engine does not implement must fail loudly in CI,
not silently map less (see README 'Unsupported').
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import MappingError

GRAMMAR = "FHIRConnect/v1.0.0"
SPEC_DIR = Path(__file__).parent / "specs" / "model"
DIRECTIONS = {"openehr->fhir": "openehr->fhir", "openEHR->fhir": "openehr->fhir", "openehr->FHIR": "openehr->fhir",
              "fhir->openehr": "fhir->openehr", "fhir->openEHR": "fhir->openehr", "FHIR->openEHR": "fhir->openehr"}
VALUE_TYPES = {"NONE", "QUANTITY", "CODEABLECONCEPT", "CODING", "STRING", "INTEGER", "BOOLEAN", "DATETIME",
               "IDENTIFIER", "PROPORTION", "ORDINAL", "NULL_FLAVOUR", "LANGUAGE"}
OPERATORS = ("one of", "not of", "empty", "not empty")
ANY_OF = "any of"  # a manual entry's fhirCondition {anyOf: [conditions]}: one of them holds (criteria = the conditions)
ALL_OF = "all of"  # a fhirConfig.match entry {allOf: [conditions]}: every condition holds (criteria = the conditions)


class SpecError(MappingError):
    """A mapping file is not valid in our FHIRconnect subset."""


@dataclass
class Condition:
    target_root: str | None
    target_attribute: str
    operator: str
    criteria: list


@dataclass
class Manual:
    name: str
    fhir: list[dict]
    openehr: list[dict]
    fhir_condition: Condition | None = None
    openehr_condition: Condition | None = None


@dataclass
class Rule:
    name: str
    fhir: str | None = None
    openehr: str | None = None
    type: str = "NONE"
    fhir_condition: Condition | None = None
    openehr_condition: Condition | None = None
    followed_by: list["Rule"] = field(default_factory=list)
    manual: list[Manual] = field(default_factory=list)
    unidirectional: str | None = None
    mapping_code: str | None = None
    slot_archetype: str | None = None

    def runs(self, direction: str) -> bool:
        return self.unidirectional in (None, direction)


@dataclass
class Spec:
    name: str
    archetype: str
    entry_name: str
    resource: str
    structure_definition: str
    match: list[Condition]
    hierarchy: dict | None
    rules: list[Rule]
    source: str

    @property
    def is_cluster(self) -> bool:
        return "-CLUSTER." in self.archetype


_RULE_KEYS = {"name", "with", "fhirCondition", "openehrCondition", "followedBy", "manual", "unidirectional",
              "mappingCode", "slotArchetype"}
_TOP_KEYS = {"grammar", "type", "metadata", "spec", "openEhrConfig", "fhirConfig", "preprocessor", "mappings"}


def _err(src: str, msg: str, rule: str | None = None) -> SpecError:
    return SpecError(msg, path=src, rule=rule)


def _cond(raw, src, rule, *, any_of: bool = False) -> Condition | None:
    """A condition; with ``any_of`` (a manual entry's fhirCondition) also {anyOf: [conditions]}: one form of
    a value among several a sender may use (an ECOG grade as an integer, a quantity or a code)."""
    if raw is None:
        return None
    if any_of and isinstance(raw, dict) and "anyOf" in raw:
        if set(raw) != {"anyOf"} or not isinstance(raw["anyOf"], list) or not raw["anyOf"]:
            raise _err(src, "anyOf takes a non-empty list of conditions and nothing else", rule)
        return Condition(None, "", ANY_OF, [_cond(c, src, rule) for c in raw["anyOf"]])
    if not isinstance(raw, dict) or "operator" not in raw:
        raise _err(src, "condition needs an operator", rule)
    if raw["operator"] not in OPERATORS:
        raise _err(src, f"unsupported operator {raw['operator']!r}", rule)
    crit = raw.get("criteria", [])
    if isinstance(crit, str):
        crit = [c.strip() for c in crit.strip("[]").split(",") if c.strip()]
    elif isinstance(crit, dict):
        crit = codemap_criteria(crit, src, rule)
    return Condition(raw.get("targetRoot"), raw.get("targetAttribute", ""), raw["operator"], list(crit))


CODEMAP_DIR = Path(__file__).parent / "codemaps"


def codemap_criteria(raw: dict, src: str, rule: str | None = None) -> list[str]:
    """Criteria ``{codemap: NAME, kind: KIND}``: the ``system|code`` tokens of every code that
    ``codemaps/NAME.yml`` files under a class of that kind (e.g. the LOINC codes of laboratory classes)."""
    if set(raw) != {"codemap", "kind"} or not (CODEMAP_DIR / f"{raw['codemap']}.yml").is_file():
        raise _err(src, "codemap criteria need {codemap: <file in codemaps/>, kind: <kind>}", rule)
    table = yaml.safe_load((CODEMAP_DIR / f"{raw['codemap']}.yml").read_text(encoding="utf-8"))
    classes = set((table.get("kinds") or {}).get(raw["kind"]) or [])
    if not classes:
        raise _err(src, f"codemap {raw['codemap']} has no kind {raw['kind']!r}", rule)
    return [f"{table['system']}|{code}" for code, row in (table.get("codes") or {}).items() if row["class"] in classes]


def _match(raw, src) -> Condition:
    """A fhirConfig.match entry: a condition, or {allOf: [conditions]} (all must hold; more specific)."""
    if isinstance(raw, dict) and "allOf" in raw:
        if set(raw) != {"allOf"} or not isinstance(raw["allOf"], list) or not raw["allOf"]:
            raise _err(src, "allOf takes a non-empty list of conditions and nothing else", "fhirConfig")
        return Condition(None, "", ALL_OF, [_cond(c, src, "fhirConfig") for c in raw["allOf"]])
    return _cond(raw, src, "fhirConfig")


def _manual(raw, src, rule) -> Manual:
    return Manual(raw.get("name", rule), list(raw.get("fhir") or []), list(raw.get("openehr") or []),
                  _cond(raw.get("fhirCondition"), src, rule, any_of=True), _cond(raw.get("openehrCondition"), src, rule))


def _rule(raw: dict, src: str) -> Rule:
    name = raw.get("name") or "?"
    extra = set(raw) - _RULE_KEYS
    if extra:
        raise _err(src, f"unsupported keys {sorted(extra)}", name)
    w = raw.get("with") or {}
    typ = str(w.get("type", "NONE")).upper()
    if typ not in VALUE_TYPES:
        raise _err(src, f"unsupported type {typ}", name)
    uni = raw.get("unidirectional")
    if uni is not None and uni not in DIRECTIONS:
        raise _err(src, f"bad unidirectional {uni!r}", name)
    return Rule(name=name, fhir=w.get("fhir"), openehr=w.get("openehr"), type=typ,
                fhir_condition=_cond(raw.get("fhirCondition"), src, name),
                openehr_condition=_cond(raw.get("openehrCondition"), src, name),
                followed_by=[_rule(r, src) for r in ((raw.get("followedBy") or {}).get("mappings") or [])],
                manual=[_manual(m, src, name) for m in raw.get("manual") or []],
                unidirectional=DIRECTIONS.get(uni) if uni else None,
                mapping_code=raw.get("mappingCode"), slot_archetype=raw.get("slotArchetype"))


def load_spec(path: Path) -> Spec:
    src = str(path.name)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise _err(src, f"YAML error: {exc.__class__.__name__}") from exc
    if not isinstance(doc, dict):
        raise _err(src, "not a mapping document")
    extra = set(doc) - _TOP_KEYS
    if extra:
        raise _err(src, f"unsupported top-level keys {sorted(extra)}")
    if doc.get("grammar") != GRAMMAR:
        raise _err(src, f"grammar must be {GRAMMAR}")
    if doc.get("type") != "model":
        raise _err(src, "only 'model' files are supported")
    sp = doc.get("spec") or {}
    if sp.get("system") != "FHIR" or str(sp.get("version")) != "R4":
        raise _err(src, "spec must be {system: FHIR, version: R4}")
    oc, fc = doc.get("openEhrConfig") or {}, doc.get("fhirConfig") or {}
    if not oc.get("archetype") or not fc.get("structureDefinition") or not fc.get("resource"):
        raise _err(src, "openEhrConfig.archetype, fhirConfig.structureDefinition and fhirConfig.resource are required")
    name = (doc.get("metadata") or {}).get("name")
    if not name or not oc["archetype"].endswith(name):
        raise _err(src, "metadata.name must be the archetype id without the 'openEHR-EHR-' prefix")
    return Spec(name=name, archetype=oc["archetype"], entry_name=oc.get("name", name), resource=fc["resource"],
                structure_definition=fc["structureDefinition"],
                match=[_match(m, src) for m in (fc["match"] if isinstance(fc.get("match"), list)
                                                else [fc["match"]] if fc.get("match") else [])],
                hierarchy=(doc.get("preprocessor") or {}).get("hierarchy"),
                rules=[_rule(r, src) for r in doc.get("mappings") or []], source=src)


@functools.lru_cache(maxsize=None)
def registry(spec_dir: str = str(SPEC_DIR)) -> dict[str, Spec]:
    """archetype id -> Spec for every model file under ``spec_dir``."""
    out: dict[str, Spec] = {}
    for p in sorted(Path(spec_dir).rglob("*.yml")):
        s = load_spec(p)
        if s.archetype in out:
            raise _err(p.name, f"second mapping for {s.archetype}")
        out[s.archetype] = s
    return out


def iter_rules(rules: list[Rule]):
    for r in rules:
        yield r
        yield from iter_rules(r.followed_by)
