"""Error mapping of the shared request wrapper, exercised through both clients."""

from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import httpx
import pytest
import respx

from sync.clients.errors import InvalidRequest, NotFound, PreconditionFailed, TransientError
from sync.clients.fhir import FHIRClient
from sync.clients.http import retry_after
from sync.clients.openehr import OpenEHRClient

FHIR = "http://fhir.test/fhir"
CDR = "http://cdr.test/ehrbase/rest/openehr/v1"
EHR_ID = "7d44b88c-4199-4bad-97dc-d78268e01398"

OUTCOME = {
    "resourceType": "OperationOutcome",
    "issue": [
        {
            "severity": "error",
            "code": "processing",
            "diagnostics": "HAPI-0450: Failed to parse: family name 'Doe'",
        }
    ],
}


def fhir_with(*responses):
    router = respx.Router(base_url=FHIR, assert_all_called=False)
    router.route().mock(side_effect=list(responses))
    return FHIRClient(FHIR, transport=httpx.MockTransport(router.handler))


def cdr_with(*responses):
    router = respx.Router(base_url=CDR, assert_all_called=False)
    router.route().mock(side_effect=list(responses))
    return OpenEHRClient(CDR, transport=httpx.MockTransport(router.handler))


def test_it_maps_timeout_to_transient():
    client = fhir_with(httpx.ReadTimeout("slow"))
    with pytest.raises(TransientError) as caught:
        client.read("Patient", "p1")
    assert caught.value.status is None
    assert "timeout" in str(caught.value)
    assert caught.value.retry_after_seconds is None


def test_it_maps_refused_connection_to_transient():
    client = cdr_with(httpx.ConnectError("refused"))
    with pytest.raises(TransientError) as caught:
        client.get_ehr(EHR_ID)
    assert "ConnectError" in str(caught.value)


def test_it_maps_other_transport_errors_to_transient():
    client = fhir_with(httpx.RemoteProtocolError("peer closed"))
    with pytest.raises(TransientError):
        client.read("Patient", "p1")


def test_it_reads_retry_after_seconds_on_429():
    client = fhir_with(httpx.Response(429, headers={"Retry-After": "7"}))
    with pytest.raises(TransientError) as caught:
        client.read("Patient", "p1")
    assert caught.value.status == 429
    assert caught.value.retry_after_seconds == 7.0


def test_it_reads_retry_after_http_date_on_429():
    later = datetime.now(timezone.utc) + timedelta(seconds=120)
    client = fhir_with(httpx.Response(429, headers={"Retry-After": format_datetime(later, usegmt=True)}))
    with pytest.raises(TransientError) as caught:
        client.read("Patient", "p1")
    assert 100 < caught.value.retry_after_seconds <= 120


def test_retry_after_in_the_past_is_zero_and_garbage_is_ignored():
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    past = httpx.Response(503, headers={"Retry-After": "Wed, 31 Dec 2025 23:59:00 GMT"})
    garbage = httpx.Response(503, headers={"Retry-After": "soon"})
    assert retry_after(past, now=now) == 0.0
    assert retry_after(garbage, now=now) is None


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_it_maps_5xx_to_transient(status):
    client = cdr_with(httpx.Response(status, headers={"Retry-After": "3"}))
    with pytest.raises(TransientError) as caught:
        client.get_ehr(EHR_ID)
    assert caught.value.status == status
    assert caught.value.retry_after_seconds == 3.0


def test_it_maps_hapi_409_version_conflict_to_precondition_failed():
    conflict = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "conflict", "diagnostics": "HAPI-0989: ... not the current version"}],
    }
    client = fhir_with(httpx.Response(409, json=conflict))
    with pytest.raises(PreconditionFailed) as caught:
        client.update({"resourceType": "Patient", "id": "p1"}, if_match_version="1")
    assert caught.value.status == 409
    assert caught.value.detail == conflict
    assert "HAPI-0989" in str(caught.value)


def _bundle(request: dict) -> dict:
    return {"resourceType": "Bundle", "type": "transaction",
            "entry": [{"resource": {"resourceType": "CarePlan"}, "request": request}]}


@pytest.mark.parametrize("request_,error", [
    ({"method": "PUT", "url": "CarePlan/c1", "ifMatch": 'W/"2"'}, PreconditionFailed),  # stale: re-check
    ({"method": "POST", "url": "CarePlan", "ifNoneExist": "identifier=s|k"}, InvalidRequest),  # refused URL
])
def test_a_transaction_412_is_stale_only_when_an_entry_quoted_a_version(request_, error):
    refused = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "processing",
                                                               "diagnostics": "HAPI-0539: Invalid conditional URL"}]}
    client = fhir_with(httpx.Response(412, json=refused))
    with pytest.raises(error) as caught:
        client.transaction(_bundle(request_))
    assert caught.value.status == 412


def test_a_transaction_409_without_versions_is_still_stale():
    """Two conditional creates of one identifier at once: HAPI's constraint answers 409; a re-check finds it."""
    client = fhir_with(httpx.Response(409, json={"resourceType": "OperationOutcome", "issue": []}))
    with pytest.raises(PreconditionFailed):
        client.transaction(_bundle({"method": "POST", "url": "CarePlan", "ifNoneExist": "identifier=s|k"}))


def test_it_maps_ehrbase_412_to_precondition_failed():
    body = {"error": "Precondition Failed", "message": "If-Match version_uid does not match latest version"}
    client = cdr_with(httpx.Response(412, json=body))
    with pytest.raises(PreconditionFailed) as caught:
        client.update_composition(EHR_ID, "0f3c4a2e-8b1d-4e5f-9a6b-7c8d9e0f1a2b::local.ehrbase.org::1", {"_type": "COMPOSITION"})
    assert caught.value.detail == body


def test_ehrbase_409_on_create_is_not_stale():
    client = cdr_with(httpx.Response(409, json={"error": "Conflict", "message": "EHR already exists"}))
    with pytest.raises(InvalidRequest) as caught:
        client.create_ehr(ehr_id=EHR_ID)
    assert caught.value.status == 409


def test_it_keeps_the_operation_outcome_of_a_400_out_of_the_message():
    client = fhir_with(httpx.Response(400, json=OUTCOME))
    with pytest.raises(InvalidRequest) as caught:
        client.create({"resourceType": "Patient", "name": [{"family": "Doe"}]})
    error = caught.value
    assert error.detail == OUTCOME
    assert error.status == 400
    assert str(error) == "POST /fhir/Patient: status 400 [processing, HAPI-0450]"
    assert "Doe" not in str(error)


def test_it_keeps_a_plain_text_error_body_whole():
    client = cdr_with(httpx.Response(400, text="Could not parse composition"))
    with pytest.raises(InvalidRequest) as caught:
        client.get_ehr(EHR_ID)
    assert caught.value.detail == "Could not parse composition"


@pytest.mark.parametrize("status", [404, 410])
def test_it_maps_404_and_410_to_not_found(status):
    client = fhir_with(httpx.Response(status, json=OUTCOME))
    with pytest.raises(NotFound) as caught:
        client.read("Patient", "p1")
    assert caught.value.path == "/fhir/Patient/p1"


def test_it_masks_query_values_in_the_error_path():
    client = cdr_with(httpx.Response(400, json={"error": "Bad Request"}))
    with pytest.raises(InvalidRequest) as caught:
        client.query("SELECT 1", offset=0)
    assert caught.value.path == "/ehrbase/rest/openehr/v1/query/aql"
    fhir = fhir_with(httpx.Response(400, json=OUTCOME))
    with pytest.raises(InvalidRequest) as caught:
        fhir.conditional_update({"resourceType": "Patient"}, {"identifier": "urn:mrn|12345"})
    assert caught.value.path == "/fhir/Patient?identifier=..."
    assert "12345" not in str(caught.value)
