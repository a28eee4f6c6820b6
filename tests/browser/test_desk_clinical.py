"""Issue 16 in a real browser: the clinical diff and the resolved page, bulk re-drive, the audit grouped view.

Same world as ``test_desk_flows`` (the engine's side replaced where the
desk's actions reach it); screenshots of each page go to the README.
"""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from audit.record import record_event
from sync.models import DeadLetter, Resolution, SyncRun
from tests.desk import factories as f

from .conftest import log_in, shot
from .test_desk_flows import desk  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_clinical_diff_names_what_changed_and_the_resolved_page_says_who_won(new_page, desk):
    page = new_page()
    log_in(page, desk.clinician.email, f.PASSWORD, f.TOTP_SECRET)
    page.goto(f"/conflicts/{desk.conflict.pk}/")
    page.wait_for_selector("table.diff")
    titles = page.locator("table.diff tbody th .what").all_inner_texts()
    assert titles.count("Body temperature") == 2 and "Body temperature · status" in titles
    first = page.locator("table.diff tbody tr", has=page.locator(".context", has_text="entry 1, event 1")).filter(
        has=page.locator(".what", has_text=re.compile(r"^Body temperature$"))).first
    assert first.locator(".val-site mark").inner_text() == "38.5 °C"  # the changed value, with its unit
    paths = first.locator("details.tech")
    assert not paths.locator("li").first.is_visible()  # technical paths behind a disclosure
    paths.locator("summary").click()
    assert "valueQuantity" in paths.locator("ul").inner_text()
    central = page.locator("section.side-central")
    assert central.locator("section.resource h3").first.inner_text().startswith("Observation: Body temperature")
    assert not central.locator("details.ids p").first.is_visible()  # ids collapsed
    shot(page, "conflict-side-by-side", readme=True)

    page.check("input[name=choice][value=merge]")
    rows = page.locator("table.diff tbody tr")
    for i in range(rows.count()):
        row = rows.nth(i)
        take_site = row.locator(".what").inner_text() == "Body temperature" and "entry 1, event 1" in row.inner_text()
        row.locator(f"input[value={'site' if take_site else 'central'}]").check()
    page.fill("textarea[name=reason]", "Site re-measured the first temperature.")
    page.click("button:has-text('Apply decision')")
    page.wait_for_url("**/conflicts/")
    assert Resolution.objects.get(conflict=desk.conflict).choice == "merge"

    page.goto(f"/conflicts/{desk.conflict.pk}/")
    page.wait_for_selector("th:has-text('Written to both sides')")
    kept = dict(zip(page.locator("table.diff tbody .context").all_inner_texts(),
                    page.locator("table.diff tbody .tag").all_inner_texts()))
    assert len(kept) >= 2
    site_row = page.locator("table.diff tbody tr.kept-site")
    assert site_row.count() == 1 and site_row.locator(".val-written").inner_text() == "38.5 °C"
    assert page.locator("table.diff tbody tr.kept-central").count() == 2
    shot(page, "conflict-resolved", readme=True)


@pytest.fixture
def outage(desk):
    """A weekend outage: five runs to central dead-lettered at site1 after their retries ran out."""
    site = desk.conflict.record_link.site
    letters = [f.make_dead_letter(site, cause=DeadLetter.Cause.TRANSIENT_EXHAUSTED) for _ in range(5)]
    DeadLetter.objects.filter(pk__in=[d.pk for d in letters]).update(rule="", path="",
                                                                    created_at=timezone.now() - timedelta(hours=30))
    return letters


def test_a_steward_re_drives_a_weekend_outage_in_one_go(new_page, desk, outage):
    page = new_page()
    log_in(page, desk.steward.email, f.PASSWORD, f.TOTP_SECRET)
    page.goto("/dead-letters/?cause=transient_exhausted&site=site1")
    button = page.locator("#bulk-redrive button")
    assert button.inner_text() == "Re-drive 5 dead letters"
    shot(page, "dead-letters-bulk", readme=True)
    button.click()
    page.wait_for_selector(".messages")
    assert "5 dead letters re-driven" in page.locator(".messages").inner_text()
    assert set(SyncRun.objects.filter(pk__in=[d.run_id for d in outage]).values_list("status", flat=True)) == {"pending"}
    event = AuditEvent.objects.get(action="sync.redrive.bulk")
    assert sorted(event.detail["run_ids"]) == sorted(d.run_id for d in outage)
    assert page.locator("#bulk-redrive").count() == 0  # nothing left to re-drive under this filter


def test_an_auditor_reads_the_trail_grouped_per_run_and_verifies_it(new_page, desk):
    run_id, key = desk.conflict.run_id + 1000, desk.key  # a later sync of the same record, after the decision
    common = dict(actor="worker@vm:15899", partition="site:site1", source="site:site1", source_object="vo-1",
                  source_version="vo-1::site1::3", record_key=key, run_id=run_id,
                  patient_link_id=desk.conflict.record_link.patient_link_id)
    refs = "Observation/a,Observation/b,Encounter/c,Composition/d"
    for action, extra in (("sync.detect", {"source_hash": "cd" * 32}),
                          ("sync.validate_source", {}),
                          ("sync.transform", {"detail": {"resources": 4, "losses": 0}}),
                          ("sync.validate_target", {}),
                          ("sync.check_conflict", {}),
                          ("sync.write", {"destination": "central", "destination_object": refs, "written_hash": "ef" * 32}),
                          ("sync.audit", {"destination": "central", "destination_object": refs,
                                          "readback_hash": "ab" * 32, "written_hash": "ef" * 32}),
                          ("sync.acknowledge", {})):
        record_event(action=action, outcome="ok", **common, **extra)
    desk.auditor.first_name, desk.auditor.last_name = "Aude", "Martin"
    desk.auditor.save()
    page = new_page()
    log_in(page, desk.auditor.email, f.PASSWORD, f.TOTP_SECRET)
    page.goto("/audit/")
    group = page.locator("section.run-group").filter(has_text=f"Run {run_id}").first
    assert group.locator("h2.headline").inner_text() == \
        "site1 composition v3 written to central as 4 resources, read back identical"
    assert "mapped to 4 FHIR resources" in group.inner_text()
    assert "sync engine" in group.inner_text() and "worker@vm:15899" not in group.locator("ol").inner_text()
    hashes = group.locator("details.hashes").first
    assert not hashes.locator("dd").first.is_visible()
    shot(page, "audit", readme=True)

    page.click("#verify-button")
    page.wait_for_selector("#verify-result .verify.ok")
    head = page.locator(".page-head h1").bounding_box()
    assert head["width"] > 100  # the title keeps its place; the result lands below the filters' head
    shot(page, "audit-verified")
    page.goto("/audit/verify/")  # opened directly: a whole page, styled, with the navigation
    page.wait_for_selector("header.top nav")
    assert page.locator("main .verify.ok").count() == 1
    shot(page, "audit-verify-page", readme=True)
    assert page.locator("a:has-text('Export CSV')").count() == 0  # export sits on the trail, not here
    page.goto(f"/audit/?record={key.split(':')[-1]}")
    assert page.locator("a:has-text('CSV')").get_attribute("href").endswith(f"record={key.split(':')[-1]}&format=csv") \
        or "format=csv" in page.locator("a:has-text('CSV')").get_attribute("href")


def test_a_steward_sees_the_unit_to_fix_in_a_dead_letter(new_page, desk):
    from tests.desk.test_deadletter_fix import PATH, PAYLOAD

    DeadLetter.objects.filter(pk=desk.letter.pk).update(
        rule="rm.dv_quantity.units.ucum", path=PATH, payload=PAYLOAD, step="validate_source",
        error=f"{desk.letter.run.record_key}: DV_QUANTITY units are not a UCUM code and no units_system names another system")
    page = new_page()
    log_in(page, desk.steward.email, f.PASSWORD, f.TOTP_SECRET)
    page.goto(f"/dead-letters/{desk.letter.pk}/")
    assert page.locator("code.bad-value").inner_text() == '"..mol/l"'
    assert "Glucose" in page.locator(".offending").inner_text()
    assert "What to do:" in page.locator("section.fix").inner_text()
    shot(page, "dead-letter-fix", readme=True)
