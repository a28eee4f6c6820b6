"""The clinical view reads a persistent list as produced by the mapping (issue 18): titled by the list's name at
the site, its kind (code) and the resources it lists as rows."""
from conflictdesk.desk.render import resource_rows
from sync.mapping import to_fhir
from tests.mapping.test_persistent_lists import ARGS, persistent_list


def test_a_problem_list_is_titled_by_its_name_and_lists_its_conditions():
    c = persistent_list("problem_list.v2")
    c["name"]["value"] = "Oncology problems"
    resources = to_fhir(c, **ARGS).resources
    [lst] = [r for r in resources if r["resourceType"] == "List"]
    rows = [(r.depth, r.label, r.value) for r in resource_rows(lst)]
    assert rows[0] == (0, "List", "Oncology problems")
    conditions = {f"Condition/{r['id']}" for r in resources if r["resourceType"] == "Condition"}
    assert conditions and conditions <= {v for _, label, v in rows if label == "item"}
    assert any("Problem List" in str(v) for _, label, v in rows if label == "code")
