"""Issue 17: ACTION.care_plan.v0, a careflow step of a care plan, is the status of the CarePlan made from the
request it acts on (sync/mapping/careplan_action.py), never a CarePlan of its own; a central status change
comes back to the site as an ACTION.care_plan with the matching careflow step.  The careflow steps are the
CKM archetype's (tests/fixtures/corpus/openehr/archetypes/openEHR-EHR-ACTION.care_plan.v0.adl)."""
import copy
import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync.mapping import compare_clinical, from_fhir, rmpath, to_fhir, validate_fhir
from sync.mapping import datatypes as dt

from .conftest import REPO_DIR
from .hapi import hapi_errors
from .test_oncology_careplan import ARGS, ONCOLOGY, PLAN, care_plan, central_plan, goal, of, tumour_board

ACTION = "openEHR-EHR-ACTION.care_plan.v0"
ISM = "https://conflictdesk.example.org/fhir/StructureDefinition/openehr-ism-transition"
V2 = "ConflictDesk Oncology Encounter.v2"
# the archetype's careflow steps: at-code -> (text, ISM state, state code), and the CarePlan status each means
STEPS = {"at0003": ("Care plan Need Identified", "planned", "526", "draft"),
         "at0008": ("Care Plan Developed", "planned", "526", "draft"),
         "at0034": ("Care Plan Postponed", "postponed", "527", "on-hold"),
         "at0033": ("Care Plan Cancelled", "cancelled", "528", "revoked"),
         "at0018": ("Care Plan Scheduled", "scheduled", "529", "active"),
         "at0006": ("Care Plan Commenced", "active", "245", "active"),
         "at0020": ("Care Plan Reviewed", "active", "245", "active"),
         "at0035": ("Care Plan Suspended", "suspended", "530", "on-hold"),
         "at0032": ("Care Plan Aborted", "aborted", "531", "revoked"),
         "at0010": ("Care Plan Expired", "aborted", "531", "revoked"),
         "at0013": ("Care Plan Completed", "completed", "532", "completed")}


def step(at: str, time="2026-11-20T09:00:00+01:00", *, details=True, path=f"/content[{PLAN}]") -> dict:
    text, state, code, _ = STEPS[at]
    entry = {"_type": "ACTION", "name": {"_type": "DV_TEXT", "value": "Care Plan"}, "archetype_node_id": ACTION,
             "archetype_details": {"_type": "ARCHETYPED", "archetype_id": {"_type": "ARCHETYPE_ID", "value": ACTION},
                                   "rm_version": "1.0.4"},
             "language": dt.code_phrase("ISO_639-1", "en"), "encoding": dt.code_phrase("IANA_character-sets", "UTF-8"),
             "subject": {"_type": "PARTY_SELF"}, "time": {"_type": "DV_DATE_TIME", "value": time},
             "ism_transition": {"_type": "ISM_TRANSITION", "current_state": dt.coded_text(state, "openehr", code),
                                "careflow_step": dt.coded_text(text, "local", at)},
             "description": {"_type": "ITEM_TREE", "name": {"_type": "DV_TEXT", "value": "Tree"},
                             "archetype_node_id": "at0019", "items": [
                                 {"_type": "ELEMENT", "archetype_node_id": "at0025",
                                  "name": {"_type": "DV_TEXT", "value": "Reason"},
                                  "value": {"_type": "DV_TEXT", "value": "all cycles given"}}]}}
    if details:
        entry["instruction_details"] = {
            "_type": "INSTRUCTION_DETAILS", "activity_id": "activities[at0001]",
            "instruction_id": {"_type": "LOCATABLE_REF", "namespace": "local", "type": "INSTRUCTION", "path": path,
                               "id": {"_type": "HIER_OBJECT_ID", "value": "2988cdf7-487e-4914-b3a1-13245e862888"}}}
    return entry


def ism(plan) -> dict:
    [ext] = [e for e in plan.get("extension", []) if e["url"] == ISM]
    return {x["url"]: x["valueCoding"]["code"] for x in ext["extension"]}


def actions(comp) -> list[dict]:
    return [e for _, e in rmpath.entries(comp) if e["archetype_node_id"] == ACTION]


def said(entry) -> tuple[str, str]:
    t = entry["ism_transition"]
    return t["current_state"]["defining_code"]["code_string"], t["careflow_step"]["defining_code"]["code_string"]


# ------------------------------------------------------------------ openEHR -> FHIR
def test_a_plan_completed_at_the_site_is_a_completed_care_plan_not_a_second_one():
    comp = tumour_board(step("at0013", "2026-11-20T09:00:00+01:00"))
    res = to_fhir(comp, **ARGS)
    [plan] = of(res.resources, "CarePlan")
    assert plan["status"] == "completed"
    assert ism(plan) == {"currentState": "532", "careflowStep": "at0013"}
    assert plan["period"] == {"start": "2025-03-14T10:00:00+01:00", "end": "2026-11-20T09:00:00+01:00"}
    assert validate_fhir(plan) == []
    [loss] = [x for x in res.losses if x.path.startswith(f"/content[{ACTION}]")]
    assert loss.kind == "unmapped-entry" and "CarePlan" in loss.reason


@pytest.mark.parametrize("at", sorted(STEPS))
def test_each_careflow_step_sets_the_status_it_means_and_is_kept_exactly(at):
    [plan] = of(to_fhir(tumour_board(step(at)), **ARGS).resources, "CarePlan")
    assert plan["status"] == STEPS[at][3]
    assert ism(plan) == {"currentState": STEPS[at][2], "careflowStep": at}
    assert ("end" in plan["period"]) == (STEPS[at][2] in ("531", "532"))  # only a plan that ran and ended ends


def test_the_latest_step_wins_whatever_the_order_in_the_composition():
    later, earlier = step("at0035", "2026-11-21T09:00:00+01:00"), step("at0006", "2026-11-01T09:00:00+01:00")
    [plan] = of(to_fhir(tumour_board(later, earlier), **ARGS).resources, "CarePlan")
    assert (plan["status"], ism(plan)["careflowStep"]) == ("on-hold", "at0035")


def test_a_step_without_instruction_details_acts_on_the_only_plan_and_never_guesses_between_two():
    [plan] = of(to_fhir(tumour_board(step("at0013", details=False)), **ARGS).resources, "CarePlan")
    assert plan["status"] == "completed"
    comp = tumour_board(care_plan(name="Second plan"), step("at0013", details=False))
    res = to_fhir(comp, **ARGS)
    assert [p["status"] for p in of(res.resources, "CarePlan")] == ["active", "active"]
    assert any(x.path.endswith("/ism_transition") and "no care plan" in x.reason for x in res.losses)
    # named by its instruction details, the second plan's step sets the second plan only
    comp = tumour_board(care_plan(name="Second plan"), step("at0013", path=f"/content[{PLAN}]:1"))
    assert [(p["title"], p["status"]) for p in of(to_fhir(comp, **ARGS).resources, "CarePlan")] == [
        ("Adjuvant treatment plan", "active"), ("Second plan", "completed")]


def test_a_site_plan_with_its_steps_maps_back_exactly_and_adds_no_step():
    comp = tumour_board(step("at0006", "2026-11-01T09:00:00+01:00"), step("at0013"))
    resources = to_fhir(comp, **ARGS).resources
    back = from_fhir(resources, template_id="t", base_composition=comp)
    assert compare_clinical(comp, back.composition) == []
    assert [x for x in back.losses if x.path.startswith("CarePlan/")] == []


# ------------------------------------------------------------------ FHIR -> openEHR
@pytest.mark.parametrize("status,expected", [("completed", ("532", "at0013")), ("on-hold", ("530", "at0035")),
                                             ("revoked", ("531", "at0032")), ("draft", ("526", "at0008"))])
def test_a_central_status_is_written_as_the_matching_careflow_step(status, expected):
    over = {"status": status, "period": {"start": "2025-03-14", "end": "2026-11-30T12:00:00Z"}}
    out = from_fhir(central_plan(**over), template_id="t")
    [action] = actions(out.composition)
    assert said(action) == expected
    assert action["time"]["value"] == ("2026-11-30T12:00:00Z" if expected[0] in ("531", "532") else
                                       action["time"]["value"])
    assert [x for x in out.losses if x.path.startswith("CarePlan/cp1:status")] == []
    # mapped forward again, the composition gives the centre's status back
    [plan] = of(to_fhir({**out.composition, "uid": {"value": "u::s::1"}}, **ARGS).resources, "CarePlan")
    assert plan["status"] == status


def test_an_active_plan_needs_no_step_and_entered_in_error_has_none():
    assert actions(from_fhir(central_plan(), template_id="t").composition) == []
    out = from_fhir(central_plan(status="entered-in-error"), template_id="t")
    assert actions(out.composition) == []
    assert [x.kind for x in out.losses if x.path == "CarePlan/cp1:status"] == ["dropped"]


def test_a_central_status_change_on_a_site_plan_appends_one_step_and_keeps_the_site_s():
    comp = tumour_board(step("at0006", "2026-11-01T09:00:00+01:00"))
    resources = copy.deepcopy(to_fhir(comp, **ARGS).resources)
    [plan] = of(resources, "CarePlan")
    plan["status"] = "on-hold"  # the ISM extension (245 Commenced) no longer folds to it: the edit wins
    back = from_fhir(resources, template_id="t", base_composition=comp)
    assert [said(a) for a in actions(back.composition)] == [("245", "at0006"), ("530", "at0035")]
    [new] = actions(back.composition)[1:]
    assert new["instruction_details"]["instruction_id"]["path"] == f"/content[{PLAN}]"
    assert new["instruction_details"]["activity_id"] == "activities[at0001]"
    # the same status again (a second sync of the same version) writes no second step
    again = from_fhir(resources, template_id="t", base_composition=back.composition)
    assert len(actions(again.composition)) == 2


def test_the_exact_step_comes_back_while_it_still_folds_to_the_status():
    resources = to_fhir(tumour_board(step("at0010")), **ARGS).resources  # Expired: revoked, not the default Aborted
    stripped = [{k: v for k, v in r.items() if k != "identifier"} for r in resources]
    [action] = actions(from_fhir(stripped, template_id="t").composition)
    assert said(action) == ("531", "at0010")


def test_without_the_site_s_composition_a_site_plan_s_status_is_reported_not_written():
    """The steps stay at the site the plan came from; mapped back with no base (as map_back, which the round-trip
    guard compares with the source less its declared-unmapped ACTIONs) no step is invented, the status is reported."""
    resources = to_fhir(tumour_board(step("at0013")), **ARGS).resources
    out = from_fhir(resources, template_id="t")
    assert actions(out.composition) == []
    [plan] = of(resources, "CarePlan")
    assert [x.kind for x in out.losses if x.path == f"CarePlan/{plan['id']}:status"] == ["dropped"]


def test_a_template_without_the_action_reports_the_status_lost():
    held = frozenset({PLAN, "openEHR-EHR-INSTRUCTION.medication_order.v3", "openEHR-EHR-INSTRUCTION.service_request.v1",
                      "openEHR-EHR-EVALUATION.goal.v1"})
    out = from_fhir(central_plan(status="completed"), template_id="t", archetypes=held)
    assert actions(out.composition) == []
    assert any(x.path == "CarePlan/cp1:status" and "no ACTION.care_plan" in x.reason for x in out.losses)


# ------------------------------------------------------------------ hypothesis
@st.composite
def step_sequences(draw):
    ats = draw(st.lists(st.sampled_from(sorted(STEPS)), min_size=1, max_size=4))
    days = draw(st.lists(st.integers(1, 28), min_size=len(ats), max_size=len(ats), unique=True))
    return [step(at, f"2026-11-{d:02d}T09:00:00+01:00") for at, d in zip(ats, days)]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(step_sequences())
def test_round_trip_property(steps):
    comp = json.loads(ONCOLOGY.read_text(encoding="utf-8"))
    comp["content"] = [care_plan(), goal(), *steps]
    latest = max(steps, key=lambda s: s["time"]["value"])
    at = latest["ism_transition"]["careflow_step"]["defining_code"]["code_string"]
    resources = to_fhir(comp, **ARGS).resources
    [plan] = of(resources, "CarePlan")
    assert (plan["status"], ism(plan)["careflowStep"]) == (STEPS[at][3], at)
    assert validate_fhir(plan) == []
    back = from_fhir(resources, template_id="t", base_composition=comp)
    assert compare_clinical(comp, back.composition) == []
    # the plan as the centre holds it, mapped to a new record: one step, the latest's exactly
    fresh = [{k: v for k, v in r.items() if k != "identifier"} for r in resources]
    made = actions(from_fhir(fresh, template_id="t").composition)
    if (STEPS[at][2], at) == ("245", "at0006"):
        assert [said(a) for a in made] in ([], [("245", "at0006")])
    else:
        assert [said(a) for a in made] == [(STEPS[at][2], at)]


# ------------------------------------------------------------------ HAPI $validate
def _ism_definition(base: str) -> None:
    """Our ISM extension's definition, as tests/integration/test_extensions_hapi.py PUTs it (idempotent): its
    context names CarePlan since this row, which HAPI checks."""
    sd = json.loads((REPO_DIR / "sync/mapping/extensions/openehr-ism-transition.json").read_text(encoding="utf-8"))
    assert {"type": "element", "expression": "CarePlan"} in sd["context"]
    r = httpx.put(f"{base}/StructureDefinition/{sd['id']}", json=sd, timeout=60,
                  headers={"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"})
    assert r.status_code in (200, 201)


@pytest.mark.integration
@pytest.mark.parametrize("at", ["at0013", "at0035", "at0033"])
def test_hapi_validates_the_care_plan_with_its_step(fhir_base_url, at):
    _ism_definition(fhir_base_url)
    [plan] = of(to_fhir(tumour_board(step(at)), **ARGS).resources, "CarePlan")
    assert hapi_errors(fhir_base_url, plan) == []
