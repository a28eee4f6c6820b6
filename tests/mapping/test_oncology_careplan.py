"""Issue 17: INSTRUCTION.care_plan_request.v0 <-> CarePlan, whose activities and goals are the requests
and goals recorded with the plan (hook planMembers).  Compositions are built from the CKM archetypes'
node ids (tests/fixtures/corpus); the medication order is the oncology fixture's."""
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync.mapping import compare_clinical, from_fhir, to_fhir, validate_fhir
from sync.mapping import datatypes as dt
from sync.mapping.engine import entry_skeleton
from sync.mapping.residue import strip
from sync.mapping.spec import registry

from .conftest import REPO_DIR
from .hapi import hapi_errors

# The rows this module proves (sync.mapping.coverage reads it; tests/mapping/test_coverage.py checks it).
COVERS = {"INSTRUCTION.care_plan_request.v0": "forward reverse hapi"}

ARGS = dict(site="s", ehr_id="e", patient_ref="Patient/1")
PLAN = "openEHR-EHR-INSTRUCTION.care_plan_request.v0"
ONCOLOGY = REPO_DIR / "tests/fixtures/oncology/oncology_encounter.composition.json"
CONTENT = ("Encounter", "Composition")


def el(node, name, value):
    return {"_type": "ELEMENT", "name": {"_type": "DV_TEXT", "value": name}, "archetype_node_id": node, "value": value}


def text(value):
    return {"_type": "DV_TEXT", "value": value}


def care_plan(name="Adjuvant treatment plan", description="4 cycles AC, then whole-breast radiotherapy",
              indication="Malignant neoplasm of breast", onset="2025-03-14T10:00:00+01:00",
              comment="agreed at tumour board") -> dict:
    entry = entry_skeleton(registry()[PLAN], "en")
    entry["narrative"] = text(name or "Care plan")
    items = [el(node, label, value) for node, label, value in (
        ("at0017", "Plan name", text(name) if name else None),
        ("at0007", "Description", text(description) if description else None),
        ("at0011", "Indication", text(indication) if indication else None),
        ("at0018", "Date of onset", {"_type": "DV_DATE_TIME", "value": onset} if onset else None),
        ("at0019", "Comment", text(comment) if comment else None)) if value]
    entry["activities"] = [{"_type": "ACTIVITY", "name": text("Activity"), "archetype_node_id": "at0001",
                            "action_archetype_id": "openEHR-EHR-ACTION.care_plan.v1",
                            "description": {"_type": "ITEM_TREE", "name": text("Tree"), "archetype_node_id": "at0004",
                                            "items": items}}]
    return entry


def radiotherapy_referral() -> dict:
    entry = entry_skeleton(registry()["openEHR-EHR-INSTRUCTION.service_request.v1"], "en")
    entry["narrative"] = text("Adjuvant radiotherapy")
    entry["activities"] = [{"_type": "ACTIVITY", "name": text("Current Activity"), "archetype_node_id": "at0001",
                            "action_archetype_id": "/.*/",
                            "description": {"_type": "ITEM_TREE", "name": text("Tree"), "archetype_node_id": "at0009",
                                            "items": [el("at0121", "Service name", text("Adjuvant radiotherapy"))]}}]
    return entry


def goal(name="Disease-free at 5 years") -> dict:
    entry = entry_skeleton(registry()["openEHR-EHR-EVALUATION.goal.v1"], "en")
    entry["data"] = {"_type": "ITEM_TREE", "name": text("Tree"), "archetype_node_id": "at0001",
                     "items": [el("at0002", "Goal name", text(name))]}
    return entry


def administration_given(name="cyclophosphamide") -> dict:
    """ACTION.medication.v1: a dose given (the archetype's careflow step at0006 "Dose administered", state active)."""
    entry = entry_skeleton(registry()["openEHR-EHR-ACTION.medication.v1"], "en")
    entry["time"] = {"_type": "DV_DATE_TIME", "value": "2026-12-05T10:00:00+01:00"}
    entry["ism_transition"] = {"_type": "ISM_TRANSITION", "current_state": dt.coded_text("active", "openehr", "245"),
                               "careflow_step": dt.coded_text("Dose administered", "local", "at0006")}
    entry["description"] = {"_type": "ITEM_TREE", "name": text("Tree"), "archetype_node_id": "at0017",
                            "items": [el("at0020", "Medication item", text(name))]}
    return entry


def tumour_board(*extra) -> dict:
    """The oncology fixture (vital signs, lab, the tamoxifen order, ...) with a plan, a referral and a goal."""
    comp = json.loads(ONCOLOGY.read_text(encoding="utf-8"))
    comp["content"] += [care_plan(), radiotherapy_referral(), goal(), *extra]
    return comp


def mapped(comp) -> list[dict]:
    return [r for r in to_fhir(comp, **ARGS).resources if r["resourceType"] not in CONTENT]


def of(resources, rtype):
    return [r for r in resources if r["resourceType"] == rtype]


def ref(r):
    return f"{r['resourceType']}/{r['id']}"


# ------------------------------------------------------------------ openEHR-born plan
def test_a_plan_names_the_requests_and_goals_recorded_with_it_and_maps_back_exactly():
    comp = tumour_board()
    resources = mapped(comp)
    [plan] = of(resources, "CarePlan")
    assert (plan["status"], plan["intent"], plan["title"]) == ("active", "plan", "Adjuvant treatment plan")
    assert plan["description"] == "4 cycles AC, then whole-breast radiotherapy"
    assert plan["period"] == {"start": "2025-03-14T10:00:00+01:00"} and plan["note"] == [{"text": "agreed at tumour board"}]
    [order], [referral], [aim] = of(resources, "MedicationRequest"), of(resources, "ServiceRequest"), of(resources, "Goal")
    assert [a["reference"]["reference"] for a in plan["activity"]] == [ref(order), ref(referral)]
    assert plan["goal"] == [{"reference": ref(aim)}]
    assert validate_fhir(plan) == []
    # the indication (a text; CarePlan.addresses is a Reference) travels in the residue
    assert any(x["url"] == "path" and x["valueString"].endswith("items[at0011]")
               for e in plan["extension"] for x in e["extension"])
    back = from_fhir(resources, template_id="t", base_composition=comp)
    assert compare_clinical(comp, back.composition) == []
    assert [x for x in back.losses if x.path.startswith("CarePlan/")] == []


def test_a_plan_alone_has_no_activity_or_goal():
    comp = tumour_board()
    comp["content"] = [e for e in comp["content"] if e["archetype_node_id"] == PLAN]
    [plan] = mapped(comp)
    assert "activity" not in plan and "goal" not in plan


def test_every_plan_element_is_optional_and_round_trips():
    comp = tumour_board()
    comp["content"][-3] = care_plan(name=None, description=None, indication=None, onset=None, comment=None)
    resources = mapped(comp)
    [plan] = of(resources, "CarePlan")
    assert {"title", "description", "period", "note"}.isdisjoint(plan)
    assert compare_clinical(comp, from_fhir(resources, template_id="t", base_composition=comp).composition) == []


# ------------------------------------------------------------------ FHIR-born plan (a tumour board at the centre)
P = {"reference": "Patient/p1"}


def central_plan(**over) -> list[dict]:
    plan = {"resourceType": "CarePlan", "id": "cp1", "status": "active", "intent": "plan", "subject": P,
            "title": "Tumour board plan", "description": "4 cycles AC, then adjuvant radiotherapy",
            "period": {"start": "2025-03-14"}, "note": [{"text": "tumour board 14 March"}],
            "activity": [{"reference": {"reference": "MedicationRequest/mr1"}},
                         {"reference": {"reference": "ServiceRequest/sr1"}}],
            "goal": [{"reference": "Goal/g1"}], **over}
    order = {"resourceType": "MedicationRequest", "id": "mr1", "status": "active", "intent": "order", "subject": P,
             "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                       "code": "3002", "display": "cyclophosphamide"}]}}
    referral = {"resourceType": "ServiceRequest", "id": "sr1", "status": "active", "intent": "order", "subject": P,
                "code": {"text": "Adjuvant radiotherapy"}}
    aim = {"resourceType": "Goal", "id": "g1", "lifecycleStatus": "active", "subject": P,
           "description": {"text": "Disease-free at 5 years"}}
    return [plan, order, referral, aim]


def test_a_central_tumour_board_plan_becomes_a_plan_with_its_order_referral_and_goal_beside_it():
    resources = central_plan()
    out = from_fhir(resources, template_id="t")
    assert [e["archetype_node_id"] for e in out.composition["content"]] == [
        PLAN, "openEHR-EHR-INSTRUCTION.medication_order.v3", "openEHR-EHR-INSTRUCTION.service_request.v1",
        "openEHR-EHR-EVALUATION.goal.v1"]
    plan = out.composition["content"][0]
    assert plan["narrative"]["value"] == "Tumour board plan"
    assert plan["feeder_audit"]["originating_system_item_ids"][0]["id"] == "CarePlan/cp1"
    assert [x for x in out.losses if x.path.startswith("CarePlan/")] == []
    comp = {**out.composition, "uid": {"_type": "OBJECT_VERSION_ID", "value": "c0ffee00-0000-4000-8000-000000000017::x::1"}}
    [again] = of(mapped(comp), "CarePlan")
    assert [d for d in compare_clinical(strip(resources[0]), {**strip(again), "subject": P})
            if d["kind"] != "dictionary_item_added"] == []  # the entry's language is added, nothing changes


def test_a_member_outside_the_set_is_not_invented_and_the_plan_itself_is_kept():
    resources = central_plan(activity=[{"reference": {"reference": "MedicationRequest/mr1"}},
                                       {"reference": {"reference": "ServiceRequest/not-sent"}}])
    out = from_fhir([r for r in resources if r["resourceType"] != "ServiceRequest"], template_id="t")
    assert [e["archetype_node_id"] for e in out.composition["content"]] == [
        PLAN, "openEHR-EHR-INSTRUCTION.medication_order.v3", "openEHR-EHR-EVALUATION.goal.v1"]
    lost = {x.path.split(":", 1)[1].split("[")[0] for x in out.losses if x.path.startswith("CarePlan/cp1:")}
    assert not lost & {"title", "description", "period", "note", "goal"}


# ------------------------------------------------------------------ hypothesis
TEXT = st.text(alphabet=st.characters(whitelist_categories=("Lu", "Ll", "Zs")), min_size=1, max_size=12) \
    .map(str.strip).filter(bool)
OPTIONAL = st.one_of(st.none(), TEXT)


@st.composite
def plan_records(draw):
    plan = care_plan(draw(OPTIONAL), draw(OPTIONAL), draw(OPTIONAL),
                     draw(st.one_of(st.none(), st.just("2025-03-14T10:00:00+01:00"))), draw(OPTIONAL))
    members = draw(st.lists(st.sampled_from([radiotherapy_referral, goal]), max_size=3))
    entries = [plan] + [m() for m in members]
    return draw(st.permutations(entries))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan_records())
def test_round_trip_property(entries):
    comp = json.loads(ONCOLOGY.read_text(encoding="utf-8"))
    comp["content"] = list(entries)
    resources = mapped(comp)
    [plan] = of(resources, "CarePlan")
    members = [ref(r) for r in resources if r["resourceType"] in ("ServiceRequest", "Goal")]
    assert sorted([a["reference"]["reference"] for a in plan.get("activity", [])]
                  + [g["reference"] for g in plan.get("goal", [])]) == sorted(members)
    assert all(validate_fhir(r) == [] for r in resources)
    back = from_fhir(resources, template_id="t", base_composition=comp)
    assert compare_clinical(comp, back.composition) == []
    # the same record born in FHIR (no source identifiers, other ids): the plan's references still resolve
    text = json.dumps([{k: v for k, v in strip(r).items() if k != "identifier"} for r in resources])
    for i, r in enumerate(resources):
        text = text.replace(r["id"], f"born-{i}")
    born = from_fhir(json.loads(text), template_id="t")
    assert [x for x in born.losses if x.path.startswith("CarePlan/")] == []


# ------------------------------------------------------------------ HAPI $validate
@pytest.mark.integration
def test_hapi_validates_the_care_plan(fhir_base_url):
    [plan] = of(mapped(tumour_board()), "CarePlan")
    assert hapi_errors(fhir_base_url, plan) == []


def test_a_central_edit_of_a_plan_born_there_replaces_its_entry_not_a_twin_beside_it():
    first = from_fhir(central_plan(), template_id="t").composition
    edited = central_plan(description="6 cycles AC, then adjuvant radiotherapy")
    again = from_fhir(edited, template_id="t", base_composition=first).composition
    assert [e["archetype_node_id"] for e in again["content"]] == [e["archetype_node_id"] for e in first["content"]]
    [plan] = [e for e in again["content"] if e["archetype_node_id"] == PLAN]
    items = {i["archetype_node_id"]: i["value"]["value"] for i in plan["activities"][0]["description"]["items"]}
    assert items["at0007"] == "6 cycles AC, then adjuvant radiotherapy"
