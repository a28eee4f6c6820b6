"""End to end on the REAL servers: a conflict made on EHRbase and HAPI, resolved by a field merge in the
browser, executed by the engine's resolution run, and the merged content read back from both servers.

Reuses the engine's integration helpers (tests/integration/test_engine_resolution.py) to make the
conflict; runs are advanced in-process, as those tests do, so no worker is needed.
"""
from __future__ import annotations

import pytest

from sync.models import Resolution, SyncRun
from sync.workflow.runner import advance
from tests.desk import factories as f
from sync.workflow import dispatch
from tests.harness.real_servers import ehr, fhir  # noqa: F401 (fixtures)
from tests.integration import test_engine_resolution as real

from .conftest import log_in, shot

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

cdr = real.cdr  # the engine's tests' site, with their template


@pytest.fixture
def site(transactional_db, ehrbase_urls, monkeypatch, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    monkeypatch.setattr(dispatch, "send", lambda run_id, countdown: None)  # runs are advanced here
    from datetime import timedelta

    from sync.models import Cursor, Site

    site = Site.objects.create(name="site1", openehr_base_url=ehrbase_urls[0], poll_interval_seconds=1, local_demo=True)
    Cursor.objects.create(source="site:site1", position=real._now() - timedelta(seconds=1))
    return site


def test_a_field_merge_in_the_browser_arrives_on_both_real_servers(new_page, cdr, fhir, site, ehr):
    tid, v1, v2, conflict = real.make_conflict(cdr, fhir, site, ehr, central_bp=150, central_temp=39.0)
    clinician = f.make_user("clara.real@desk.test", f.ROLE_USERS["clinician"])
    page = new_page()
    log_in(page, clinician.email, f.PASSWORD, f.TOTP_SECRET)
    page.goto(f"/conflicts/{conflict.pk}/")
    page.wait_for_selector("table.diff")
    shot(page, "real-conflict-side-by-side")
    page.check("input[name=choice][value=merge]")
    rows = page.locator("table.diff tbody tr")
    assert rows.count() >= 2
    for i in range(rows.count()):
        row = rows.nth(i)
        # Blood pressure from the site (80), temperature from the centre (39.0).
        side = "site" if "blood pressure" in row.inner_text().lower() else "central"
        row.locator(f"input[value={side}]").check()
    page.fill("textarea[name=reason]", "Site BP re-measured; central temperature confirmed.")
    page.click("button:has-text('Apply decision')")
    page.wait_for_url("**/conflicts/")
    assert "is writing it to both sides" in page.locator(".messages").inner_text()

    resolution = Resolution.objects.get(conflict=conflict)
    run = SyncRun.objects.get(resolution=resolution)
    assert advance(run.pk, "test") == SyncRun.Status.DONE
    link = real.RecordLink.objects.get(versioned_object_uid=v1.uid)
    assert real.central(fhir, link, real.systolic) == [80]
    assert real.central(fhir, link, real.temperature) == [39.0]
    latest = cdr.get_composition(ehr, v1.uid)
    flat = cdr.get_composition(ehr, latest.ref.version_uid, flat=True).content
    assert flat[real.SYSTOLIC] == 80 and flat[f"{real.TEMPERATURE}|magnitude"] == 39.0
