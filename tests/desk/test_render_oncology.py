"""The clinical view reads the issue-17 rows: a Goal is titled by its description, the ECOG score shows
with its LOINC answer, a radiotherapy course its mCODE modality and dose, a referral's due period and a target's detail/due read as words, not keys."""
from conflictdesk.desk.render import resource_rows
from sync.mapping.hooks_radiotherapy import DOSE, MOD_TECH, MODALITY_EXT, SESSIONS


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


def test_a_radiotherapy_course_reads_its_modality_and_dose():
    rows = _rows({"resourceType": "Procedure", "id": "p", "code": {"text": "Radiotherapy course of treatment"},
                  "extension": [
                      {"url": MOD_TECH, "extension": [{"url": MODALITY_EXT, "valueCodeableConcept": {"coding": [
                          {"system": "http://snomed.info/sct", "code": "1156506007",
                           "display": "External beam radiation therapy using photons (procedure)"}]}}]},
                      {"url": SESSIONS, "valueUnsignedInt": 25},
                      {"url": DOSE, "extension": [
                          {"url": "volume", "valueReference": {"display": "Left breast"}},
                          {"url": "totalDoseDelivered", "valueQuantity": {"value": 5000, "unit": "cGy",
                                                                          "system": "http://unitsofmeasure.org",
                                                                          "code": "cGy"}}]}]})
    assert (2, "radiotherapy modality", "External beam radiation therapy using photons (procedure)",
            "SNOMED CT 1156506007") in rows
    assert (1, "radiotherapy sessions", "25", "") in rows
    assert (2, "volume", "Left breast", "") in rows and (2, "totalDoseDelivered", "5000 cGy", "") in rows
