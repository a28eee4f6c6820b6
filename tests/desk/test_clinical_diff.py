"""The clinical diff rows: clinical names, the changed component marked, units, paths aside, who won."""
import copy
from types import SimpleNamespace

from conflictdesk.desk import clinical_diff
from sync.workflow import diff

KEY = "site1|vo|/content[openEHR-EHR-OBSERVATION.blood_pressure.v2]/data[at0001]/events[at0006]"
LOINC = "http://loinc.org"


def _bp(systolic, diastolic, status="final"):
    def component(code, display, value):
        return {"code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
                "valueQuantity": {"value": value, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}
    return {"resourceType": "Observation", "id": "obs-1", "status": status,
            "identifier": [{"system": "urn:conflictdesk:source", "value": KEY}],
            "code": {"coding": [{"system": LOINC, "code": "85354-9", "display": "Blood pressure panel"}]},
            "component": [component("8480-6", "Systolic blood pressure", systolic),
                          component("8462-4", "Diastolic blood pressure", diastolic)]}


def _comparison(site, central, base):
    strip = lambda r: {k: v for k, v in r.items() if k not in ("id", "identifier", "resourceType")}  # noqa: E731
    rec = lambda r: {KEY: strip(r)}  # noqa: E731
    fields = diff.fields_between(rec(site), rec(central), rec(base))
    return diff.Comparison([site], [central], rec(site), rec(central), rec(base), fields)


def test_a_panel_row_is_titled_by_the_changed_component_and_only_that_line_is_marked():
    comparison = _comparison(site=_bp(150, 80), central=_bp(120, 80, status="amended"), base=_bp(120, 80))
    rows = {r.field.element: r for r in clinical_diff.rows(comparison)}
    bp = rows["component"]
    assert bp.title == "Systolic blood pressure"
    assert bp.context == "Observation · Blood pressure panel · entry 1, event 1"
    assert [(line.text, line.changed) for line in bp.site] == [
        ("Systolic blood pressure: 150 mmHg", True), ("Diastolic blood pressure: 80 mmHg", False)]
    assert not any(line.changed for line in bp.central)  # the centre did not touch the panel's values
    assert any("component[0]" in p for p in bp.paths) and bp.paths[0] == KEY  # technical detail, kept aside
    assert rows["status"].title == "Blood pressure panel · status"
    assert [(line.text, line.changed) for line in rows["status"].central] == [("amended", True)]
    assert [(line.text, line.changed) for line in rows["status"].site] == [("final", False)]


def test_a_dosage_row_says_dose():
    order = {"resourceType": "MedicationRequest", "identifier": [{"system": "urn:conflictdesk:source", "value": KEY}],
             "medicationCodeableConcept": {"text": "Cisplatin"},
             "dosageInstruction": [{"doseAndRate": [{"doseQuantity": {"value": 75, "unit": "mg/m2"}}]}]}
    changed = copy.deepcopy(order)
    changed["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] = 60
    row = clinical_diff.rows(_comparison(site=changed, central=order, base=order))[0]
    assert row.title == "Dose" and "Cisplatin" in row.context
    assert row.site[0].text == "60 mg/m2" and row.site[0].changed and not row.central[0].changed


def test_the_resolved_rows_say_which_side_each_field_kept_and_what_was_written():
    site, central, base = _bp(150, 80), _bp(120, 80, status="amended"), _bp(120, 80)
    comparison = _comparison(site, central, base)
    by_element = {f.element: f for f in comparison.fields}
    choices = {by_element["component"].id: "site", by_element["status"].id: "central"}
    merged = diff.merged_resources(comparison, choices)
    record = {KEY: {k: v for k, v in merged[0].items() if k not in ("id", "identifier", "resourceType")}}
    resolution = SimpleNamespace(choice="merge", field_choices=choices, content={"record": record})
    rows = {r.field.element: r for r in clinical_diff.rows(comparison, resolution)}
    assert rows["component"].kept == "site" and rows["status"].kept == "central"
    assert rows["component"].written[0].text == "Systolic blood pressure: 150 mmHg"
    assert rows["status"].written[0].text == "amended"


def test_the_central_column_names_each_resource_and_keeps_ids_aside():
    document = {"resourceType": "Composition", "id": "c-1", "title": "Vital signs", "meta": {"versionId": "3"},
                "section": [{"entry": [{"reference": "Observation/a1d930e8-61a5-5436"}]}]}
    groups = clinical_diff.central_groups([document, _bp(120, 80)])
    assert [(g["kind"], g["name"]) for g in groups] == [("Observation", "Blood pressure panel"), ("Document", "Vital signs")]
    assert groups[1]["ref"] == "Composition/c-1" and groups[1]["version"] == "3"
    shown = " ".join(f"{row.label} {row.value}" for row in groups[1]["rows"])
    assert "a1d930e8" not in shown and "Observation (shown here)" in shown


def test_a_thing_one_side_lacks_reads_as_removed_there_when_the_last_sync_had_it():
    """A site's correction dropped the reading the centre edited: "removed at the site", not "only centrally"
    (issue 20); without it in the base, the other side added it."""
    edited, synced = _bp(120, 80, status="amended"), _bp(118, 80)

    def context(site, central, base):
        f = diff.Field(KEY, None, "", site=site, central=central, base=base)
        return clinical_diff.context(f, edited)

    assert context(None, edited, synced).endswith("removed at the site")
    assert context(None, edited, None).endswith("only centrally")
    assert context(edited, None, synced).endswith("removed centrally")
    assert context(edited, None, None).endswith("only at the site")
