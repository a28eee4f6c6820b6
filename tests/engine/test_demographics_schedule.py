"""The demographics pass (``sync.refresh_demographics``) is on beat's schedule at its configured
interval and runs single flight: a pass that finds another one running reads no site."""
import psycopg
import pytest
from django.conf import settings
from django.db import connection

from conflictdesk.celery import app
from sync import tasks
from sync.models import Site
from sync.patients import refresh


def test_the_pass_is_on_the_beat_schedule_at_its_interval():
    entry = settings.CELERY_BEAT_SCHEDULE["sync-refresh-demographics"]
    assert entry["task"] == "sync.refresh_demographics" in app.tasks
    assert entry["schedule"] == settings.CONFLICTDESK_DEMOGRAPHICS_SECONDS


@pytest.fixture
def passes(db, monkeypatch):
    """Sites read by the pass, in order (the servers are not asked)."""
    Site.objects.create(name="ds1", openehr_base_url="http://127.0.0.1:9/ehrbase",
                        demographics_source=Site.Demographics.EHR_STATUS, local_demo=True)
    Site.objects.create(name="plain", openehr_base_url="http://127.0.0.1:9/ehrbase", local_demo=True)
    read = []
    monkeypatch.setattr(refresh, "refresh_site",
                        lambda site, fhir, openehr: read.append(site.name) or refresh.Refreshed(1, 1, 0))
    return read


def test_a_pass_reads_each_demographics_site_and_counts_what_it_wrote(passes):
    assert tasks.refresh_demographics() == 1
    assert passes == ["ds1"]


def test_a_pass_while_another_runs_does_nothing(passes):
    params = connection.get_connection_params()
    with psycopg.connect(**{k: v for k, v in params.items() if k != "cursor_factory"}) as other:
        other.execute("SELECT pg_advisory_lock(%s)", [refresh.PASS_LOCK])
        assert tasks.refresh_demographics() is None and passes == []
        other.execute("SELECT pg_advisory_unlock(%s)", [refresh.PASS_LOCK])
    assert tasks.refresh_demographics() == 1 and passes == ["ds1"]
