"""The clinical view reads a Consent made from ACTION.informed_consent.v0 (issue 18): it has no code, so it is
titled by the careflow step the site recorded (our openehr-ism-transition extension), else by its category; the
elements R4 requires that the archetype holds no value for read 'not recorded', not as empty rows."""
import copy

from conflictdesk.desk.render import resource_rows
from sync.mapping import to_fhir
from tests.mapping import test_informed_consent as consent_rows

ARGS = dict(site="s", ehr_id="e", patient_ref="Patient/1")


def _rows(resource) -> list[tuple]:
    return [(r.depth, r.label, r.value, r.code) for r in resource_rows(resource)]


def _consent(step):
    [res] = [r for r in to_fhir(consent_rows._composition(consent_rows._consent(step)), **ARGS).resources
             if r["resourceType"] == "Consent"]
    return res


def test_a_consent_is_titled_by_its_careflow_step_and_says_what_was_not_recorded():
    refused = _rows(_consent("at0016"))
    assert refused[0][:3] == (0, "Consent", "Informed consent refused")
    assert (1, "status", "rejected", "") in refused
    assert (1, "scope", "not recorded (unknown)", "") in refused
    assert (1, "policyRule", "not recorded (unknown)", "") in refused
    assert (1, "category", "59284-0", "LOINC 59284-0") in refused


def test_a_central_consent_without_our_extension_is_titled_by_its_category():
    born = copy.deepcopy(consent_rows.BORN)
    born["category"] = [{"coding": [{"system": "http://loinc.org", "code": "59284-0", "display": "Patient Consent"}]}]
    rows = _rows(born)
    assert rows[0][:3] == (0, "Consent", "Patient Consent")
    assert (1, "scope", "treatment", "consentscope treatment") in rows
