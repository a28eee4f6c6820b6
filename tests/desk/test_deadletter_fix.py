"""A dead letter a steward can fix: the offending value (desk only), the rule in plain words, what to do."""
import pytest
from django.core import mail
from django.urls import reverse

from conflictdesk.desk import fixes
from conflictdesk.desk.digest import send_digest
from sync.models import DeadLetter

from . import factories as f

UNITS = {"_type": "DV_QUANTITY", "magnitude": 5.2, "units": "..mol/l"}
PAYLOAD = {"_type": "COMPOSITION", "content": [{"_type": "OBSERVATION", "archetype_node_id": "openEHR-EHR-OBSERVATION.lab.v1",
           "data": {"events": [{"data": {"items": [
               {"_type": "ELEMENT", "archetype_node_id": "at0001", "name": {"value": "Glucose"}, "value": UNITS}]}}]}}]}
PATH = "/content/0/data/events/0/data/items/0/value/units"


@pytest.fixture
def unit_letter(db):
    letter = f.make_dead_letter()
    DeadLetter.objects.filter(pk=letter.pk).update(
        rule="rm.dv_quantity.units.ucum", path=PATH, payload=PAYLOAD,
        error=f"{letter.run.record_key}: DV_QUANTITY units are not a UCUM code and no units_system names another system")
    return DeadLetter.objects.get(pk=letter.pk)


def test_the_steward_sees_the_unit_to_fix_the_rule_in_words_and_what_to_do(login, people, unit_letter):
    body = login(people.steward).get(reverse("desk:deadletter", args=[unit_letter.pk])).content.decode()
    assert 'The value to fix in “Glucose”:</strong> <code class="bad-value">&quot;..mol/l&quot;</code>' in body
    assert "5.2" in body.split("As recorded:")[1][:200]
    assert "The unit is not a UCUM code" in body and "What to do:" in body and "new version" in body


def test_the_auditor_may_see_it_too_and_nobody_else(login, people, unit_letter):
    assert "bad-value" in login(people.auditor).get(reverse("desk:deadletter", args=[unit_letter.pk])).content.decode()
    assert login(people.clinician).get(reverse("desk:deadletter", args=[unit_letter.pk])).status_code == 403


def test_the_value_stays_out_of_the_error_text_and_the_digest(db, settings, unit_letter):
    settings.CONFLICTDESK_STAFF_EMAILS = ["oncall@desk.test"]
    assert "..mol/l" not in unit_letter.error
    send_digest()
    assert "..mol/l" not in mail.outbox[0].body and unit_letter.run.record_key not in mail.outbox[0].body
    assert "1 x site1: Validation" in mail.outbox[0].body


@pytest.mark.parametrize("path, expected", [
    ("/content[openEHR-EHR-OBSERVATION.lab.v1]/data/events[0]/data/items[at0001]/value", UNITS),
    ("/content[0]", PAYLOAD["content"][0]),
    ("/content/7", None),
])
def test_paths_of_every_form_lead_into_the_payload(path, expected):
    trail = fixes.walk(PAYLOAD, path)
    assert (trail[-1] if trail else None) == expected


def test_a_fhir_path_leads_into_a_central_resource():
    resource = {"resourceType": "Observation", "valueQuantity": {"value": "high", "unit": "mmol/L"}}
    assert fixes.walk(resource, "Observation.valueQuantity.value")[-1] == "high"


def test_causes_without_a_known_rule_still_say_what_to_do(db):
    letter = f.make_dead_letter(cause=DeadLetter.Cause.TRANSIENT_EXHAUSTED)
    DeadLetter.objects.filter(pk=letter.pk).update(rule="")
    explanation = fixes.explain(DeadLetter.objects.get(pk=letter.pk))
    assert "7 attempts" in explanation.what and "Re-drive" in explanation.todo
    assert fixes.explain(f.make_dead_letter()).what.startswith("The FHIR resource is not valid")
