"""Engine tests: real PostgreSQL rows and audit chain, fake servers and mapping."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from audit.chain import payload_hash
from audit.record import record_event, system_actor
from sync.identity import record_key
from sync.models import ChangeEvent, Direction, Site, SyncRun
from sync.workflow import dispatch, template_check
from sync.workflow.runner import advance
from sync.workflow.services import Services, use_services

from .fakes import FakeFHIR, FakeOpenEHR, fake_mapping, web_template

EHR = "ehr-1"
VO = "11111111-1111-1111-1111-111111111111"


@pytest.fixture
def sent(monkeypatch):
    """Celery hints the engine sent: (run_id, countdown)."""
    calls = []
    monkeypatch.setattr(dispatch, "send", lambda run_id, countdown: calls.append((run_id, countdown)))
    return calls


@pytest.fixture
def engine(db, sent, settings, django_capture_on_commit_callbacks):
    settings.CONFLICTDESK_STAFF_EMAILS = ["oncall@example.org"]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.CONFLICTDESK_READBACK_VREAD_RATE = 1.0  # every write also read back independently
    fhir, openehr = FakeFHIR(), FakeOpenEHR()
    openehr.templates["vitals"] = web_template("openEHR-EHR-OBSERVATION.body_temperature.v2")
    template_check.clear_cache()
    services = Services(
        fhir=fhir,
        openehr=lambda site: openehr,
        mapping=fake_mapping(),
        audit=SimpleNamespace(record_event=record_event, payload_hash=payload_hash, system_actor=system_actor),
    )
    site = Site.objects.create(name="site1", openehr_base_url="http://site1.test/v1", local_demo=True)

    def commit(value, version=1, vo=VO, **extra):
        """A site commit and the ChangeEvent + SyncRun detection would record for it."""
        version_uid = f"{vo}::site1::{version}"
        openehr.compositions[version_uid] = {**extra.pop("content", {}), **_comp(value, vo, **extra)}
        event = ChangeEvent.objects.create(
            direction=Direction.TO_FHIR, source="site:site1", site=site, source_object_id=vo,
            source_version=version_uid, version_number=version, ehr_id=EHR,
        )
        return SyncRun.objects.create(
            change_event=event, direction=Direction.TO_FHIR, site=site, record_key=record_key("site1", vo)
        )

    def drive(run, worker="w1"):
        with django_capture_on_commit_callbacks(execute=True):
            status = advance(run.pk, worker)
        run.refresh_from_db()
        return status

    with use_services(services):
        yield SimpleNamespace(fhir=fhir, openehr=openehr, site=site, commit=commit, drive=drive, sent=sent,
                              services=services)


def _comp(value, vo, **kwargs):
    from .fakes import composition

    return {**composition(value, **kwargs), "_vo": vo}
