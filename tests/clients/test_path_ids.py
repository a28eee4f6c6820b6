"""Finding 8: an id that enters a URL path is checked first, so no text can walk out of its path.

The attack: ``ehr_id="ehr/../../../../management/env"`` reaches EHRbase's
management endpoint with the site's credentials. Every client method that
puts an id into a path refuses such an id before any request is sent.
"""
import httpx
import pytest

from sync.clients.errors import InvalidRequest, NotFound
from sync.clients.fhir import FHIRClient
from sync.clients.openehr import OpenEHRClient

CDR = "http://cdr.test/ehrbase/rest/openehr/v1"
FHIR = "http://fhir.test/fhir"
EHR_ID = "7d44b88c-4199-4bad-97dc-d78268e01398"
UID = "0f3c4a2e-8b1d-4e5f-9a6b-7c8d9e0f1a2b"
EVIL = ["../../../../management/env", "ehr/../../../../management/env", f"{EHR_ID}/../../x", "%2e%2e", "..",
        f"{EHR_ID}?x=1", f"{EHR_ID}#f", "", " " + EHR_ID, "not-a-uuid"]


@pytest.fixture
def sent():
    return []


@pytest.fixture
def cdr(sent):
    def handler(request):
        sent.append(request.url)
        return httpx.Response(404)
    return OpenEHRClient(CDR, transport=httpx.MockTransport(handler))


@pytest.fixture
def fhir(sent):
    def handler(request):
        sent.append(request.url)
        return httpx.Response(404)
    return FHIRClient(FHIR, transport=httpx.MockTransport(handler))


@pytest.mark.parametrize("evil", EVIL)
def test_it_refuses_an_ehr_id_that_is_not_a_uuid(cdr, sent, evil):
    calls = [lambda: cdr.get_ehr(evil), lambda: cdr.get_composition(evil, UID),
             lambda: cdr.revision_history(evil, UID), lambda: cdr.delete_composition(evil, f"{UID}::cdr.test::1"),
             lambda: cdr.create_composition(evil, {"_type": "COMPOSITION"}),
             lambda: cdr.update_composition(evil, f"{UID}::cdr.test::1", {"_type": "COMPOSITION"})]
    for call in calls:
        with pytest.raises(InvalidRequest):
            call()
    assert sent == []


@pytest.mark.parametrize("evil", EVIL + [f"{UID}::../../x::1", f"{UID}::cdr.test::1/../..", f"{UID}::a b::1"])
def test_it_refuses_a_composition_uid_that_is_not_one(cdr, sent, evil):
    for call in (lambda: cdr.get_composition(EHR_ID, evil), lambda: cdr.revision_history(EHR_ID, evil),
                 lambda: cdr.delete_composition(EHR_ID, evil)):
        with pytest.raises(InvalidRequest):
            call()
    assert sent == []


@pytest.mark.parametrize("evil", ["../../metadata", "Patient/../..", "..", "", "p 1", "a" * 65, "x?_format=xml"])
def test_it_refuses_a_fhir_id_that_is_not_one(fhir, sent, evil):
    for call in (lambda: fhir.read("Patient", evil), lambda: fhir.vread("Patient", evil, "1"),
                 lambda: fhir.vread("Patient", "p1", evil), lambda: fhir.delete("Patient", evil),
                 lambda: fhir.read(evil or "x/", "p1")):
        with pytest.raises(InvalidRequest):
            call()
    assert sent == []


def test_it_refuses_a_template_id_that_leaves_its_segment(cdr, sent):
    for evil in ("../../../management/env", "..", "a/b"):
        with pytest.raises(InvalidRequest):
            cdr.web_template(evil)
    assert sent == []


def test_well_formed_ids_still_go_out(cdr, fhir, sent):
    for call in (lambda: cdr.get_composition(EHR_ID, f"{UID}::site1.conflictdesk.local::3"),
                 lambda: cdr.get_composition(EHR_ID, UID), lambda: fhir.read("Patient", "p-100.a"),
                 lambda: cdr.web_template("ConflictDesk Oncology Encounter.v1")):
        with pytest.raises(NotFound):  # the fake server's answer: the request went out
            call()
    assert len(sent) == 4
