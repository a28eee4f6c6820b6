"""Persistent lists (COMPOSITION.problem_list.v2, medication_list.v1, adverse_reaction_list.v1, care_plan.v0) <-> one FHIR List
(composition.py, specs/model/composition/*_list*.yml): title, date, source, status current, mode working, entry.item
-> the resources made from the entries; back, the List gives the header and the entries are entries of their own."""
import copy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync.mapping import compare_clinical, from_fhir, templates, to_fhir, to_openehr, validate_fhir
from sync.mapping.residue import strip

from tests.fixtures import CORPUS_DIR

from .conftest import REPO_DIR, load
from .hapi import hapi_errors
from .test_allergy import risk
from .test_oncology_careplan import care_plan, goal

# The rows this module proves (sync.mapping.coverage reads it; tests/mapping/test_coverage.py checks it).
COVERS = {"COMPOSITION.problem_list.v2": "forward reverse hapi",
          "COMPOSITION.medication_list.v1": "forward reverse hapi",
          "COMPOSITION.adverse_reaction_list.v1": "forward reverse hapi",
          "COMPOSITION.care_plan.v0": "forward reverse hapi"}

FIXTURE = REPO_DIR / "tests" / "fixtures" / "oncology" / "oncology_encounter.composition.json"
UID = "0b5e3c4e-2222-4222-8333-944444444444::site-a::3"
ARGS = dict(site="s", ehr_id="e", patient_ref="Patient/p1")
HEADER = ("name", "language", "territory", "category", "composer", "context")


def _entries(archetype: str) -> list[dict]:
    return [e for e in load(FIXTURE)["content"] if e["archetype_node_id"] == f"openEHR-EHR-{archetype}"]


# each list with what it lists (the fixture's diagnosis and medication order; an allergy built as test_allergy's)
LISTS = {"problem_list.v2": ("Problem list", lambda: _entries("EVALUATION.problem_diagnosis.v1")),
         "medication_list.v1": ("Medication list", lambda: _entries("INSTRUCTION.medication_order.v3")),
         "adverse_reaction_list.v1": ("Adverse reaction list", lambda: [risk()]),
         "care_plan.v0": ("Care plan", lambda: [care_plan(), goal()])}
# R4's example use codes for List (the CKM binds none)
KIND = {"problem_list.v2": "problems", "medication_list.v1": "medications", "adverse_reaction_list.v1": "allergies",
        "care_plan.v0": "plans"}
KDS = CORPUS_DIR / "openehr" / "compositions" / "kds_medication_statement.patient1.composition.json"  # MII KDS


def persistent_list(kind: str, content=None) -> dict:
    """The fixture's header (category 433 event: the CKM lists allow no other; the care plan 431 persistent) as a
    ``kind`` list."""
    c = load(FIXTURE)
    name, entries = LISTS[kind]
    c["archetype_node_id"] = f"openEHR-EHR-COMPOSITION.{kind}"
    c["archetype_details"]["archetype_id"]["value"] = c["archetype_node_id"]
    c["name"] = {"_type": "DV_TEXT", "value": name}
    if kind == "care_plan.v0":  # the CKM care plan is persistent (431), the lists' fixture header an event
        c["category"]["value"], c["category"]["defining_code"]["code_string"] = "persistent", "431"
    c["content"] = entries() if content is None else content
    c["uid"] = {"_type": "OBJECT_VERSION_ID", "value": UID}
    return c


def list_template(c: dict) -> str:
    """Register a minimal OPT for ``c``'s root and entry archetypes (the template decides a new composition's
    root archetype); its id."""
    ids = [c["archetype_node_id"]] + [e["archetype_node_id"] for e in c["content"]]
    tid = "conflictdesk_" + c["archetype_node_id"].split(".")[1]
    templates.register(f"<template><language><code_string>en</code_string></language><template_id><value>{tid}"
                       f"</value></template_id><concept>{c['name']['value']}</concept><definition>"
                       + "".join(f"<attributes><children><archetype_id><value>{i}</value></archetype_id></children>"
                                 "</attributes>" for i in ids[1:])
                       + f"<archetype_id><value>{ids[0]}</value></archetype_id></definition></template>")
    return tid


def _lists(resources) -> list[dict]:
    return [r for r in resources if r["resourceType"] == "List"]


def _header(c):
    return {k: c[k] for k in HEADER if k in c}


@pytest.mark.parametrize("kind", sorted(LISTS))
def test_a_list_composition_is_one_list_of_its_entries_resources(kind):
    c = persistent_list(kind)
    res = to_fhir(c, **ARGS)
    [lst] = _lists(res.resources)
    assert not [r for r in res.resources if r["resourceType"] in ("Encounter", "Composition")]
    assert (lst["status"], lst["mode"], lst["title"]) == ("current", "working", LISTS[kind][0])
    assert [(c["system"], c["code"]) for c in lst["code"]["coding"]] == [
        ("http://terminology.hl7.org/CodeSystem/list-example-use-codes", KIND[kind])]
    assert lst["subject"] == {"reference": "Patient/p1"} and lst["source"] == {"display": "Dr. Ada Synthetic"}
    assert lst["date"] == "2025-03-14T10:30:00+01:00"
    listed = [e["item"]["reference"] for e in lst["entry"]]
    others = [f"{r['resourceType']}/{r['id']}" for r in res.resources if r is not lst]
    assert listed == others and others
    assert validate_fhir(lst) == []


@pytest.mark.parametrize("kind", sorted(LISTS))
def test_a_list_round_trips_with_and_without_a_base(kind):
    c = persistent_list(kind)
    res = to_fhir(c, **ARGS)
    assert compare_clinical(c, to_openehr(res.resources, template_id="t", base_composition=c)) == []
    back = to_openehr(res.resources, template_id=list_template(c))
    assert compare_clinical(_header(c), _header(back)) == []
    assert compare_clinical(c["content"], back["content"]) == []
    assert back["archetype_node_id"] == c["archetype_node_id"]
    # no template registered: the List's code names the list, its header comes back all the same
    unregistered = to_openehr(res.resources, template_id="t")
    assert unregistered["archetype_node_id"] == c["archetype_node_id"]
    assert compare_clinical(_header(c), _header(unregistered)) == []


def test_the_mii_kds_medication_entry_is_a_medication_list_of_its_statement():
    c = load(KDS)
    c.setdefault("uid", {"_type": "OBJECT_VERSION_ID", "value": UID})
    res = to_fhir(c, **ARGS)
    [lst] = _lists(res.resources)
    statements = [f"MedicationStatement/{r['id']}" for r in res.resources if r["resourceType"] == "MedicationStatement"]
    assert statements and set(statements) <= {e["item"]["reference"] for e in lst["entry"]}
    assert validate_fhir(lst) == []
    assert compare_clinical(c, to_openehr(res.resources, template_id="t", base_composition=c)) == []
    back = to_openehr(res.resources, template_id="t")
    assert compare_clinical(_header(c), _header(back)) == []


def test_the_header_the_list_cannot_hold_is_residue_and_reported():
    c = persistent_list("problem_list.v2")
    res = to_fhir(c, **ARGS)
    [lst] = _lists(res.resources)
    assert strip(lst) != lst  # territory, category, setting, facility: openehr-residue on the List
    assert any(x.path.startswith("/context") for x in res.losses)


def test_the_list_is_rebuilt_from_the_composition_not_read_for_its_entries():
    """A central List naming a resource the bundle lacks adds no entry: the entries are the resources sent."""
    c = persistent_list("problem_list.v2")
    res = to_fhir(c, **ARGS)
    [lst] = _lists(res.resources)
    lst["entry"].append({"item": {"reference": "Condition/elsewhere"}})
    lst["title"] = "Problems (reviewed)"
    out = from_fhir(res.resources, template_id="t", base_composition=c)
    assert out.composition["name"]["value"] == "Problems (reviewed)"
    assert compare_clinical(c["content"], out.composition["content"]) == []
    again = _lists(to_fhir(out.composition, **ARGS).resources)[0]
    assert [e["item"] for e in again["entry"]] == [e["item"] for e in lst["entry"][:-1]]


def test_an_empty_list_has_no_entries_and_comes_back_empty():
    c = persistent_list("problem_list.v2", content=[])
    res = to_fhir(c, **ARGS)
    [lst] = res.resources
    assert "entry" not in lst and validate_fhir(lst) == []
    assert to_openehr(res.resources, template_id=list_template(c))["content"] == []


# ------------------------------------------------------------------ properties
_names = st.text(st.characters(whitelist_categories=("L", "N", "Zs"), max_codepoint=0x24F), min_size=1,
                 max_size=30).filter(str.strip)
_times = st.datetimes(min_value=__import__("datetime").datetime(2000, 1, 1),
                      max_value=__import__("datetime").datetime(2040, 1, 1)).map(
    lambda d: d.strftime("%Y-%m-%dT%H:%M:%S") + "+01:00")


@st.composite
def list_composition(draw):
    kind = draw(st.sampled_from(sorted(LISTS)))
    c = persistent_list(kind)
    c["content"] = draw(st.sampled_from([[], c["content"], c["content"] * 2]))
    c["name"]["value"] = draw(_names)
    c["composer"] = draw(st.one_of(st.just({"_type": "PARTY_SELF"}),
                                   _names.map(lambda n: {"_type": "PARTY_IDENTIFIED", "name": n})))
    c["context"]["start_time"]["value"] = draw(_times)
    if draw(st.booleans()):
        c["context"]["end_time"] = {"_type": "DV_DATE_TIME", "value": draw(_times)}
    return copy.deepcopy(c)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(list_composition())
def test_generated_lists_round_trip(c):
    res = to_fhir(c, **ARGS)
    [lst] = _lists(res.resources)
    assert validate_fhir(lst) == []
    assert len(lst.get("entry", [])) == len(res.resources) - 1
    assert compare_clinical(c, to_openehr(res.resources, template_id="t", base_composition=c)) == []
    back = to_openehr(res.resources, template_id=list_template(c))
    assert compare_clinical(_header(c), _header(back)) == []
    again = to_fhir({**back, "uid": c["uid"]}, **ARGS)
    assert compare_clinical(lst, _lists(again.resources)[0]) == []


# ------------------------------------------------------------------ HAPI
@pytest.mark.integration
@pytest.mark.parametrize("kind", sorted(LISTS))
def test_hapi_validates_the_list(fhir_base_url, kind):
    [lst] = _lists(to_fhir(persistent_list(kind), **ARGS).resources)
    assert hapi_errors(fhir_base_url, lst) == []


@pytest.mark.integration
def test_hapi_validates_the_mii_kds_medication_list(fhir_base_url):
    c = load(KDS)
    c.setdefault("uid", {"_type": "OBJECT_VERSION_ID", "value": UID})
    [lst] = _lists(to_fhir(c, **ARGS).resources)
    assert hapi_errors(fhir_base_url, lst) == []
