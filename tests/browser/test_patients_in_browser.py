"""Who the patient is, in a real browser: the queue searched by MRN and by name, the conflict page with
the patient and each side's author, and (on the REAL servers, HAPI with MDM) the steward's matching page:
two look-alikes wait as a possible match, "different people" keeps them apart, audited.

The look-alikes are set up with the integration helpers of tests/integration/test_patient_matching.py
(EHR_STATUS demographics at two real EHRbase sites, runs driven in-process, MDM polled for its links).
"""
from __future__ import annotations

from datetime import date, datetime, timezone

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from audit.models import AuditEvent
from sync.clients.fhir import FHIRClient
from sync.clients.mdm import NO_MATCH
from sync.models import PatientLink
from sync.patients.routing import links_for
from tests.desk import factories as f
from tests.integration import test_patient_matching as matching

from .conftest import log_in, shot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

person, sites = matching.person, matching.sites  # the integration test's fixtures


@pytest.fixture
def queue(transactional_db, settings):
    """Two conflicts at two sites, each patient with the demographics the site's EHR_STATUS gave."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    f.ensure_roles()
    first = f.make_conflict(f.make_site())
    second = f.make_conflict(f.make_site("site2"), vo_suffix="beef")
    for conflict, (family, given, born, mrn) in ((first, ("Huber", "Anna", date(1961, 3, 14), "MRN-1001")),
                                                  (second, ("Meier", "Ruth", date(1958, 7, 2), "MRN-2002"))):
        PatientLink.objects.filter(pk=conflict.record_link.patient_link_id).update(
            family_name=family, given_names=given, birth_date=born, sex="female", subject_id=mrn)
    # who changed each side, as the engine keeps it: the composer and commit time at the site, the
    # writing system's meta.source centrally (no person named there)
    first.openehr_changed_by = first.fhir_changed_by = ""
    first.openehr_composition["composer"] = {"_type": "PARTY_IDENTIFIED", "name": "Dr. Ana Site"}
    first.openehr_changed_at = datetime(2026, 11, 20, 10, 42, tzinfo=timezone.utc)
    for resource in first.fhir_resources:
        resource["meta"]["source"] = "https://tumorboard.example.org/fhir#7f3a"
    first.save()
    return first, second


def _search(page, text: str, shows: str | None) -> list[str]:
    """The queue's rows (one patient's, or none) once the patient filter's answer is on the page (htmx swaps them in)."""
    page.fill("#f-patient", text)
    page.press("#f-patient", "Enter")
    if shows is None:
        expect(page.locator("#queue-rows .empty")).to_be_visible()
    else:
        expect(page.locator("#queue-rows")).to_contain_text(shows)
        expect(page.locator("#queue-rows tbody tr")).to_have_count(1)
    return page.locator("#queue-rows tbody tr").all_inner_texts()


def test_a_clinician_finds_a_patients_conflict_by_mrn_and_by_name(new_page, queue):
    first, second = queue
    clinician = f.make_user("clara@desk.test", f.ROLE_USERS["clinician"])
    page = new_page()
    log_in(page, clinician.email, f.PASSWORD, f.TOTP_SECRET)
    page.goto(reverse("desk:conflicts"))
    assert page.locator("#queue-rows tbody tr").count() == 2

    [row] = _search(page, "MRN-2002", shows="MEIER, Ruth")
    assert "*1958-07-02" in row and f"#{second.pk}" in row and "HUBER" not in row
    [row] = _search(page, "anna huber", shows="HUBER, Anna")
    assert f"#{first.pk}" in row and "MEIER" not in row
    assert _search(page, "Nobody Here", shows=None) == []
    # every page that showed the rows recorded who looked at whom (ids only)
    seen = AuditEvent.objects.filter(action="patient.viewed", actor=clinician.email)
    assert {second.record_link.patient_link_id, first.record_link.patient_link_id} <= {
        pk for event in seen for pk in event.detail["patient_links"]}

    _search(page, "1961-03-14", shows="HUBER, Anna")  # by birth date
    page.locator(f"a[href='{reverse('desk:conflict', args=[first.pk])}']").first.click()
    site_side = page.locator(".side-site .who-changed").inner_text()
    assert "Dr. Ana Site" in site_side and "at site1" in site_side
    assert "tumorboard.example.org" in page.locator(".side-central .who-changed").inner_text()
    assert "HUBER, Anna" in page.locator("main").inner_text()
    shot(page, "conflict-patient-context", readme=True)


@pytest.mark.integration
def test_a_steward_keeps_two_look_alikes_apart_on_the_matching_page(new_page, sites, ehrbase_urls, fhir_base_url,
                                                                     person, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    with FHIRClient(fhir_base_url) as fhir:
        # registered one at a time (MDM matches asynchronously: the first founds the golden record)
        _, (first, second), golden, mdm = matching.margit_moved(sites, ehrbase_urls, fhir, person)
        other = f"Patient/{second.fhir_patient_id}"
        assert matching.link_of(mdm, second.fhir_patient_id).golden == golden  # waiting: a possible match

        steward = f.make_user("stefan@desk.test", f.ROLE_USERS["steward"])
        page = new_page()
        log_in(page, steward.email, f.PASSWORD, f.TOTP_SECRET)
        page.goto(reverse("desk:matching"))
        question = page.locator("section.match").filter(has=page.locator(f"th:has-text('{other}')"))
        assert question.count() == 1
        assert person["family"].upper() in question.inner_text().upper()
        postal = question.locator("tr").filter(has_text=person["moved_to"])
        assert "differs" in postal.inner_text()  # the one thing that tells them apart is marked
        # the shot shows this test's question alone: the shared HAPI holds other runs' look-alikes
        page.locator("section.match").evaluate_all(
            "(sections, keep) => sections.forEach(s => { if (!s.innerText.includes(keep)) s.remove(); })", other)
        shot(page, "matching", readme=True)

        question.get_by_role("button", name="Different people").click()
        page.wait_for_url(f"**{reverse('desk:matching')}")
        assert "different people" in page.locator(".messages").inner_text()
        decided = AuditEvent.objects.get(action="mdm.match.rejected")
        assert (decided.actor, decided.detail["other"]) == (steward.email, other)
        assert page.locator("section.match").filter(has=page.locator(f"th:has-text('{other}')")).count() == 0
        # kept apart: the golden record still reaches site1 only
        assert matching.link_of(mdm, second.fhir_patient_id, wanted=(NO_MATCH,)).golden == golden
        assert [pl.site.name for pl in links_for(fhir, golden.split("/", 1)[1])] == ["site1"]
