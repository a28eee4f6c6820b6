"""sync.clients against the real servers: EHRbase (one per site) and HAPI FHIR.

These pin down the server behaviour the engine relies on: stale versions are
refused (EHRbase 412, HAPI 409), conditional creates are idempotent,
transactions are atomic, and both change feeds see a fresh write. Every test
makes its own EHR, subject and identifiers, so reruns against the same
servers never collide.
"""

import copy
import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from sync.clients.errors import NotFound, PreconditionFailed
from sync.clients.fhir import FHIRClient
from sync.clients.openehr import OpenEHRClient, template_id_of
from tests.fixtures import OPENEHR_CORPUS

pytestmark = pytest.mark.integration

TEST_SYSTEM = "urn:conflictdesk:test:mrn"


def _now() -> datetime:
    return datetime.now(timezone.utc)


# --- openEHR ------------------------------------------------------------------


def _corpus_json(name: str) -> dict:
    return json.loads((OPENEHR_CORPUS / "compositions" / name).read_text())


@pytest.fixture(scope="module")
def procedure_opt() -> bytes:
    return (OPENEHR_CORPUS / "templates" / "kds_procedure.opt").read_bytes()


@pytest.fixture
def cdr(ehrbase_urls):
    with OpenEHRClient(ehrbase_urls[0]) as client:
        yield client


@pytest.fixture
def procedure(cdr, procedure_opt) -> dict:
    """A canonical KDS_Prozedur composition, its template uploaded.

    The canonical corpus file is used because kds_procedure.flat.json does not
    match its OPT (EHRbase: "Could not consume Parts [.../körperstelle:0|...]").
    """
    cdr.upload_template(procedure_opt)
    return _corpus_json("kds_procedure.patient3-3.composition.json")


@pytest.fixture
def vital_signs_template(cdr) -> str:
    """Template of vital_signs_ehrn.flat.json, the FLAT corpus file EHRbase accepts as is."""
    return cdr.upload_template((OPENEHR_CORPUS / "templates" / "vital_signs_ehrn.opt").read_bytes()).template_id


def test_it_uploads_a_template_to_every_site_idempotently(ehrbase_urls, procedure_opt):
    template_id = template_id_of(procedure_opt)
    for url in ehrbase_urls:
        with OpenEHRClient(url) as site:
            site.upload_template(procedure_opt)
            # 409 (kept) or 201 (replaced, with ehrbase.template.allow-overwrite): never an error.
            assert site.upload_template(procedure_opt).template_id == template_id
            assert template_id in {t.template_id for t in site.list_templates()}
            assert site.web_template(template_id)["templateId"] == template_id


def test_it_creates_and_finds_an_ehr_by_subject(cdr):
    subject = f"pat-{uuid.uuid4()}"
    ehr = cdr.create_ehr(subject_id=subject, subject_namespace="conflictdesk-test")
    assert cdr.find_ehr(subject, "conflictdesk-test").ehr_id == ehr.ehr_id
    assert cdr.get_ehr(ehr.ehr_id).ehr_id == ehr.ehr_id
    assert cdr.find_ehr(f"pat-{uuid.uuid4()}", "conflictdesk-test") is None


def test_it_creates_an_ehr_with_our_own_id(cdr):
    ehr_id = str(uuid.uuid4())
    assert cdr.create_ehr(ehr_id=ehr_id).ehr_id == ehr_id


def test_it_updates_a_composition_and_refuses_a_stale_version(cdr, procedure):
    ehr = cdr.create_ehr()
    v1 = cdr.create_composition(ehr.ehr_id, procedure)
    assert v1.version == 1

    edited = copy.deepcopy(procedure)
    edited["context"]["end_time"]["value"] = "2022-07-21T16:00:00"
    v2 = cdr.update_composition(ehr.ehr_id, v1.version_uid, edited)
    assert (v2.uid, v2.version) == (v1.uid, 2)

    with pytest.raises(PreconditionFailed) as caught:
        cdr.update_composition(ehr.ehr_id, v1.version_uid, procedure)
    assert caught.value.status == 412

    latest = cdr.get_composition(ehr.ehr_id, v1.uid)
    assert latest.ref.version_uid == v2.version_uid
    assert latest.content["context"]["end_time"]["value"].startswith("2022-07-21T16:00:00")
    assert cdr.get_composition(ehr.ehr_id, v1.version_uid).ref.version == 1
    assert [r.version_uid for r in cdr.revision_history(ehr.ehr_id, v1.uid)] == [v1.version_uid, v2.version_uid]


def test_it_round_trips_a_flat_composition(cdr, vital_signs_template):
    flat = _corpus_json("vital_signs_ehrn.flat.json")
    ehr = cdr.create_ehr()
    v1 = cdr.create_composition(ehr.ehr_id, flat, template_id=vital_signs_template)
    stored = cdr.get_composition(ehr.ehr_id, v1.uid, flat=True)
    assert stored.ref.version_uid == v1.version_uid
    assert stored.content["ehrn_vital_signs.v2/composer|name"] == flat["ehrn_vital_signs.v2/composer|name"]

    edited = {**flat, "ehrn_vital_signs.v2/composer|name": "ConflictDesk edit"}
    v2 = cdr.update_composition(ehr.ehr_id, v1.version_uid, edited, template_id=vital_signs_template)
    assert v2.version == 2
    with pytest.raises(PreconditionFailed):
        cdr.update_composition(ehr.ehr_id, v1.version_uid, flat, template_id=vital_signs_template)


def test_a_deleted_composition_is_gone_but_stays_in_its_history(cdr, procedure):
    ehr = cdr.create_ehr()
    v1 = cdr.create_composition(ehr.ehr_id, procedure)
    v2 = cdr.update_composition(ehr.ehr_id, v1.version_uid, procedure)
    with pytest.raises(PreconditionFailed):
        cdr.delete_composition(ehr.ehr_id, v1.version_uid)
    cdr.delete_composition(ehr.ehr_id, v2.version_uid)
    with pytest.raises(NotFound):
        cdr.get_composition(ehr.ehr_id, v1.uid)
    assert len(cdr.revision_history(ehr.ehr_id, v1.uid)) == 3


def test_changes_since_sees_a_fresh_commit(cdr, procedure):
    before = _now()
    ehr = cdr.create_ehr()
    ref = cdr.create_composition(ehr.ehr_id, procedure)
    rows = [row for row in cdr.changes_since(before, overlap_seconds=5, page_size=200) if row.ehr_id == ehr.ehr_id]
    assert [(row.version_uid, row.template_id) for row in rows] == [(ref.version_uid, "KDS_Prozedur")]
    assert rows[0].committed_at >= before - timedelta(seconds=5)


def test_aql_rows_are_keyed_by_alias(cdr, procedure):
    ehr = cdr.create_ehr()
    ref = cdr.create_composition(ehr.ehr_id, procedure)
    rows = cdr.query(
        "SELECT c/uid/value AS version_uid FROM EHR e CONTAINS COMPOSITION c WHERE e/ehr_id/value = $ehr_id",
        {"ehr_id": ehr.ehr_id},
    )
    assert rows == [{"version_uid": ref.version_uid}]


# --- FHIR ---------------------------------------------------------------------


@pytest.fixture
def fhir(fhir_base_url):
    with FHIRClient(fhir_base_url) as client:
        yield client


def _patient(mrn: str, family: str = "Test") -> dict:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": TEST_SYSTEM, "value": mrn}],
        "name": [{"family": family}],
    }


def _mrn() -> str:
    return str(uuid.uuid4())


def test_it_updates_with_if_match_and_refuses_a_stale_version(fhir):
    created = fhir.create(_patient(_mrn()))
    assert created.created and created.version_id == "1"
    updated = fhir.update({**created.resource, "active": True}, if_match_version="1")
    assert (updated.id, updated.version_id) == (created.id, "2")
    with pytest.raises(PreconditionFailed) as caught:
        fhir.update({**created.resource, "active": False}, if_match_version="1")
    assert caught.value.status == 409
    assert fhir.read("Patient", created.id)["active"] is True
    assert fhir.vread("Patient", created.id, "1")["meta"]["versionId"] == "1"


def test_several_exact_versions_are_read_in_one_batch_in_the_order_asked(fhir):
    a, b = fhir.create(_patient(_mrn())), fhir.create(_patient(_mrn()))
    fhir.update({**a.resource, "active": True}, if_match_version="1")
    got = fhir.vread_many([("Patient", b.id, "1"), ("Patient", a.id, "2"), ("Patient", a.id, "1")])
    assert [(r["id"], r["meta"]["versionId"]) for r in got] == [(b.id, "1"), (a.id, "2"), (a.id, "1")]
    assert got[1]["active"] is True and "active" not in got[2]
    with pytest.raises(NotFound) as caught:  # one missing version fails the lot, naming it
        fhir.vread_many([("Patient", a.id, "1"), ("Patient", a.id, "9")])
    assert caught.value.path == f"Patient/{a.id}/_history/9"


def test_conditional_create_is_idempotent(fhir):
    mrn = _mrn()
    first = fhir.create(_patient(mrn), if_none_exist={"identifier": f"{TEST_SYSTEM}|{mrn}"})
    second = fhir.create(_patient(mrn), if_none_exist={"identifier": f"{TEST_SYSTEM}|{mrn}"})
    assert (first.created, second.created) == (True, False)
    assert second.id == first.id
    assert [p["id"] for p in fhir.search("Patient", {"identifier": f"{TEST_SYSTEM}|{mrn}"})] == [first.id]


def test_conditional_update_creates_then_updates(fhir):
    mrn = _mrn()
    criteria = {"identifier": f"{TEST_SYSTEM}|{mrn}"}
    first = fhir.conditional_update(_patient(mrn), criteria)
    second = fhir.conditional_update(_patient(mrn, family="Renamed"), criteria)
    assert (first.created, second.id, second.version_id) == (True, first.id, "2")


def test_a_transaction_commits_all_entries(fhir):
    mrn, patient_ref = _mrn(), f"urn:uuid:{uuid.uuid4()}"
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8310-5"}]},
        "subject": {"reference": patient_ref},
        "valueQuantity": {"value": 37.2, "unit": "Cel", "system": "http://unitsofmeasure.org", "code": "Cel"},
    }
    result = fhir.transaction(
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"fullUrl": patient_ref, "resource": _patient(mrn), "request": {"method": "POST", "url": "Patient"}},
                {"resource": observation, "request": {"method": "POST", "url": "Observation"}},
            ],
        }
    )
    assert [(e.status, e.resource_type) for e in result.entries] == [(201, "Patient"), (201, "Observation")]
    stored = fhir.read("Observation", result.entries[1].id)
    assert stored["subject"]["reference"] == f"Patient/{result.entries[0].id}"


def test_a_transaction_with_one_bad_entry_writes_nothing(fhir):
    existing = fhir.update({**fhir.create(_patient(_mrn())).resource, "active": True})
    mrn = _mrn()
    with pytest.raises(PreconditionFailed):
        fhir.transaction(
            {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [
                    {"resource": _patient(mrn), "request": {"method": "POST", "url": "Patient"}},
                    {
                        "resource": {**existing.resource, "active": False},
                        "request": {"method": "PUT", "url": f"Patient/{existing.id}", "ifMatch": 'W/"1"'},
                    },
                ],
            }
        )
    assert list(fhir.search("Patient", {"identifier": f"{TEST_SYSTEM}|{mrn}"})) == []
    assert fhir.read("Patient", existing.id)["active"] is True


def test_history_since_returns_the_change(fhir):
    since = _now() - timedelta(seconds=2)
    created = fhir.create(_patient(_mrn()))
    fhir.delete("Patient", created.id)
    for resource_types in (["Patient"], None):
        ours = [e for e in fhir.history(since, resource_types, page_size=50) if e.id == created.id]
        assert sorted((e.version_id, e.deleted) for e in ours) == [("1", False), ("2", True)]
    with pytest.raises(NotFound):
        fhir.read("Patient", created.id)


def test_validate_returns_an_operation_outcome(fhir):
    good = fhir.validate(_patient(_mrn()))
    assert good["resourceType"] == "OperationOutcome"
    bad = fhir.validate({"resourceType": "Patient", "gender": "not-a-gender"})
    assert bad["resourceType"] == "OperationOutcome"
    assert any(issue["severity"] in ("error", "fatal") for issue in bad["issue"])
