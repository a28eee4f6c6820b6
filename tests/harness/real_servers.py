"""Clients on the real servers, and a site the test drives by hand: fixtures the integration tests
(through tests/integration/conftest.py) and the browser tests on real servers import from here.

A plain module, not a conftest, so a test module outside tests/integration can import them by name.
"""
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from sync.clients.fhir import FHIRClient
from sync.clients.openehr import OpenEHRClient
from tests.harness.vitals import template_opt


@pytest.fixture
def cdr(ehrbase_urls):
    """Site 1's CDR with the vital-signs template uploaded."""
    with OpenEHRClient(ehrbase_urls[0]) as client:
        client.upload_template(template_opt())
        yield client


@pytest.fixture
def fhir(fhir_base_url, settings):
    """The central server, direct (never through a fault proxy); the engine writes to it too."""
    settings.CONFLICTDESK_FHIR_BASE_URL = fhir_base_url
    with FHIRClient(fhir_base_url) as client:
        yield client


@pytest.fixture
def site(db, ehrbase_urls, monkeypatch):
    """Site 1, polled from a second ago; runs are driven by the test, never dispatched to a worker."""
    from sync.models import Cursor, Site  # in the fixture: the models need Django set up
    from sync.workflow import dispatch  # with the models, for the same reason

    monkeypatch.setattr(dispatch, "send", lambda run_id, countdown: None)
    site = Site.objects.create(name="site1", openehr_base_url=ehrbase_urls[0], poll_interval_seconds=1, local_demo=True)
    Cursor.objects.create(source="site:site1", position=datetime.now(timezone.utc) - timedelta(seconds=1))
    return site


@pytest.fixture
def ehr(cdr):
    """A new EHR at site 1 (its ``cdr``: each module may upload its own template)."""
    return cdr.create_ehr(subject_id=f"pat-{uuid.uuid4()}", subject_namespace="conflictdesk-test").ehr_id
