"""What nothing claims says what a site's template would need (issue 21: 'declared losses ... say which node
would be needed').  A grouper names the SECTION its grouping needs; a known concept without an archetype
element (codemaps/unhomed.yml) names the element; anything else is left for a person without a guess."""
import copy

import pytest

from sync.mapping import from_fhir, unclaimed

from .conftest import corpus_files, load

PANEL = "observation_vitals_panel.json"
STATUS = "mcode_cancer_disease_status.json"


def _corpus(name: str) -> dict:
    return load(next(iter(corpus_files(f"fhir/{name}"))))


def _loss(resource: dict):
    out = from_fhir([resource, _corpus("observation_vitals_heart_rate.json")], template_id="t")
    return next(x for x in out.losses if x.path == f"Observation/{resource['id']}")


def test_a_panel_is_a_grouper_and_its_loss_names_the_section_it_needs():
    panel = _corpus(PANEL)
    assert unclaimed.is_grouper(panel)
    loss = _loss(panel)
    assert loss.kind == "unmapped-resource"
    assert unclaimed.SECTION in loss.reason and "4 members" in loss.reason


@pytest.mark.parametrize("extra", [{"valueQuantity": {"value": 1}}, {"component": [{"code": {"text": "x"}}]},
                                   {"dataAbsentReason": {"text": "not asked"}}])
def test_an_observation_with_a_value_or_components_is_no_grouper(extra):
    panel = {**_corpus(PANEL), **extra}
    assert not unclaimed.is_grouper(panel)
    assert unclaimed.needs(panel) is None
    assert _loss(panel).reason == unclaimed.LEFT


def test_cancer_disease_status_is_known_by_code_and_by_profile_alone():
    status = _corpus(STATUS)
    by_code = unclaimed.needs(status)
    assert by_code and "disease status" in by_code
    assert _loss(status).reason == f"{unclaimed.LEFT}; {by_code}"
    recoded = copy.deepcopy(status)
    recoded["code"] = {"coding": [{"system": "http://example.org/local", "code": "trend"}]}
    assert unclaimed.needs(recoded) == by_code  # the mCODE profile says what it is
    del recoded["meta"]
    assert unclaimed.needs(recoded) is None  # neither: no guess


def test_every_profile_of_the_table_points_at_a_code_row():
    table = unclaimed._unhomed()
    assert table["profiles"] and set(table["profiles"].values()) <= set(table["codes"])
    assert all({"concept", "needs"} <= set(row) for row in table["codes"].values())


@pytest.mark.parametrize("with_report", [False, True])
def test_a_lab_result_whose_value_form_no_row_reads_is_declared_unread_alone_or_in_its_report(with_report):
    """A haemoglobin sent as a Period: the analyte holds quantities, codes and text, not this; the site's analyte
    has no result value, so the loss is said (the feeder audit still gives the Period back), never round-tripped."""
    patient = {"reference": "Patient/1"}
    obs = {"resourceType": "Observation", "id": "hb", "status": "final", "subject": patient,
           "effectiveDateTime": "2025-01-01T10:00:00Z",
           "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                     "code": "laboratory"}]}],
           "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]}, "valuePeriod": {"start": "2025-01-01"}}
    report = {"resourceType": "DiagnosticReport", "id": "r", "status": "final", "subject": patient,
              "effectiveDateTime": "2025-01-01T10:00:00Z", "result": [{"reference": "Observation/hb"}],
              "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2"}]}}
    out = from_fhir([report, obs] if with_report else [obs], template_id="t")
    assert [(x.path, x.kind) for x in out.losses] == [("Observation/hb:valuePeriod", "unread")]
    quantity = {**obs, "valueQuantity": {"value": 13.2, "unit": "g/dL", "system": "http://unitsofmeasure.org",
                                         "code": "g/dL"}}
    del quantity["valuePeriod"]
    assert from_fhir([report, quantity] if with_report else [quantity], template_id="t").losses == []
