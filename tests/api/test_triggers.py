"""Manual triggers: one site, one composition, one patient; admin and steward only."""
from types import SimpleNamespace

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from sync import detection
from sync.models import ChangeEvent, PatientLink, SyncRun
from sync.workflow.services import use_services
from tests.desk import factories as f

NEW_UID = "0f3c4a2e-8b1d-4e5f-9a6b-7c8d9e0f1a2b"
OTHER_EHR = "1b2c3d4e-5f60-4718-9a2b-3c4d5e6f7a8b"


@pytest.fixture
def queued(monkeypatch):
    """What the triggers hand to Celery (on commit): task names and arguments."""
    sent = []
    monkeypatch.setattr("sync.workflow.dispatch.send_task", lambda name, args: sent.append((name, args)))
    return sent


def post(client, body):
    return client.post("/api/v1/triggers/", body, format="json")


@pytest.mark.parametrize("role", ["admin", "steward"])
def test_a_site_now(api, people, queued, django_capture_on_commit_callbacks, role):
    site = f.make_site()
    with django_capture_on_commit_callbacks(execute=True):
        response = post(api(getattr(people, role)), {"site": "site1"})
    assert response.status_code == 202 and response.json()["target"] == "site"
    assert queued == [("sync.poll_site", (site.pk,))]
    assert AuditEvent.objects.get(action="api.trigger.site").actor == getattr(people, role).email


def test_one_composition_linked_or_with_its_ehr(api, people, conflict, queued, django_capture_on_commit_callbacks):
    vo_uid = conflict.record_link.versioned_object_uid
    client = api(people.steward)
    with django_capture_on_commit_callbacks(execute=True):
        assert post(client, {"site": "site1", "composition_uid": f"{vo_uid}::ehrbase.org::2"}).status_code == 202
        assert post(client, {"site": "site1", "composition_uid": NEW_UID, "ehr_id": OTHER_EHR}).status_code == 202
    assert queued == [("sync.detect_compositions", (conflict.record_link.site_id, f.EHR_ID, [vo_uid])),
                      ("sync.detect_compositions", (conflict.record_link.site_id, OTHER_EHR, [NEW_UID]))]
    event = AuditEvent.objects.filter(action="api.trigger.composition").earliest("pk")
    assert event.record_key == conflict.run.record_key


def test_one_patient(api, people, conflict, queued, django_capture_on_commit_callbacks):
    link = conflict.record_link.patient_link
    with django_capture_on_commit_callbacks(execute=True):
        assert post(api(people.admin), {"patient_link": link.pk}).status_code == 202
    assert queued == [("sync.detect_compositions", (link.site_id, link.ehr_id, None))]
    assert AuditEvent.objects.get(action="api.trigger.patient").patient_link_id == link.pk


@pytest.mark.parametrize("body,field", [
    ({}, "site"),
    ({"site": "nowhere"}, "site"),
    ({"site": "site1", "composition_uid": NEW_UID}, "ehr_id"),
    ({"site": "site1", "ehr_id": OTHER_EHR}, "composition_uid"),
    ({"patient_link": 999999}, "patient_link"),
    ({"patient_link": "one"}, "patient_link"),
    ({"patient_link": "LINK", "site": "site1"}, "site"),
])
def test_a_bad_trigger_names_the_field(api, people, queued, body, field):
    site = f.make_site()
    if body.get("patient_link") == "LINK":
        body = {**body, "patient_link": PatientLink.objects.create(site=site, ehr_id="e-9", fhir_patient_id="p-9").pk}
    response = post(api(people.admin), body)
    assert response.status_code == 400 and field in response.json(), response.content
    assert queued == []


def test_a_disabled_site_is_refused(api, people, queued):
    f.make_site()
    from sync.models import Site

    Site.objects.filter(name="site1").update(enabled=False)
    assert "disabled" in post(api(people.admin), {"site": "site1"}).json()["site"][0]


class FakeOpenEHR:
    def __init__(self):
        self.versions = {"vo-1": "vo-1::ehrbase.org::3", "vo-2": "vo-2::ehrbase.org::1"}

    def query(self, aql, parameters=None, *, offset=0, fetch=None):
        assert parameters == {"ehr_id": "e-1"} and "ORDER BY" in aql  # paged: an order makes the pages stable
        rows = [{"version_uid": v} for v in sorted(self.versions.values())]
        return rows[offset:offset + fetch]

    def revision_history(self, ehr_id, uid):
        return [SimpleNamespace(version_uid=self.versions[uid], committed_at=timezone.now().isoformat(),
                                change_type="modification")]


def test_the_worker_side_records_changes_through_detection(db, monkeypatch):
    monkeypatch.setattr(detection, "AQL_PAGE_SIZE", 1)  # one row a page: the EHR's compositions come in two pages
    site = f.make_site()
    PatientLink.objects.create(site=site, ehr_id="e-1", fhir_patient_id="p-1")
    fake = FakeOpenEHR()
    monkeypatch.setattr("sync.workflow.dispatch.send", lambda run_id, countdown: None)
    with use_services(SimpleNamespace(openehr=lambda s: fake)):
        assert detection.detect_compositions(site, "e-1", None) == 2
        assert detection.detect_compositions(site, "e-1", ["vo-1"]) == 0  # already detected: nothing new
    assert sorted(ChangeEvent.objects.values_list("source_version", flat=True)) == sorted(fake.versions.values())
    assert SyncRun.objects.filter(site=site, status="pending").count() == 2
    from sync.models import Cursor

    assert Cursor.objects.get(source="site:site1").position is None  # the poller's cursor did not move


@pytest.mark.parametrize("body,field", [
    ({"site": "site1", "composition_uid": "0f3c4a2e-8b1d-4e5f-9a6b-7c8d9e0f1a2b",
      "ehr_id": "ehr/../../../../management/env"}, "ehr_id"),
    ({"site": "site1", "composition_uid": "../../../../management/env", "ehr_id": f.EHR_ID}, "composition_uid"),
    ({"site": "site1", "composition_uid": "0f3c4a2e-8b1d-4e5f-9a6b-7c8d9e0f1a2b/../../x", "ehr_id": f.EHR_ID},
     "composition_uid"),
])
def test_it_refuses_a_path_traversal_through_a_trigger(api, people, queued, django_capture_on_commit_callbacks,
                                                        body, field):
    """Finding 8: ids that would enter a URL path must be UUIDs (or version uids), checked at the door."""
    f.make_site()
    with django_capture_on_commit_callbacks(execute=True):
        response = post(api(people.admin), body)
    assert response.status_code == 400 and field in response.json()
    assert queued == [] and not AuditEvent.objects.filter(action="api.trigger.composition").exists()
