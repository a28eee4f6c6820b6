"""The clinical view reads a care plan as produced by the mapping (issue 17): titled by the plan's title,
its description, period, note and the requests and goals it names as rows."""
from conflictdesk.desk.render import resource_rows
from sync.mapping import to_fhir
from tests.mapping.test_careplan_action import step
from tests.mapping.test_oncology_careplan import ARGS, tumour_board


def test_a_care_plan_is_titled_by_its_title_and_lists_its_activities_and_goals():
    resources = {r["resourceType"]: r for r in to_fhir(tumour_board(), **ARGS).resources}
    rows = [(r.depth, r.label, r.value) for r in resource_rows(resources["CarePlan"])]
    assert rows[0] == (0, "CarePlan", "Adjuvant treatment plan")
    assert (1, "description", "4 cycles AC, then whole-breast radiotherapy") in rows
    references = {v for _, label, v in rows if label == "reference"}
    assert f"MedicationRequest/{resources['MedicationRequest']['id']}" in references
    assert f"ServiceRequest/{resources['ServiceRequest']['id']}" in references
    assert (1, "goal", f"Goal/{resources['Goal']['id']}") in rows
    assert not [r for r in rows[1:] if r[1] == "title"]


def test_a_care_plan_completed_at_the_site_shows_its_status_and_the_exact_careflow_step():
    [plan] = [r for r in to_fhir(tumour_board(step("at0010")), **ARGS).resources if r["resourceType"] == "CarePlan"]
    rows = [(r.depth, r.label, r.value) for r in resource_rows(plan)]
    assert (1, "status", "revoked") in rows
    assert (1, "careflow step at the site", "Care Plan Expired") in rows
    [active] = [r for r in to_fhir(tumour_board(), **ARGS).resources if r["resourceType"] == "CarePlan"]
    assert not [r for r in resource_rows(active) if r.label == "careflow step at the site"]
