"""Sites (admin CRUD), sync runs (filters, attempts) and health."""
from datetime import timedelta

from django.utils import timezone

from audit.models import AuditEvent
from sync.models import Direction, RunAttempt, Site, SyncRun
from tests.desk import factories as f

NEW_SITE = {"name": "site9", "openehr_base_url": "http://site9.test/ehrbase/rest/openehr/v1", "local_demo": True}


def test_admin_creates_updates_and_deletes_a_site_audited(api, people):
    client = api(people.admin)
    response = client.post("/api/v1/sites/", NEW_SITE, format="json")
    assert response.status_code == 201 and response.json()["name"] == "site9"
    response = client.patch("/api/v1/sites/site9/", {"poll_interval_seconds": 60}, format="json")
    assert response.status_code == 200 and Site.objects.get(name="site9").poll_interval_seconds == 60
    assert client.delete("/api/v1/sites/site9/").status_code == 204
    assert [e.action for e in AuditEvent.objects.filter(action__startswith="site.").order_by("pk")] == [
        "site.create", "site.update", "site.delete"]
    assert not Site.objects.filter(name="site9").exists()


def test_bad_site_names_the_field(api, people):
    response = api(people.admin).post("/api/v1/sites/", {**NEW_SITE, "openehr_base_url": "not a url",
                                                         "poll_interval_seconds": 0, "template_ids": [""]}, format="json")
    assert response.status_code == 400
    assert set(response.json()) == {"openehr_base_url", "poll_interval_seconds", "template_ids"}
    f.make_site("site9")
    assert "name" in api(people.admin).post("/api/v1/sites/", NEW_SITE, format="json").json()


def test_a_site_with_synced_data_is_not_deleted(api, people, conflict):
    response = api(people.admin).delete("/api/v1/sites/site1/")
    assert response.status_code == 409 and "enabled=false" in response.json()["detail"]
    assert not AuditEvent.objects.filter(action="site.delete").exists()


def test_runs_filter_by_site_status_direction_and_time(api, people):
    one, two = f.make_site("site1"), f.make_site("site2")
    done = SyncRun.objects.create(direction=Direction.TO_FHIR, site=one, record_key="site:site1:a", status="done")
    SyncRun.objects.create(direction=Direction.TO_FHIR, site=two, record_key="site:site2:b", status="pending")
    SyncRun.objects.create(direction=Direction.TO_OPENEHR, record_key="central:Observation/1", status="done")
    now = timezone.now()
    RunAttempt.objects.create(run=done, step="detect", number=1, started_at=now, finished_at=now, outcome="ok")
    client = api(people.clinician)

    def ids(query):
        response = client.get(f"/api/v1/runs/?{query}")
        assert response.status_code == 200, response.content
        return [r["id"] for r in response.json()["results"]]

    assert ids("site=site1") == [done.pk]
    assert len(ids("status=done")) == 2 and len(ids("direction=to_openehr")) == 1
    assert len(ids(f"since={(now - timedelta(minutes=5)).isoformat().replace('+00:00', 'Z')}")) == 3
    assert ids(f"until={(now - timedelta(minutes=5)).isoformat().replace('+00:00', 'Z')}") == []
    body = client.get(f"/api/v1/runs/{done.pk}/").json()
    assert body["attempts"][0]["step"] == "detect" and "checkpoint" not in body


def test_bad_run_filters_name_the_parameter(api, people):
    client = api(people.clinician)
    assert set(client.get("/api/v1/runs/?status=x&direction=y&since=z").json()) == {"status", "direction", "since"}
    body = client.get("/api/v1/runs/?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z").json()
    assert list(body) == ["until"]


def test_health_reports_each_source(api, people, conflict):
    f.make_dead_letter()
    body = api(people.clinician).get("/api/v1/health/").json()
    site = next(row for row in body if row["name"] == "site:site1")
    assert site["open_conflicts"] == 1 and site["dead_letters"] == 1 and site["last_poll"] is None
    assert site["status"] == "stale" and {row["name"] for row in body} == {"site:site1", "central"}
