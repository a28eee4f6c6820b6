"""The desk in a real browser: MFA login, queue, field merge, dead-letter re-drive, chain of custody.

The engine's side is replaced where the decision action reaches it: current
versions come from the conflict itself (``sync.workflow.versions``) and the
action that starts the resolution run records what it was handed. The live
server runs in this process, so the monkeypatch reaches it.
``test_desk_real_servers`` is the end-to-end variant against the real servers.
"""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from audit.record import record_event
from conflictdesk.desk import roles
from sync.actions import conflicts as conflict_actions
from sync.workflow import versions
from sync.models import DeadLetter, Resolution
from tests.desk import factories as f

from .conftest import log_in, shot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def desk(transactional_db, settings, monkeypatch):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    f.ensure_roles()
    started = []
    monkeypatch.setattr(versions, "current_versions", versions.versions_seen)
    monkeypatch.setattr(conflict_actions, "do_start_resolution_run",
                        lambda r, *, acting_user: started.append(r.pk) or SimpleNamespace(pk=9001))
    monkeypatch.setattr("sync.workflow.dispatch.send", lambda run_id, countdown: None)
    site = f.make_site()
    conflict = f.make_conflict(site)
    f.make_conflict(f.make_site("site2"), vo_suffix="beef")
    letter = f.make_dead_letter(site)
    f.make_dead_letter(site, cause=DeadLetter.Cause.UNMAPPED)
    key = conflict.run.record_key
    for action in ("sync.detect", "sync.transform", "sync.check_conflict"):
        record_event(action=action, outcome="ok" if action != "sync.check_conflict" else "conflict",
                     actor="worker@host:1", partition="site:site1", source="site:site1", record_key=key,
                     run_id=conflict.run_id, patient_link_id=conflict.record_link.patient_link_id)
    return SimpleNamespace(
        conflict=conflict, letter=letter, started=started, key=key,
        clinician=f.make_user("clara@desk.test", roles.CLINICIAN),
        steward=f.make_user("stefan@desk.test", roles.STEWARD),
        auditor=f.make_user("aude@desk.test", roles.AUDITOR),
    )


def test_a_clinician_logs_in_with_totp_and_resolves_a_conflict_by_field_merge(new_page, desk):
    page = new_page()
    log_in(page, desk.clinician.email, f.PASSWORD, f.TOTP_SECRET)
    page.wait_for_url("**/conflicts/")
    assert page.locator("#counts").inner_text().startswith("2 open conflicts")
    shot(page, "queue", readme=True)

    page.click(f"a[href='/conflicts/{desk.conflict.pk}/']")
    page.wait_for_selector("table.diff")
    shot(page, "conflict-side-by-side", readme=True)
    page.click("text=Raw JSON")
    page.wait_for_selector("pre.json")
    shot(page, "conflict-raw-json")
    page.click("text=Clinical view")

    page.check("input[name=choice][value=merge]")
    rows = page.locator("table.diff tbody tr")
    for i in range(rows.count()):
        row = rows.nth(i)
        # Take the site's re-measured temperature; keep the centre's other changes.
        first_value = row.locator(".what").inner_text() == "Body temperature" and "entry 1, event 1" in row.inner_text()
        side = "site" if first_value else "central"
        row.locator(f"input[value={side}]").check()
    page.fill("textarea[name=reason]", "Site re-measured the first temperature; the centre's status amendment stands.")
    page.click("button:has-text('Apply decision')")
    page.wait_for_url("**/conflicts/")
    assert "Decision #" in page.locator(".messages").inner_text()
    shot(page, "queue-after-decision")

    resolution = Resolution.objects.get(conflict=desk.conflict)
    assert resolution.choice == "merge" and desk.started == [resolution.pk]
    first = next(k for k in resolution.content["record"] if k.endswith("events[at0003]") and "]:1/" not in k)
    assert resolution.content["record"][first]["valueQuantity"]["value"] == 38.5
    assert resolution.content["record"][first]["status"] == "amended"


def test_a_data_steward_re_drives_a_dead_letter(new_page, desk):
    page = new_page()
    log_in(page, desk.steward.email, f.PASSWORD, f.TOTP_SECRET)
    page.goto("/dead-letters/")
    shot(page, "dead-letters")
    page.click(f"a[href='/dead-letters/{desk.letter.pk}/'] >> nth=0")
    page.wait_for_selector("text=Rule broken")
    shot(page, "dead-letter-detail")
    page.click("button:has-text('Re-drive')")
    page.wait_for_url("**/dead-letters/")
    assert "re-driven" in page.locator(".messages").inner_text()
    desk.letter.refresh_from_db()
    assert desk.letter.status == DeadLetter.Status.REDRIVEN and desk.letter.closed_by == desk.steward


def test_an_auditor_browses_a_records_chain_of_custody(new_page, desk):
    page = new_page()
    log_in(page, desk.auditor.email, f.PASSWORD, f.TOTP_SECRET)
    page.goto("/audit/")
    page.fill("input[name=record]", desk.key.split(":")[-1])
    page.click("main button:has-text('Apply')")
    page.wait_for_selector("section.run-group >> text=site1 composition detected")
    page.click("section.run-group a:has-text('chain of custody') >> nth=0")
    page.wait_for_selector("ol.timeline")
    assert page.locator("ol.timeline li").count() == 3
    page.click("a:has-text('Verify chains')")
    page.wait_for_selector(".verify.ok")
    shot(page, "chain-of-custody")
    page.goto("/health/")
    page.wait_for_selector("svg.spark")
    shot(page, "health")


def test_the_queue_on_a_tablet(new_page, desk):
    page = new_page(width=820, height=1180)
    log_in(page, desk.clinician.email, f.PASSWORD, f.TOTP_SECRET)
    page.goto(f"/conflicts/{desk.conflict.pk}/")
    page.wait_for_selector("table.diff")
    shot(page, "conflict-tablet")
    # Keyboard: the skip link is the first stop and lands on the main content.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
