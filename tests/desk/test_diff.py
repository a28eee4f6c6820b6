"""The field-level diff and the merge it drives, over a real mapped composition."""
from sync.workflow import diff
from sync.mapping import clinical_content
from sync.workflow.content import record_content, resource_key


def test_it_finds_site_central_and_both_changed_fields(conflict):
    comparison = diff.compare(conflict)
    by_element = {(f.key == resource_key(comparison.central_resources[0]), f.element): f for f in comparison.fields}
    first_value = by_element[(True, "valueQuantity")]
    assert first_value.changed_on == "site" and first_value.site["value"] == 38.5
    assert by_element[(True, "status")].changed_on == "central"
    assert by_element[(True, "status")].central == "amended"
    second_value = by_element[(False, "valueQuantity")]
    assert second_value.changed_on == "central" and second_value.central["value"] == 36.9
    assert all(f.changes for f in comparison.fields)


def test_it_merges_field_by_field(conflict):
    comparison = diff.compare(conflict)
    first = resource_key(comparison.central_resources[0])
    choices = {f.id: ("site" if f.key == first and f.element == "valueQuantity" else "central") for f in comparison.fields}
    merged = {resource_key(r): r for r in diff.merged_resources(comparison, choices)}
    assert merged[first]["valueQuantity"]["value"] == 38.5  # from the site
    assert merged[first]["status"] == "amended"  # from the centre
    assert merged[first]["id"] == comparison.central_resources[0]["id"]  # identity kept


def test_keeping_one_side_everywhere_equals_that_side(conflict):
    comparison = diff.compare(conflict)
    all_site = diff.merged_resources(comparison, {f.id: "site" for f in comparison.fields})
    assert record_content(all_site, clinical_content) == comparison.site_record
    all_central = diff.merged_resources(comparison, {f.id: "central" for f in comparison.fields})
    assert record_content(all_central, clinical_content) == comparison.central_record


def test_it_splits_deepdiff_paths():
    assert diff.split_path("root['a|b|/content[x]/e[at1]']['valueQuantity'][0]") == ["a|b|/content[x]/e[at1]", "valueQuantity", 0]


def test_diff_cells_read_like_a_chart():
    from conflictdesk.desk.render import readable

    component = [{"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6", "display": "Systolic blood pressure"}]},
                  "valueQuantity": {"value": 80.0, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}]
    assert readable(component) == "Systolic blood pressure: 80.0 mmHg"
    assert readable({"value": 37.9, "code": "Cel", "system": "http://unitsofmeasure.org"}) == "37.9 °C"
    assert readable(None) == "(absent)" and readable({"profile": ["x"]}) is None
