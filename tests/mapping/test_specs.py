"""Mapping files parse, name real FHIR R4 elements, and real archetype nodes."""
import re

import pytest

from sync.mapping import fhirmodel, hooks
from sync.mapping.spec import SPEC_DIR, SpecError, iter_rules, load_spec, registry

from .conftest import CORPUS

SPECS = sorted(SPEC_DIR.rglob("*.yml"))


def _fhir_paths(spec):
    for rule in spec.rules:
        yield from _rule_paths(spec.resource, rule, spec.resource)


def _rule_paths(model, rule, root_model):
    path = (rule.fhir or "").replace("$resource", "").lstrip(".")
    if rule.fhir:
        yield (root_model if rule.fhir.startswith("$resource") else model), path
    here = fhirmodel.check_path(root_model if (rule.fhir or "").startswith("$resource") else model, path) \
        if path else model
    for m in rule.manual:
        for f in m.fhir:
            yield here, f["path"]
    for child in rule.followed_by:
        yield from _rule_paths(here, child, root_model)


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_it_parses_and_every_fhir_path_is_an_r4_element(path):
    spec = load_spec(path)
    assert spec.archetype.endswith(spec.name)
    paths = list(_fhir_paths(spec))
    assert paths, "a model file with no FHIR paths maps nothing"
    for model, p in paths:
        fhirmodel.check_path(model, p)  # raises UnknownElement


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_it_names_only_registered_hooks(path):
    for rule in iter_rules(load_spec(path).rules):
        if rule.mapping_code:
            assert rule.mapping_code in hooks.names()


def test_it_rejects_an_unknown_path_element():
    with pytest.raises(fhirmodel.UnknownElement):
        fhirmodel.check_path("Observation", "component.valueFoo")


def test_it_rejects_unsupported_keys(tmp_path):
    bad = SPECS[0].read_text().replace("mappings:", "reference: {}\nmappings:", 1)
    p = tmp_path / "bad.yml"
    p.write_text(bad)
    with pytest.raises(SpecError):
        load_spec(p)


ECOG_SPEC = next(p for p in SPECS if p.name == "ecog.v2.yml")
INTEGER_0 = "{targetAttribute: value.as(Integer), operator: one of, criteria: [0]}"


@pytest.mark.parametrize("anyof", ["{anyOf: []}", "{anyOf: [%s], operator: one of}" % INTEGER_0])
def test_a_manual_any_of_needs_conditions_and_nothing_beside_them(tmp_path, anyof):
    text = ECOG_SPEC.read_text()
    start = text.index("        fhirCondition:\n          anyOf:")
    end = text.index("        fhir:", start)
    p = tmp_path / "bad.yml"
    p.write_text(text[:start] + f"        fhirCondition: {anyof}\n" + text[end:])
    with pytest.raises(SpecError):
        load_spec(p)


def test_any_of_is_a_manual_entry_s_only_a_claim_or_a_rule_condition_refuses_it(tmp_path):
    text = ECOG_SPEC.read_text().replace(
        '    - {targetAttribute: code.coding, operator: one of, criteria: ["http://loinc.org|89247-1", '
        '"http://snomed.info/sct|423740007"]}', "    - {anyOf: [%s]}" % INTEGER_0, 1)
    p = tmp_path / "bad.yml"
    p.write_text(text)
    with pytest.raises(SpecError):
        load_spec(p)


def _adl_codes(archetype_id):
    adl = CORPUS / "openehr" / "archetypes" / f"{archetype_id}.adl"
    if not adl.exists():
        return None
    text = adl.read_text(encoding="utf-8-sig")
    definition = text[text.index("definition"):text.index("ontology")]
    return set(re.findall(r"\[(at\d{4}(?:\.\d+)*)\]", definition)) | set(re.findall(r"(at\d{4})", definition))


def _openehr_codes(spec):
    if spec.hierarchy:
        yield from re.findall(r"at\d{4}", spec.hierarchy["openehr"])
    yield from _rule_codes(spec.rules)


def _rule_codes(rules, in_slot=False):
    """at-codes of this archetype: those after a slotted archetype step ([openEHR-EHR-CLUSTER...])
    belong to the slot filler and are checked against the templates instead."""
    for rule in rules:
        path = rule.openehr or ""
        own = path.split("[openEHR-EHR-")[0]
        if path and not in_slot and not path.startswith("$archetype/language"):
            yield from re.findall(r"at\d{4}", own)
        for m in rule.manual:
            for c in (m.openehr_condition,):
                if c and c.target_root and not in_slot:
                    yield from re.findall(r"at\d{4}", c.target_root)
        yield from _rule_codes(rule.followed_by, in_slot or own != path)


def test_every_openehr_node_of_archetypes_we_have_exists(corpus):
    checked = 0
    for spec in registry().values():
        codes = _adl_codes(spec.archetype)
        if codes is None:
            continue
        for code in _openehr_codes(spec):
            assert code in codes, f"{spec.name}: {code} is not in the archetype definition"
            checked += 1
    assert checked > 10  # the lab archetype ADL is in the corpus


def test_every_openehr_node_exists_in_some_corpus_template(corpus):
    """Archetypes without an ADL here: their at-codes must appear under that archetype in an OPT."""
    opts = [p.read_text(encoding="utf-8-sig") for p in (corpus / "openehr" / "templates").glob("*.opt")]
    for spec in registry().values():
        texts = [t for t in opts if spec.archetype in t]
        if not texts or _adl_codes(spec.archetype) is not None:
            continue  # an ADL here is the stronger check (above); an OPT may hold an older revision of it
        for code in set(_openehr_codes(spec)):
            assert any(f"<node_id>{code}</node_id>" in t or f'code="{code}"' in t for t in texts), \
                f"{spec.name}: {code} not found in any template using the archetype"
