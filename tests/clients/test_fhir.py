"""FHIRClient request shapes and response parsing, against a mocked HAPI."""

import json
from datetime import datetime, timedelta, timezone

import httpx
import pytest
import respx

from sync.clients.errors import InvalidRequest
from sync.clients.fhir import FHIRClient

FHIR = "http://fhir.test/fhir"
PATIENT = {"resourceType": "Patient", "id": "p1", "meta": {"versionId": "2"}, "active": True}


@pytest.fixture
def fhir():
    router = respx.Router(base_url=FHIR, assert_all_called=True)
    return FHIRClient(FHIR, transport=httpx.MockTransport(router.handler)), router


def bundle(entries, next_url=None):
    links = [{"relation": "next", "url": next_url}] if next_url else []
    return {"resourceType": "Bundle", "type": "searchset", "link": links, "entry": entries}


def test_it_reads_and_vreads(fhir):
    client, router = fhir
    router.get("/Patient/p1").respond(200, json=PATIENT)
    router.get("/Patient/p1/_history/1").respond(200, json={**PATIENT, "meta": {"versionId": "1"}})
    assert client.read("Patient", "p1")["meta"]["versionId"] == "2"
    assert client.vread("Patient", "p1", "1")["meta"]["versionId"] == "1"


def test_it_sends_a_weak_etag_in_if_match(fhir):
    client, router = fhir
    route = router.put("/Patient/p1").respond(200, json={**PATIENT, "meta": {"versionId": "3"}})
    written = client.update(PATIENT, if_match_version="2")
    request = route.calls.last.request
    assert request.headers["If-Match"] == 'W/"2"'
    assert request.headers["Prefer"] == "return=representation"
    assert request.headers["Content-Type"] == "application/fhir+json"
    assert (written.resource_type, written.id, written.version_id, written.created) == ("Patient", "p1", "3", False)


def test_a_minimal_answer_is_read_from_location_and_etag(fhir):
    client, router = fhir
    router.post("/Patient").respond(
        201, headers={"Location": f"{FHIR}/Patient/42/_history/1", "ETag": 'W/"1"'}
    )
    written = client.create({"resourceType": "Patient"})
    assert (written.id, written.version_id, written.created, written.resource) == ("42", "1", True, None)


def test_conditional_create_sends_if_none_exist_and_reports_a_match(fhir):
    client, router = fhir
    route = router.post("/Patient").respond(200, json=PATIENT)
    written = client.create({"resourceType": "Patient"}, if_none_exist={"identifier": "urn:mrn|123"})
    assert route.calls.last.request.headers["If-None-Exist"] == "identifier=urn%3Amrn%7C123"
    assert written.created is False and written.id == "p1"


def test_conditional_update_puts_to_the_search_url(fhir):
    client, router = fhir
    route = router.put("/Patient", params={"identifier": "urn:mrn|123"}).respond(201, json=PATIENT)
    assert client.conditional_update({"resourceType": "Patient"}, "identifier=urn:mrn|123").created is True
    assert route.called


def test_delete_can_be_guarded_by_version(fhir):
    client, router = fhir
    route = router.delete("/Patient/p1").respond(200, json={"resourceType": "OperationOutcome"})
    client.delete("Patient", "p1", if_match_version="2")
    assert route.calls.last.request.headers["If-Match"] == 'W/"2"'


def test_search_follows_next_links_and_skips_outcomes(fhir):
    client, router = fhir
    first = router.get("/Observation", params={"subject": "Patient/p1"}).respond(
        200,
        json=bundle(
            [
                {"resource": {"resourceType": "Observation", "id": "o1"}, "search": {"mode": "match"}},
                {"resource": {"resourceType": "OperationOutcome"}, "search": {"mode": "outcome"}},
            ],
            next_url=f"{FHIR}?_getpages=abc&_getpagesoffset=1",
        ),
    )
    router.get("", params={"_getpages": "abc", "_getpagesoffset": "1"}).respond(
        200, json=bundle([{"resource": {"resourceType": "Observation", "id": "o2"}}])
    )
    ids = [r["id"] for r in client.search("Observation", {"subject": "Patient/p1"})]
    assert ids == ["o1", "o2"]
    assert first.call_count == 1


def test_transaction_entries_are_parsed(fhir):
    client, router = fhir
    answer = {
        "resourceType": "Bundle",
        "type": "transaction-response",
        "entry": [
            {"response": {"status": "201 Created", "location": "Patient/p9/_history/1", "etag": 'W/"1"'}},
            {"response": {"status": "200 OK", "location": "Observation/o1/_history/4"}},
        ],
    }
    route = router.post("/").respond(200, json=answer)
    tx = client.transaction({"resourceType": "Bundle", "type": "transaction", "entry": []})
    assert [(e.status, e.resource_type, e.id, e.version_id) for e in tx.entries] == [
        (201, "Patient", "p9", "1"),
        (200, "Observation", "o1", "4"),
    ]
    assert tx.entries[0].etag == 'W/"1"'
    assert tx.bundle == answer
    assert json.loads(route.calls.last.request.content)["type"] == "transaction"


def test_a_failed_transaction_raises_with_its_outcome(fhir):
    client, router = fhir
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "processing"}]}
    router.post("/").respond(400, json=outcome)
    with pytest.raises(InvalidRequest) as caught:
        client.transaction({"resourceType": "Bundle", "type": "transaction", "entry": []})
    assert caught.value.detail == outcome


def test_only_transaction_or_batch_bundles_are_posted(fhir):
    client, _ = fhir
    with pytest.raises(ValueError):
        client.transaction({"resourceType": "Bundle", "type": "collection"})


def test_system_history_pages_and_reports_deletes(fhir):
    client, router = fhir
    since = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
    router.get("/_history", params={"_since": "2026-03-01T12:00:00+00:00", "_count": "2"}).respond(
        200,
        json=bundle(
            [
                {
                    "resource": {
                        "resourceType": "Patient",
                        "id": "p1",
                        "meta": {"versionId": "2", "lastUpdated": "2026-03-01T12:00:05Z"},
                    },
                    "request": {"method": "PUT", "url": "Patient/p1"},
                }
            ],
            next_url=f"{FHIR}?_getpages=h1&_getpagesoffset=2",
        ),
    )
    router.get("", params={"_getpages": "h1", "_getpagesoffset": "2"}).respond(
        200,
        json=bundle(
            [
                {
                    "fullUrl": f"{FHIR}/Observation/o1",
                    "request": {"method": "DELETE", "url": "Observation/o1"},
                    "response": {"status": "204", "etag": 'W/"3"', "lastModified": "2026-03-01T12:00:09Z"},
                }
            ]
        ),
    )
    entries = list(client.history(since, page_size=2))
    assert [(e.resource_type, e.id, e.version_id, e.deleted) for e in entries] == [
        ("Patient", "p1", "2", False),
        ("Observation", "o1", "3", True),
    ]
    assert entries[1].resource is None and entries[1].last_updated == "2026-03-01T12:00:09Z"


def test_type_history_runs_once_per_type(fhir):
    client, router = fhir
    patients = router.get("/Patient/_history").respond(200, json=bundle([]))
    observations = router.get("/Observation/_history").respond(200, json=bundle([]))
    since = datetime(2026, 3, 1, tzinfo=timezone.utc)
    assert list(client.history(since, ["Patient", "Observation"])) == []
    assert patients.called and observations.called


def test_history_until_asks_for_the_window_with_at_not_since(fhir):
    """HAPI refuses ``_since`` with ``_at``: a window [since, until) is two ``_at`` bounds, in UTC."""
    client, router = fhir
    route = router.get("/Patient/_history").respond(200, json=bundle([]))
    since = datetime(2026, 3, 1, 13, 0, tzinfo=timezone(timedelta(hours=1)))
    until = datetime(2026, 3, 1, 12, 30, 0, 5, tzinfo=timezone.utc)
    assert list(client.history(since, ["Patient"], until=until, page_size=50)) == []
    query = route.calls.last.request.url.params
    assert query.get_list("_at") == ["ge2026-03-01T12:00:00.000000Z", "lt2026-03-01T12:30:00.000005Z"]
    assert query["_count"] == "50" and "_since" not in query


def test_history_refuses_a_naive_since(fhir):
    client, _ = fhir
    with pytest.raises(ValueError):
        list(client.history(datetime(2026, 3, 1)))


def test_validate_returns_the_outcome_whether_valid_or_not(fhir):
    client, router = fhir
    ok = {"resourceType": "OperationOutcome", "issue": [{"severity": "information", "code": "informational"}]}
    bad = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "structure"}]}
    route = router.post("/Patient/$validate", params={"profile": "http://example.org/p"})
    route.side_effect = [httpx.Response(200, json=ok), httpx.Response(412, json=bad)]
    assert client.validate({"resourceType": "Patient"}, profile="http://example.org/p") == ok
    assert client.validate({"resourceType": "Patient"}, profile="http://example.org/p") == bad


def test_a_conditional_create_matching_several_resources_is_invalid(fhir):
    client, router = fhir
    router.post("/Patient").respond(412, json={"resourceType": "OperationOutcome", "issue": [{"code": "duplicate"}]})
    with pytest.raises(InvalidRequest):
        client.create({"resourceType": "Patient"}, if_none_exist="identifier=urn:mrn|1")
