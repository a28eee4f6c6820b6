"""/metrics: bearer-token protected, every figure read from the database at scrape time."""
from datetime import timedelta

import pytest
from django.utils import timezone

from sync.models import ChangeEvent, Cursor, Direction, PatientLink, RecordLink, RunAttempt, SyncRun
from tests.desk import factories as f

TOKEN = "s3cret-scrape-token"


def sample(text: str, name: str, **labels) -> float | None:
    """The value of one sample in the exposition text (None when absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return s.value
    return None


@pytest.fixture
def scrape(client, settings):
    settings.CONFLICTDESK_METRICS_TOKEN = TOKEN

    def get():
        response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
        return response.content.decode()

    return get


def synced_run(site, *, committed_ago: float, written_ago: float, vo_uid="vo-1"):
    now = timezone.now()
    patient, _ = PatientLink.objects.get_or_create(site=site, ehr_id="e-1", defaults={"fhir_patient_id": "p-1"})
    RecordLink.objects.get_or_create(site=site, versioned_object_uid=vo_uid, patient_link=patient,
                                     defaults={"fhir_resources": [{"type": "Observation", "id": "o1"},
                                                                  {"type": "Condition", "id": "c1"}]})
    event = ChangeEvent.objects.create(direction=Direction.TO_FHIR, source=f"site:{site.name}", site=site,
                                       source_object_id=vo_uid, source_version=f"{vo_uid}::x::{committed_ago}",
                                       version_number=1, committed_at=now - timedelta(seconds=committed_ago),
                                       status="synced")
    run = SyncRun.objects.create(change_event=event, direction=Direction.TO_FHIR, site=site,
                                 record_key=f"site:{site.name}:{vo_uid}", status="done", finished_at=now)
    for step, outcome, ago in [("write", "transient", written_ago + 1), ("write", "ok", written_ago),
                               ("acknowledge", "ok", 0)]:
        t = now - timedelta(seconds=ago)
        RunAttempt.objects.create(run=run, step=step, number=1, started_at=t, finished_at=t, outcome=outcome,
                                  scheduled_delay_seconds=1 if outcome == "transient" else None)
    return run


def test_latency_is_commit_to_write_by_site_direction_and_type(db, scrape):
    site = f.make_site()
    synced_run(site, committed_ago=12, written_ago=2)  # 10 s
    synced_run(site, committed_ago=40, written_ago=0, vo_uid="vo-2")  # 40 s
    text = scrape()
    labels = {"direction": "to_fhir", "resource_type": "Observation", "site": "site1"}
    bucket = "conflictdesk_sync_latency_seconds_bucket"
    assert [sample(text, bucket, **labels, le=le) for le in ("5.0", "10.0", "45.0", "+Inf")] == [0, 1, 2, 2]
    assert sample(text, "conflictdesk_sync_latency_seconds_count", **labels) == 2
    assert abs(sample(text, "conflictdesk_sync_latency_seconds_sum", **labels) - 50) < 0.1
    assert 'conflictdesk_runs_total{outcome="succeeded"} 2.0' in text
    assert "conflictdesk_retries_total 2.0" in text


def test_gauges_by_site(db, scrape, conflict):
    f.make_dead_letter()
    f.make_site("site2")
    ChangeEvent.objects.create(direction=Direction.TO_FHIR, source="site:site2", site=f.make_site("site2"),
                               source_object_id="x", source_version="x::1", version_number=1)
    Cursor.objects.create(source="site:site2", position=timezone.now() - timedelta(seconds=90))
    text = scrape()
    for line in ['conflictdesk_open_conflicts{site="site1"} 1.0', 'conflictdesk_open_conflicts{site="site2"} 0.0',
                 'conflictdesk_dead_letters{site="site1"} 1.0', 'conflictdesk_dead_letters{site="central"} 0.0',
                 'conflictdesk_backlog{site="site2"} 1.0', 'conflictdesk_backlog{site="site1"} 0.0',
                 'conflictdesk_runs_total{outcome="dead_lettered"} 1.0']:
        assert line in text, line
    lag = float(text.split('conflictdesk_cursor_lag_seconds{site="site2"} ')[1].split()[0])
    assert 90 <= lag < 120
    assert "conflictdesk_celery_queue_depth " in text or "conflictdesk_celery_broker_up 0.0" in text


def test_a_re_driven_dead_letter_does_not_make_a_counter_go_down(db, scrape, api, people):
    letter = f.make_dead_letter()
    before = scrape()
    api(people.steward).post(f"/api/v1/dead-letters/{letter.pk}/redrive/")
    assert 'conflictdesk_runs_total{outcome="dead_lettered"} 1.0' in before and \
        'conflictdesk_runs_total{outcome="dead_lettered"} 1.0' in scrape()


def test_the_broker_down_is_a_figure_not_an_error(db, scrape, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    assert "conflictdesk_celery_broker_up 0.0" in scrape()


@pytest.mark.parametrize("header", [None, "Bearer wrong", f"Token {TOKEN}", TOKEN])
def test_it_needs_the_bearer_token(client, settings, db, header):
    settings.CONFLICTDESK_METRICS_TOKEN = TOKEN
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    response = client.get("/metrics", **extra)
    assert response.status_code == 401 and response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("debug,status", [(True, 200), (False, 401)])
def test_without_a_token_it_is_open_only_in_debug(client, settings, db, debug, status):
    settings.CONFLICTDESK_METRICS_TOKEN, settings.DEBUG = None, debug
    assert client.get("/metrics").status_code == status
