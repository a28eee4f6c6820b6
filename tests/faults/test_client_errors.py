"""sync.clients sees every injected fault as a TransientError, the one error the engine retries."""

import httpx
import pytest

from sync.clients.errors import TransientError
from sync.clients.fhir import FHIRClient

PATIENT = {"resourceType": "Patient", "active": True}


@pytest.fixture
def fhir(proxy):
    with FHIRClient(proxy.url + "/fhir", timeout=httpx.Timeout(1.0, connect=1.0)) as client:
        yield client


def test_it_passes_reads_and_writes_through(fhir):
    assert fhir.read("Patient", "p1")["id"] == "p1"
    assert fhir.create(PATIENT).id == "p2"


def test_a_503_with_retry_after_is_transient_with_the_hint(proxy, fhir):
    proxy.fail(1, retry_after=2)
    with pytest.raises(TransientError) as caught:
        fhir.read("Patient", "p1")
    assert caught.value.status == 503
    assert caught.value.retry_after_seconds == 2.0
    assert "transient" in str(caught.value)  # the OperationOutcome code, safe to log


def test_a_503_without_retry_after_is_transient_without_a_hint(proxy, fhir):
    proxy.fail(1)
    with pytest.raises(TransientError) as caught:
        fhir.create(PATIENT)
    assert caught.value.status == 503 and caught.value.retry_after_seconds is None


@pytest.mark.parametrize("at", ["accept", "request", "response"])
def test_a_dropped_connection_is_transient(proxy, fhir, at):
    proxy.drop(at=at)
    with pytest.raises(TransientError) as caught:
        fhir.create(PATIENT)
    assert caught.value.status is None
    assert "transport error" in str(caught.value)
    assert fhir.read("Patient", "p1")["id"] == "p1"


@pytest.mark.parametrize("at", ["accept", "request"])
def test_a_half_open_connection_is_a_transient_timeout(proxy, fhir, at):
    proxy.hang(at=at)
    with pytest.raises(TransientError) as caught:
        fhir.read("Patient", "p1")
    assert "timeout (ReadTimeout)" in str(caught.value)


def test_a_server_that_is_down_is_transient_until_it_is_back(proxy, fhir):
    proxy.down(seconds=0.5)
    with pytest.raises(TransientError) as caught:
        fhir.read("Patient", "p1")
    assert "ConnectError" in str(caught.value)
    assert proxy.wait_for(lambda p: not p.is_down, timeout=5)
    assert fhir.read("Patient", "p1")["id"] == "p1"


def test_added_latency_beyond_the_read_timeout_is_a_transient_timeout(proxy, fhir):
    proxy.delay(1500, count=1)
    with pytest.raises(TransientError) as caught:
        fhir.read("Patient", "p1")
    assert "timeout" in str(caught.value)
