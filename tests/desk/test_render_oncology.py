"""The clinical view reads the issue-17 rows: a Goal is titled by its description, the ECOG score shows
with its LOINC answer, a referral's due period and a target's detail/due read as words, not keys."""
from conflictdesk.desk.render import resource_rows


def _rows(resource):
    return [(r.depth, r.label, r.value, r.code) for r in resource_rows(resource)]


def test_a_goal_is_titled_by_what_it_is_and_its_targets_read_plainly():
    rows = _rows({"resourceType": "Goal", "id": "g", "lifecycleStatus": "active",
                  "description": {"text": "Complete adjuvant chemotherapy"},
                  "target": [{"measure": {"text": "Body weight"},
                              "detailQuantity": {"value": 70.0, "unit": "kg", "system": "http://unitsofmeasure.org",
                                                 "code": "kg"}, "dueDate": "2025-09-01"}]})
    assert rows[0][:3] == (0, "Goal", "Complete adjuvant chemotherapy")
    assert not [r for r in rows[1:] if r[1] == "description"]
    assert (2, "detail", "70.0 kg", "") in rows and (2, "due", "2025-09-01", "") in rows


def test_a_performance_status_and_a_referral():
    ecog = _rows({"resourceType": "Observation", "id": "o", "code": {"coding": [
        {"system": "http://loinc.org", "code": "89247-1", "display": "ECOG Performance Status score"}]},
        "valueInteger": 1, "interpretation": [{"coding": [{"system": "http://loinc.org", "code": "LA9623-5",
                                                           "display": "Restricted in physically strenuous activity"}]}]})
    assert ecog[0][2] == "ECOG Performance Status score"
    assert (1, "value", "1", "") in ecog
    assert (1, "interpretation", "Restricted in physically strenuous activity", "LOINC LA9623-5") in ecog
    sr = _rows({"resourceType": "ServiceRequest", "id": "s", "code": {"text": "Radiotherapy referral"},
                "occurrencePeriod": {"start": "2025-04-01T09:00:00+02:00", "end": "2025-04-08T09:00:00+02:00"}})
    assert sr[0][2] == "Radiotherapy referral"
    assert (1, "occurrence", "2025-04-01 09:00 (+02:00) – 2025-04-08 09:00 (+02:00)", "") in sr
