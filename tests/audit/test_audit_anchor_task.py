"""The beat schedule anchors chain heads; the task anchors through the configured server."""
from types import SimpleNamespace

import pytest

from audit import tasks
from audit.record import record_event
from conflictdesk.celery import app


def test_beat_schedules_anchoring():
    entry = next(e for e in app.conf.beat_schedule.values() if e["task"] == "audit.anchor_heads")
    assert entry["schedule"] > 0
    assert "audit.anchor_heads" in app.tasks


class FakeFHIR:
    def __init__(self, *_args, **_kwargs):
        self.created = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def create(self, resource):
        self.created.append(resource)
        return SimpleNamespace(id=f"a{len(self.created)}", version_id="1")


@pytest.mark.django_db
def test_the_task_anchors_every_moved_head_once(monkeypatch):
    fake = FakeFHIR()
    monkeypatch.setattr(tasks, "FHIRClient", lambda *a, **k: fake)
    record_event(action="sync.detect", outcome="ok", actor="worker@h:1", partition="site:site1#01")
    record_event(action="sync.detect", outcome="ok", actor="worker@h:1", partition="central")
    assert tasks.anchor_heads_task() == 2
    assert tasks.anchor_heads_task() == 0  # nothing moved since
    assert all(r["resourceType"] == "AuditEvent" for r in fake.created)
