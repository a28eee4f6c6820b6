"""The health page for operators: conflicts are not failures, latency over 15 min and 24 h apart,
runs waiting for a destination that is down, and whether each part answers now."""
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone

from conflictdesk.desk import health, liveness
from sync.clients.errors import TransientError
from sync.identity import record_key
from sync.models import Cursor, Direction, Outage, SyncRun
from sync.workflow.sweeper import LAST_SWEEP_KEY

from . import factories as f


def _run(site, status, *, took: float, ago: float) -> SyncRun:
    finished = timezone.now() - timedelta(seconds=ago)
    run = SyncRun.objects.create(direction=Direction.TO_FHIR, site=site, status=status, finished_at=finished,
                                 record_key=record_key(site.name, f"vo{took}{ago}"))
    SyncRun.objects.filter(pk=run.pk).update(created_at=finished - timedelta(seconds=took))
    return run


def _row(name="site:site1"):
    return next(r for r in health.dashboard() if r.name == name)


def test_conflicts_are_not_failures_in_the_success_rate(db):
    site = f.make_site()
    for i in range(3):
        _run(site, SyncRun.Status.DONE, took=2 + i, ago=60)
    _run(site, SyncRun.Status.CONFLICT, took=1, ago=60)
    _run(site, SyncRun.Status.CONFLICT, took=1, ago=60)
    assert _row().success_rate == 1.0
    _run(site, SyncRun.Status.DEAD_LETTER, took=1, ago=60)
    assert _row().success_rate == 0.75
    assert sum(failed for _, failed in _row().hourly) == 1  # the chart's failures are the dead letter only


def test_latency_over_the_last_15_minutes_is_apart_from_the_day(db):
    site = f.make_site()
    for _ in range(5):
        _run(site, SyncRun.Status.DONE, took=180, ago=3 * 3600)  # the morning's start-up backlog
    _run(site, SyncRun.Status.DONE, took=2, ago=30)
    row = _row()
    assert (row.p50_15m, row.p95_15m) == (2, 2)
    assert row.p95 == 180


def test_runs_waiting_for_a_destination_are_counted(db, login, people):
    site = f.make_site()
    SyncRun.objects.create(direction=Direction.TO_FHIR, site=site, record_key=record_key("site1", "vo"),
                           status=SyncRun.Status.DESTINATION_DOWN)
    assert _row().waiting_destination == 1


@pytest.fixture
def down_central():
    def ping(timeout):
        raise TransientError(method="GET", path="/metadata", reason="transport error (ConnectError)")
    return SimpleNamespace(fhir=SimpleNamespace(ping=ping), openehr=None)


def test_a_server_down_with_its_incident_open(db, down_central):
    now = timezone.now()
    outage = Outage.objects.create(destination="central", next_probe_at=now, probes=3)
    Outage.objects.filter(pk=outage.pk).update(opened_at=now - timedelta(seconds=90))
    part = liveness._server("central", "Central FHIR (HAPI)", down_central, {"central": Outage.objects.get()}, now)
    assert part.state == "down" and "incident open for 90 s" in part.detail


def test_beat_is_alive_while_it_makes_sweeps_happen(db, settings):
    settings.CONFLICTDESK_SWEEP_SECONDS = 2
    now = timezone.now()
    cache.delete(LAST_SWEEP_KEY)
    assert liveness._beat(now).up is None
    cache.set(LAST_SWEEP_KEY, now - timedelta(seconds=3))
    assert liveness._beat(now).up is True
    cache.set(LAST_SWEEP_KEY, now - timedelta(minutes=5))
    assert liveness._beat(now).up is False


def test_detection_is_alive_while_sites_are_polled(db):
    site = f.make_site()
    site.poll_interval_seconds = 5
    site.save()
    now = timezone.now()
    Cursor.objects.create(source="site:site1", last_polled_at=now - timedelta(seconds=3))
    assert liveness._detection(now).up is True
    Cursor.objects.filter(source="site:site1").update(last_polled_at=now - timedelta(minutes=10))
    assert liveness._detection(now).up is False


def test_the_panel_shows_each_part_now(db, login, people, monkeypatch):
    monkeypatch.setattr(liveness, "parts", lambda: [liveness.Part("Central FHIR (HAPI)", False, "does not answer"),
                                                    liveness.Part("PostgreSQL", True, "answers")])
    page = login(people.clinician).get(reverse("desk:health_panel")).content.decode()
    assert 'data-part="Central FHIR (HAPI)"' in page and ">down<" in page and ">up<" in page


def test_every_part_is_listed_and_a_broker_that_is_down_is_not_asked_for_workers(db, settings, down_central):
    from sync.workflow.services import use_services

    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    with use_services(down_central):
        found = {p.name: p for p in liveness.check_all()}
    assert found["PostgreSQL"].up is True
    assert found["Redis (broker)"].up is False and found["Celery workers"].up is None
    assert found["Central FHIR (HAPI)"].up is False
    assert {"Celery beat", "Detection (poll loop)"} <= set(found)
