"""Demographics from a site's own FHIR Patient endpoint: the EHR_STATUS names the MRN, the site's
demographic service answers who that is, and the central registration is written from it."""
from types import SimpleNamespace

import httpx
import pytest

from sync.clients.fhir import FHIRClient
from sync.patients import fhir_source
from sync.patients.registration import registration

SERVICE = "http://mpi.site2.test/fhir"
MRN_SYSTEM = "https://site2.example/mrn"


class SiteCDR:
    """The site's CDR: only its EHR_STATUS is read."""

    class http:
        @staticmethod
        def request(method, path, **kwargs):
            return SimpleNamespace(json=lambda: {"_type": "EHR_STATUS", "uid": {"value": "s::ehrbase::1"},
                                                 "subject": {"external_ref": {"id": {"value": "B-77"},
                                                                              "namespace": "site2-local"}}})


class Central:
    def __init__(self):
        self.written = []

    def conditional_update(self, resource, criteria):
        self.written.append((resource, criteria))
        return SimpleNamespace(id="central-1")


def _service(patients):
    def answer(request):
        assert request.url.params["identifier"] == f"{MRN_SYSTEM}|B-77"
        return httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset",
                                         "entry": [{"resource": p} for p in patients]})
    return FHIRClient(SERVICE, transport=httpx.MockTransport(answer))


def _site(**kw):
    return SimpleNamespace(**{"name": "site2", "demographics_source": "fhir", "mrn_system": MRN_SYSTEM,
                              "demographics_fields": {}, "demographics_url": SERVICE,
                              "demographics_credentials_ref": "", **kw})


def test_the_central_registration_is_written_from_the_sites_demographic_service(monkeypatch):
    monkeypatch.setattr(fhir_source, "client_for", lambda site: _service([{
        "resourceType": "Patient", "id": "77", "meta": {"versionId": "3", "lastUpdated": "2026-12-01T10:00:00Z"},
        "name": [{"family": "Meier", "given": ["Thomas"]}], "birthDate": "1970-01-01", "gender": "male",
        "address": [{"postalCode": "3000"}]}]))
    central = Central()
    found = registration(central, SiteCDR(), _site(), "7d44b88c-4199-4bad-97dc-d78268e01398")
    [(patient, criteria)] = central.written
    assert criteria == {"identifier": f"{MRN_SYSTEM}|B-77"} and found["fhir_patient_id"] == "central-1"
    assert (patient["name"][0]["family"], patient["birthDate"], patient["gender"]) == ("Meier", "1970-01-01", "male")
    assert found["cache"]["family_name"] == "Meier" and found["cache"]["demographics_version"].startswith("fhir:77/")
    # the same service version again: nothing is sent to the centre
    again = registration(central, SiteCDR(), _site(), "7d44b88c-4199-4bad-97dc-d78268e01398",
                         known_version=found["cache"]["demographics_version"])
    assert again["written"] is False and len(central.written) == 1


def test_an_mrn_the_service_does_not_know_is_a_registration_without_demographics(monkeypatch):
    monkeypatch.setattr(fhir_source, "client_for", lambda site: _service([]))
    central = Central()
    registration(central, SiteCDR(), _site(), "7d44b88c-4199-4bad-97dc-d78268e01398")
    [(patient, _)] = central.written
    assert set(patient) == {"resourceType", "active", "identifier"}  # MDM leaves it alone


def test_a_service_off_the_allow_list_or_with_foreign_credentials_is_refused(settings, monkeypatch):
    settings.CONFLICTDESK_SITE_URL_ALLOWLIST = ["http://*.test"]
    monkeypatch.setenv("DATABASE_PASSWORD_OF_SOMETHING", "u:p")
    with fhir_source.client_for(_site()):  # on the list, no credentials: fine
        pass
    with pytest.raises(fhir_source.DemographicsConfigError):
        fhir_source.client_for(_site(demographics_url="http://elsewhere.example.com/fhir"))
    with pytest.raises(fhir_source.DemographicsConfigError):
        fhir_source.client_for(_site(demographics_credentials_ref="DATABASE_PASSWORD_OF_SOMETHING"))


@pytest.mark.django_db
def test_a_site_row_cannot_point_its_demographic_service_off_the_allow_list(settings):
    from sync.actions import SiteRefused, do_create_site

    settings.CONFLICTDESK_SITE_URL_ALLOWLIST = ["http://*.test"]
    base = {"name": "site8", "openehr_base_url": "http://site8.test/v1", "demographics_source": "fhir"}
    with pytest.raises(SiteRefused.Invalid) as refused:
        do_create_site({**base, "demographics_url": "http://elsewhere.example.com/fhir"}, acting_user=None)
    assert refused.value.field == "demographics_url"
    with pytest.raises(SiteRefused.Invalid) as refused:
        do_create_site({**base, "demographics_url": SERVICE, "demographics_credentials_ref": "HOME"}, acting_user=None)
    assert refused.value.field == "demographics_credentials_ref"
    assert do_create_site({**base, "demographics_url": SERVICE}, acting_user=None).demographics_url == SERVICE
