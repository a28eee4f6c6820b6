"""An outage as the operator sees it, on the REAL servers: HAPI refused (a fault proxy in front of it),
a site's new record waits ('waiting: destination down') and the health page says central is down
with the run waiting; HAPI back, the probe closes the incident, the run continues and syncs, the
page shows central up and nothing waiting, and nothing was dead-lettered.

Runs are advanced in-process and the probe is called as beat would (the engine's integration
helpers, tests/integration/test_engine_resolution.py), so no worker is needed.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone

from conflictdesk.desk.liveness import CACHE_KEY
from faultproxy import FaultProxy
from sync.clients.openehr import template_id_of
from sync.models import Cursor, DeadLetter, Outage, RecordLink, Site, SyncRun
from sync.workflow import breaker, dispatch
from sync.workflow.runner import advance
from tests.desk import factories as f
from tests.harness.real_servers import ehr  # noqa: F401 (fixture)
from tests.integration import test_engine_resolution as real

from .conftest import log_in, shot

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

cdr = real.cdr  # the engine's tests' site, with their template
CENTRAL = "Central FHIR (HAPI)"


@pytest.fixture
def hapi(fhir_base_url, settings):
    """HAPI as the engine and the desk reach it: behind a proxy the test can take down."""
    with FaultProxy(fhir_base_url.split("//", 1)[1].split("/", 1)[0], idle_timeout=30, hang_limit=30) as proxy:
        settings.CONFLICTDESK_FHIR_BASE_URL = proxy.url_for(fhir_base_url)
        yield proxy


@pytest.fixture
def site(transactional_db, ehrbase_urls, monkeypatch, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    monkeypatch.setattr(dispatch, "send", lambda run_id, countdown: None)  # runs are advanced here
    site = Site.objects.create(name="site1", openehr_base_url=ehrbase_urls[0], poll_interval_seconds=1, local_demo=True)
    Cursor.objects.create(source="site:site1", position=real._now() - timedelta(seconds=1))
    return site


def _health(page):
    cache.delete(CACHE_KEY)  # the page asks each part at most every 10 s: ask now
    page.goto(reverse("desk:health"))
    return page


def test_hapi_down_makes_the_run_wait_on_the_health_page_until_it_continues(new_page, hapi, cdr, site, ehr):
    steward = f.make_user("stefan.outage@desk.test", f.ROLE_USERS["steward"])
    page = new_page()
    log_in(page, steward.email, f.PASSWORD, f.TOTP_SECRET)

    hapi.down()
    tid = template_id_of((real.CORPUS / "templates" / f"{real.TEMPLATE}.opt").read_bytes())
    ref = cdr.create_composition(ehr, real.vitals(118, 36.9), template_id=tid)
    assert real.drive_all(site, ehr) == [SyncRun.Status.DESTINATION_DOWN]

    _health(page)
    central = page.locator(f'#liveness tr[data-part="{CENTRAL}"]')
    assert central.locator(".tag").inner_text() == "down"
    assert "incident open" in central.inner_text()
    assert page.locator(".waiting-destination").first.inner_text().startswith("1 waiting: destination down")
    shot(page, "health-outage")

    hapi.up()
    Outage.objects.update(next_probe_at=timezone.now())  # beat's probe, now rather than at its time
    assert breaker.probe_due() == 1
    run = SyncRun.objects.get(change_event__source_version=ref.version_uid)
    assert advance(run.pk, "test") == SyncRun.Status.DONE

    _health(page)
    assert page.locator(f'#liveness tr[data-part="{CENTRAL}"] .tag').inner_text() == "up"
    assert page.locator(".waiting-destination").count() == 0
    shot(page, "health-recovered", readme=True)
    assert RecordLink.objects.get(versioned_object_uid=ref.uid).openehr_version_uid == ref.version_uid
    assert not DeadLetter.objects.exists()
