"""The engine refuses a DV_QUANTITY whose units are not UCUM (and no units_system says otherwise)."""
import json

import pytest

from sync.workflow.payload import check_rm
from sync.workflow.result import ValidationFailed
from tests.fixtures import CORPUS_DIR

CORPUS = CORPUS_DIR


def _composition(**quantity) -> dict:
    element = {"_type": "ELEMENT", "archetype_node_id": "at0078.2", "name": {"_type": "DV_TEXT", "value": "Result"},
               "value": {"_type": "DV_QUANTITY", "magnitude": 5.2, **quantity}}
    return {"_type": "COMPOSITION", "archetype_node_id": "openEHR-EHR-COMPOSITION.report.v1",
            "name": {"_type": "DV_TEXT", "value": "r"}, "content": [element]}


@pytest.mark.parametrize("quantity", [{"units": "mmol/L"}, {"units": "mm[Hg]"}, {"units": "mmHg"}, {"units": "°C"},
                                      {"units": "{beats}/min"}, {"units": "pill", "units_system": "local"}])
def test_ucum_units_and_units_of_a_named_system_pass(quantity):
    check_rm(_composition(**quantity))


@pytest.mark.parametrize("units", ["..mol/l", "g /  dL", "degrees celsius per fortnight", "mm[Hg"])
def test_other_units_fail_naming_the_rule_and_the_node(units):
    with pytest.raises(ValidationFailed) as caught:
        check_rm(_composition(units=units))
    assert caught.value.rule == "rm.dv_quantity.units.ucum"
    assert caught.value.path == "/content/0/value/units"
    assert units not in str(caught.value)  # the message names the rule, never the value


def test_the_corpus_lab_report_with_a_lost_micro_sign_is_refused():
    doc = json.loads((CORPUS / "openehr/compositions/lab_laborbefund.composition.json").read_text(encoding="utf-8-sig"))
    with pytest.raises(ValidationFailed) as caught:
        check_rm(doc)
    assert caught.value.rule == "rm.dv_quantity.units.ucum" and caught.value.path.endswith("/units")
