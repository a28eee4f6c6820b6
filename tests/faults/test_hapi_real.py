"""The proxy in front of the real HAPI FHIR: invisible when quiet, and each
fault reaches FHIRClient as a TransientError. A create dropped mid-response
(HAPI stored it, the client never heard) and retried with the same
``If-None-Exist`` finds the first resource instead of making a twin.
"""

import uuid
from urllib.parse import urlsplit

import httpx
import pytest

from faultproxy import FaultProxy
from sync.clients.errors import TransientError
from sync.clients.fhir import FHIRClient

pytestmark = pytest.mark.integration

TEST_SYSTEM = "urn:conflictdesk:test:faultproxy"


@pytest.fixture
def hapi_proxy(fhir_base_url):
    target = urlsplit(fhir_base_url)
    with FaultProxy((target.hostname, target.port), hang_limit=10) as proxy:
        yield proxy


@pytest.fixture
def fhir(hapi_proxy, fhir_base_url):
    with FHIRClient(hapi_proxy.url_for(fhir_base_url)) as client:
        yield client


@pytest.fixture
def impatient(hapi_proxy, fhir_base_url):
    """A client whose read timeout fires quickly, for half-open connections."""
    with FHIRClient(hapi_proxy.url_for(fhir_base_url), timeout=httpx.Timeout(2.0, connect=2.0)) as client:
        yield client


@pytest.fixture
def patient(fhir_base_url):
    """A Patient body with a fresh identifier; whatever the test created with it is deleted afterwards."""
    value = str(uuid.uuid4())
    yield {"resourceType": "Patient", "identifier": [{"system": TEST_SYSTEM, "value": value}], "active": True}
    with FHIRClient(fhir_base_url) as direct:
        for found in direct.search("Patient", {"identifier": f"{TEST_SYSTEM}|{value}"}):
            direct.delete("Patient", found["id"])


def _criteria(patient):
    identifier = patient["identifier"][0]
    return {"identifier": f"{identifier['system']}|{identifier['value']}"}


def _count(fhir, patient):
    return len(list(fhir.search("Patient", _criteria(patient))))


def test_it_passes_hapi_through_on_one_connection(hapi_proxy, fhir, patient):
    capability = fhir.http.request("GET", "metadata").json()
    written = fhir.create(patient)
    assert fhir.read("Patient", written.id)["identifier"] == patient["identifier"]
    assert capability["resourceType"] == "CapabilityStatement"
    seen = hapi_proxy.requests()
    assert [s.outcome for s in seen] == ["passed"] * 3
    assert {s.connection for s in seen} == {1}


def test_an_injected_503_never_reaches_hapi(hapi_proxy, fhir, patient):
    hapi_proxy.fail(1, retry_after=2)
    with pytest.raises(TransientError) as caught:
        fhir.create(patient, if_none_exist=_criteria(patient))
    assert caught.value.status == 503 and caught.value.retry_after_seconds == 2.0
    assert _count(fhir, patient) == 0


def test_a_create_dropped_mid_response_is_not_written_twice_on_retry(hapi_proxy, fhir, patient):
    hapi_proxy.drop(at="response")
    with pytest.raises(TransientError, match="transport error"):
        fhir.create(patient, if_none_exist=_criteria(patient))
    assert _count(fhir, patient) == 1  # HAPI stored it; the client never heard
    retried = fhir.create(patient, if_none_exist=_criteria(patient))
    assert retried.created is False
    assert _count(fhir, patient) == 1
    assert [e.at for e in hapi_proxy.events("drop")] == ["response"]


@pytest.mark.parametrize("at", ["accept", "request"])
def test_a_dropped_connection_is_transient(hapi_proxy, fhir, at):
    hapi_proxy.drop(at=at)
    with pytest.raises(TransientError, match="transport error"):
        fhir.http.request("GET", "metadata")
    assert fhir.http.request("GET", "metadata").json()["resourceType"] == "CapabilityStatement"


def test_a_half_open_hapi_is_a_transient_timeout(hapi_proxy, impatient):
    hapi_proxy.hang(at="request")
    with pytest.raises(TransientError, match="ReadTimeout"):
        impatient.http.request("GET", "metadata")


def test_hapi_down_then_back(hapi_proxy, fhir):
    hapi_proxy.down(seconds=1)
    with pytest.raises(TransientError, match="ConnectError"):
        fhir.http.request("GET", "metadata")
    assert hapi_proxy.wait_for(lambda p: not p.is_down, timeout=10)
    assert fhir.http.request("GET", "metadata").json()["resourceType"] == "CapabilityStatement"
