"""Finding 6: both checks (the chains, the anchors) run on a schedule, and their result is on /metrics and the health page.

A rewrite nobody looks for is a rewrite nobody finds.
"""

import pytest
from django.test import Client

from audit import tasks
from audit.anchor import anchor_heads
from audit.models import AuditEvent
from conflictdesk.celery import app

from conftest import sync_event
from test_audit_anchor import FakeFHIR, rewrite_history

pytestmark = pytest.mark.django_db


@pytest.fixture
def server(monkeypatch):
    fake = FakeFHIR()
    monkeypatch.setattr(tasks, "FHIRClient", lambda *a, **k: fake)
    return fake


def test_beat_schedules_verification():
    entry = next(e for e in app.conf.beat_schedule.values() if e["task"] == "audit.verify")
    assert entry["schedule"] > 0 and "audit.verify" in app.tasks


def test_an_intact_trail_is_recorded_as_verified(server):
    for i in range(3):
        sync_event(i)
    anchor_heads(server)
    assert tasks.verify_task() is True
    event = AuditEvent.objects.filter(action="audit.verify").get()
    assert event.outcome == "ok" and event.detail["broken_chains"] == 0 and event.detail["anchor_problems"] == 0


def test_a_rewritten_trail_is_recorded_broken_and_shows_on_metrics_and_health(server, behind_the_back, settings):
    settings.CONFLICTDESK_METRICS_TOKEN = None
    settings.CONFLICTDESK_METRICS_CACHE_SECONDS = 0
    events = [sync_event(i) for i in range(3)]
    anchor_heads(server)
    rewrite_history(behind_the_back, events, 0, outcome="forged")
    assert tasks.verify_task() is False
    assert AuditEvent.objects.filter(action="audit.verify").get().outcome == "broken"
    settings.DEBUG = True  # /metrics without a token is open only in DEBUG
    body = Client().get("/metrics").content.decode()
    assert "conflictdesk_audit_intact 0.0" in body
    from conflictdesk.desk.health import audit_status

    assert audit_status().intact is False
    from tests.desk import factories as f

    client = Client()
    client.force_login(f.make_user("aude@desk.test", f.ROLE_USERS["auditor"]))
    assert "BROKEN" in client.get("/health/").content.decode()


def test_an_unreachable_server_is_not_reported_intact(server, monkeypatch):
    sync_event(1)

    def down(*args, **kwargs):
        raise ConnectionError("down")

    monkeypatch.setattr(server, "search", down)
    assert tasks.verify_task() is False
    assert AuditEvent.objects.filter(action="audit.verify").get().outcome == "unverified"
