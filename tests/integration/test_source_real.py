"""Source on demand against the real servers: sync a composition through the engine (in-process), then ask
the API for the source of a central resource and get EXACTLY the committed composition version back."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from knox.models import AuthToken
from rest_framework.test import APIClient

from audit.chain import payload_hash
from audit.models import AuditEvent
from sync.clients.openehr import template_id_of
from sync.detection import poll_site
from sync.identity import provenance_id
from sync.models import Cursor, RecordLink, Site, SyncRun
from sync.workflow import dispatch
from sync.workflow.runner import advance
from tests.desk import factories as f
from tests.harness.vitals import CORPUS, SYSTOLIC_FLAT, TEMPLATE, vitals

pytestmark = [pytest.mark.integration, pytest.mark.slow]



@pytest.fixture
def site(transactional_db, ehrbase_urls, fhir_base_url, settings, monkeypatch):
    settings.CONFLICTDESK_FHIR_BASE_URL = fhir_base_url
    monkeypatch.setattr(dispatch, "send", lambda run_id, countdown: None)  # runs are driven here, not by a worker
    site = Site.objects.create(name="site1", openehr_base_url=ehrbase_urls[0], poll_interval_seconds=1, local_demo=True)
    Cursor.objects.create(source="site:site1", position=datetime.now(timezone.utc) - timedelta(seconds=1))
    return site


@pytest.fixture
def api(transactional_db):
    user = f.make_user(f"clin-{uuid.uuid4().hex[:8]}@desk.test", f.ROLE_USERS["clinician"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {AuthToken.objects.create(user)[1]}")
    client.user = user
    return client


def sync_now(site, version_uid) -> RecordLink:
    """One detection pass and the run for ``version_uid``, in this process."""
    poll_site(site)
    run = SyncRun.objects.get(change_event__source_version=version_uid)
    assert advance(run.pk, "test-source") == SyncRun.Status.DONE, run.dead_letter.error if hasattr(run, "dead_letter") else run
    return RecordLink.objects.get(site=site, openehr_version_uid=version_uid)


def test_the_source_is_exactly_the_synced_composition_version(site, cdr, api):
    template = template_id_of((CORPUS / "templates" / f"{TEMPLATE}.opt").read_bytes())
    ehr = cdr.create_ehr(subject_id=f"pat-{uuid.uuid4()}", subject_namespace="conflictdesk-test").ehr_id
    v1 = cdr.create_composition(ehr, vitals(118), template_id=template)
    link = sync_now(site, v1.version_uid)
    resource = link.fhir_resources[0]
    url = f"/api/v1/sources/{resource['type']}/{resource['id']}/"

    body = api.get(url).json()
    committed = cdr.get_composition(ehr, v1.version_uid).content
    assert body["version_uid"] == v1.version_uid and body["composition"] == committed
    assert body["provenance"] == f"Provenance/{provenance_id(v1.version_uid)}" and body["via"] == "provenance"
    assert (body["site"], body["ehr_id"]) == ("site1", ehr)
    # The hash the engine recorded when it read v1 is the hash of what comes back now.
    assert body["hash"] == payload_hash(committed) == body["last_synced_hash"] and body["matches_last_synced"] is True

    # The site moves on; the source of the resource is still the version it was written from.
    v2 = cdr.update_composition(ehr, v1.version_uid, vitals(141), template_id=template)
    body = api.get(url).json()
    assert body["version_uid"] == v1.version_uid and body["composition"] == committed
    assert cdr.get_composition(ehr, v1.uid).content != committed  # the latest is v2 indeed

    flat = api.get(url + "?format=flat").json()
    assert flat["format"] == "flat" and flat["version_uid"] == v1.version_uid
    assert flat["composition"] == cdr.get_composition(ehr, v1.version_uid, flat=True).content
    assert flat["composition"][SYSTOLIC_FLAT] == 118

    # Once v2 is synced its Provenance is the newest: the source follows it.
    sync_now(site, v2.version_uid)
    body = api.get(url).json()
    assert body["version_uid"] == v2.version_uid
    assert body["composition"] == cdr.get_composition(ehr, v2.version_uid).content

    events = AuditEvent.objects.filter(action="source.viewed", actor=api.user.email, outcome="ok")
    assert events.count() == 4 and set(events.values_list("source_object", flat=True)) == {v1.uid}


def test_a_site_down_answers_503_with_the_hash_of_the_synced_copy(site, cdr, api):
    template = template_id_of((CORPUS / "templates" / f"{TEMPLATE}.opt").read_bytes())
    ehr = cdr.create_ehr(subject_id=f"pat-{uuid.uuid4()}", subject_namespace="conflictdesk-test").ehr_id
    v1 = cdr.create_composition(ehr, vitals(101), template_id=template)
    link = sync_now(site, v1.version_uid)
    committed = cdr.get_composition(ehr, v1.version_uid).content
    Site.objects.filter(pk=site.pk).update(openehr_base_url="http://127.0.0.1:9/ehrbase/rest/openehr/v1")  # nothing listens
    resource = link.fhir_resources[0]
    response = api.get(f"/api/v1/sources/{resource['type']}/{resource['id']}/")
    assert response.status_code == 503
    body = response.json()
    assert "unreachable" in body["detail"] and body["version_uid"] == v1.version_uid
    assert body["last_synced_hash"] == payload_hash(committed) and body["last_synced_hash_of"] == "composition"
