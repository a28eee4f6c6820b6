"""A site's EHR_STATUS -> the demographics of its registration -> the central Patient MDM matches on."""
from sync.patients.demographics import Demographics, from_ehr_status, other_details, to_patient

MARGIT = Demographics(mrn_system="urn:oid:1.2.3.site1.mrn", mrn="1001", family="Johansson",
                      given=("Margit", "Anna"), birth_date="1956-03-14", sex="female", postal_code="8001")


def _status(details, *, mrn="1001", namespace="urn:oid:1.2.3.site1.mrn", uid="e1::ehrbase::2"):
    return {"_type": "EHR_STATUS", "uid": {"value": uid},
            "subject": {"_type": "PARTY_SELF", "external_ref": {"id": {"value": mrn}, "namespace": namespace}},
            "other_details": details}


def test_other_details_round_trip_through_the_ehr_status():
    found = from_ehr_status(_status(other_details(MARGIT)))
    assert found == Demographics(**{**MARGIT.__dict__, "version": "e1::ehrbase::2"})


def test_per_site_element_names_and_the_site_mrn_system_win():
    fields = {"family": "Nachname", "birth_date": "at0099"}
    details = other_details(MARGIT, fields)
    details["items"][2]["archetype_node_id"] = "at0099"  # birth date found by node id too
    found = from_ehr_status(_status(details, namespace="local-ns"), mrn_system="https://site2.example/mrn",
                            fields=fields)
    assert (found.family, found.birth_date, found.mrn_system) == ("Johansson", "1956-03-14", "https://site2.example/mrn")


def test_sex_codes_of_other_systems_become_fhir_gender():
    for code, gender in [("F", "female"), ("248153007", "male"), ("x", "other"), ("zzz", "unknown")]:
        details = other_details(Demographics(mrn_system="s", mrn="1", sex=code))
        assert from_ehr_status(_status(details)).sex == gender


def test_no_subject_no_registration():
    assert from_ehr_status({"_type": "EHR_STATUS", "other_details": other_details(MARGIT)}) is None


def test_the_patient_carries_the_site_mrn_and_what_mdm_matches_on():
    patient = to_patient(MARGIT, [{"system": "urn:conflictdesk:ehr", "value": "site1|e1"}])
    assert patient["identifier"][0]["system"] == MARGIT.mrn_system and patient["identifier"][0]["value"] == "1001"
    assert patient["identifier"][0]["type"]["coding"][0]["code"] == "MR"
    assert patient["name"] == [{"use": "official", "family": "Johansson", "given": ["Margit", "Anna"]}]
    assert (patient["birthDate"], patient["gender"], patient["address"]) == ("1956-03-14", "female", [{"postalCode": "8001"}])


def test_a_registration_without_demographics_gives_mdm_nothing_to_match():
    patient = to_patient(Demographics(mrn_system="s", mrn="1"))
    assert set(patient) == {"resourceType", "active", "identifier"}
