"""OpenEHRClient request shapes and response parsing, against a mocked EHRbase."""

import json

import httpx
import pytest
import respx

from sync.clients.errors import InvalidRequest, NotFound, PreconditionFailed
from sync.clients.openehr import FLAT_JSON, OpenEHRClient, template_id_of

CDR = "http://cdr.test/ehrbase/rest/openehr/v1"
EHR_ID = "7d44b88c-4199-4bad-97dc-d78268e01398"
UID = "8849182c-82ad-4088-a07f-48ead4180515"
V1 = f"{UID}::local.ehrbase.org::1"
V2 = f"{UID}::local.ehrbase.org::2"

EHR_BODY = {
    "system_id": {"value": "local.ehrbase.org"},
    "ehr_id": {"value": EHR_ID},
    "ehr_status": {"id": {"_type": "OBJECT_VERSION_ID", "value": "s1::local.ehrbase.org::1"}, "type": "EHR_STATUS"},
    "time_created": {"value": "2026-01-01T10:00:00.000+00:00"},
}

OPT = b"""<?xml version="1.0" encoding="UTF-8"?>
<template xmlns="http://schemas.openehr.org/v1">
  <template_id><value>KDS_Prozedur</value></template_id>
  <concept>KDS_Prozedur</concept>
</template>"""


@pytest.fixture
def cdr():
    router = respx.Router(base_url=CDR, assert_all_called=True)
    client = OpenEHRClient(CDR, transport=httpx.MockTransport(router.handler))
    return client, router


def test_it_creates_an_ehr_for_a_subject(cdr):
    client, router = cdr
    route = router.post("/ehr").respond(201, json=EHR_BODY, headers={"ETag": f'"{EHR_ID}"'})
    ehr = client.create_ehr(subject_id="pat-1", subject_namespace="site-a")
    assert ehr.ehr_id == EHR_ID
    assert ehr.ehr_status_version_uid == "s1::local.ehrbase.org::1"
    request = route.calls.last.request
    assert request.headers["Prefer"] == "return=representation"
    ref = json.loads(request.content)["subject"]["external_ref"]
    assert ref["id"]["value"] == "pat-1" and ref["namespace"] == "site-a"


def test_it_creates_an_ehr_with_our_id_by_put(cdr):
    client, router = cdr
    route = router.put(f"/ehr/{EHR_ID}").respond(201, json=EHR_BODY)
    assert client.create_ehr(ehr_id=EHR_ID).ehr_id == EHR_ID
    assert route.calls.last.request.content == b""


def test_it_finds_an_ehr_by_subject_or_none(cdr):
    client, router = cdr
    route = router.get("/ehr", params={"subject_id": "pat-1", "subject_namespace": "site-a"})
    route.side_effect = [httpx.Response(200, json=EHR_BODY), httpx.Response(404, json={"error": "Not Found"})]
    assert client.find_ehr("pat-1", "site-a").ehr_id == EHR_ID
    assert client.find_ehr("pat-1", "site-a") is None


def test_it_uploads_a_template_and_tolerates_a_duplicate(cdr):
    client, router = cdr
    route = router.post("/definition/template/adl1.4")
    route.side_effect = [
        httpx.Response(201, headers={"ETag": '"KDS_Prozedur"'}),
        httpx.Response(409, json={"error": "Conflict", "message": "Operational template already exists"}),
    ]
    first, second = client.upload_template(OPT), client.upload_template(OPT)
    assert (first.template_id, first.created) == ("KDS_Prozedur", True)
    assert (second.template_id, second.created) == ("KDS_Prozedur", False)
    assert route.calls[0].request.headers["Content-Type"] == "application/xml"


def test_template_id_is_read_from_the_opt():
    assert template_id_of(OPT.decode()) == "KDS_Prozedur"
    with pytest.raises(ValueError):
        template_id_of(b'<template xmlns="http://schemas.openehr.org/v1"/>')


def test_it_lists_templates_and_fetches_a_web_template(cdr):
    client, router = cdr
    router.get("/definition/template/adl1.4").respond(
        200,
        json=[{"template_id": "KDS_Prozedur", "concept": "KDS_Prozedur", "archetype_id": "openEHR-EHR-COMPOSITION.v1"}],
    )
    wt = router.get("/definition/template/adl1.4/KDS_Prozedur").respond(200, json={"templateId": "KDS_Prozedur"})
    assert [t.template_id for t in client.list_templates()] == ["KDS_Prozedur"]
    assert client.web_template("KDS_Prozedur") == {"templateId": "KDS_Prozedur"}
    assert wt.calls.last.request.headers["Accept"] == "application/openehr.wt+json"


def test_it_commits_a_flat_composition_with_its_template(cdr):
    client, router = cdr
    route = router.post(f"/ehr/{EHR_ID}/composition", params={"templateId": "KDS_Prozedur"}).respond(
        201, headers={"ETag": f'"{V1}"', "Location": f"{CDR}/ehr/{EHR_ID}/composition/{V1}"}
    )
    ref = client.create_composition(EHR_ID, {"kds_prozedur/language|code": "de"}, template_id="KDS_Prozedur")
    assert (ref.uid, ref.version_uid, ref.version, ref.ehr_id) == (UID, V1, 1, EHR_ID)
    assert route.calls.last.request.headers["Content-Type"] == FLAT_JSON


def test_it_falls_back_to_location_when_etag_is_missing(cdr):
    client, router = cdr
    router.post(f"/ehr/{EHR_ID}/composition").respond(204, headers={"Location": f"{CDR}/ehr/{EHR_ID}/composition/{V1}"})
    ref = client.create_composition(EHR_ID, {"_type": "COMPOSITION"})
    assert ref.version_uid == V1 and ref.etag is None


def test_it_sends_the_bare_version_uid_in_if_match(cdr):
    client, router = cdr
    route = router.put(f"/ehr/{EHR_ID}/composition/{UID}").respond(200, headers={"ETag": f'"{V2}"'})
    ref = client.update_composition(EHR_ID, V1, {"_type": "COMPOSITION"})
    assert route.calls.last.request.headers["If-Match"] == V1
    assert route.calls.last.request.headers["Content-Type"] == "application/json"
    assert ref.version == 2


def test_a_stale_delete_is_a_precondition_failure(cdr):
    client, router = cdr
    router.delete(f"/ehr/{EHR_ID}/composition/{V1}").respond(409, headers={"ETag": f'"{V2}"'})
    with pytest.raises(PreconditionFailed):
        client.delete_composition(EHR_ID, V1)


def test_delete_returns_the_deletion_version(cdr):
    client, router = cdr
    router.delete(f"/ehr/{EHR_ID}/composition/{V2}").respond(204, headers={"ETag": f'"{UID}::local.ehrbase.org::3"'})
    assert client.delete_composition(EHR_ID, V2) == f"{UID}::local.ehrbase.org::3"


def test_it_reads_a_flat_composition_and_its_version(cdr):
    client, router = cdr
    route = router.get(f"/ehr/{EHR_ID}/composition/{UID}").respond(
        200, json={"kds_prozedur/_uid": V2, "kds_prozedur/language|code": "de"}
    )
    stored = client.get_composition(EHR_ID, UID, flat=True)
    assert route.calls.last.request.headers["Accept"] == FLAT_JSON
    assert stored.ref.version_uid == V2
    assert stored.content["kds_prozedur/language|code"] == "de"


def test_it_reads_a_canonical_version_by_etag(cdr):
    client, router = cdr
    router.get(f"/ehr/{EHR_ID}/composition/{V1}").respond(
        200, json={"_type": "COMPOSITION", "uid": {"value": V1}}, headers={"ETag": f'"{V1}"'}
    )
    assert client.get_composition(EHR_ID, V1).ref.version_uid == V1


def test_a_deleted_composition_is_not_found(cdr):
    client, router = cdr
    router.get(f"/ehr/{EHR_ID}/composition/{UID}").respond(204)
    with pytest.raises(NotFound):
        client.get_composition(EHR_ID, UID)


def revision(version_uid, at, change_type):
    audit = {"time_committed": {"value": at}, "change_type": {"value": change_type}}
    return {"version_id": {"value": version_uid}, "audits": [audit]}


def test_it_reads_the_revision_history(cdr):
    client, router = cdr
    router.get(f"/ehr/{EHR_ID}/versioned_composition/{UID}/revision_history").respond(
        200,
        json=[revision(V1, "2026-01-01T10:00:00Z", "creation"), revision(V2, "2026-01-01T11:00:00Z", "deleted")],
    )
    history = client.revision_history(EHR_ID, UID)
    assert [(r.version_uid, r.change_type) for r in history] == [(V1, "creation"), (V2, "deleted")]


def test_aql_rows_become_dicts_keyed_by_column_name(cdr):
    client, router = cdr
    route = router.post("/query/aql").respond(
        200,
        json={
            "q": "...",
            "columns": [{"name": "ehr_id", "path": "/ehr_id/value"}, {"path": "c/uid/value"}],
            "rows": [[EHR_ID, V1], [EHR_ID, V2]],
        },
    )
    rows = client.query("SELECT ...", {"since": "2026-01-01T00:00:00Z"}, offset=10, fetch=2)
    assert rows == [{"ehr_id": EHR_ID, "c/uid/value": V1}, {"ehr_id": EHR_ID, "c/uid/value": V2}]
    sent = json.loads(route.calls.last.request.content)
    assert sent == {"q": "SELECT ...", "query_parameters": {"since": "2026-01-01T00:00:00Z"}, "offset": 10, "fetch": 2}


def test_a_412_on_create_is_an_invalid_request_not_a_stale_version(cdr):
    client, router = cdr
    body = {"error": "Precondition Failed", "message": "Mismatch of creating_system_id"}
    router.post(f"/ehr/{EHR_ID}/composition").respond(412, json=body)
    with pytest.raises(InvalidRequest) as caught:
        client.create_composition(EHR_ID, {"_type": "COMPOSITION", "uid": {"value": "x::other.system::1"}})
    assert caught.value.status == 412
