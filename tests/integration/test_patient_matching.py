"""Issue 19 on the real servers: HAPI's MDM decides who is one person, the engine routes by it.

Two sites keep demographics in EHR_STATUS (subject = the site's MRN, other_details = name, birth
date, sex, postal code). Compositions committed there are polled and driven through the engine's
steps, which register one central Patient per site MRN; HAPI's MDM (deploy/hapi-fhir/mdm-rules.json)
links them. Names and birth dates are fresh per run: HAPI is shared and matches across all its
Patients.
"""
from __future__ import annotations

import random
import string
import time
import uuid
from datetime import date, datetime, timedelta, timezone

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from sync.clients.mdm import MATCH, NO_MATCH, POSSIBLE_MATCH, MdmClient
from sync.clients.openehr import OpenEHRClient, template_id_of
from sync.detection import poll_central, poll_site
from sync.models import Cursor, DeadLetter, PatientLink, RecordLink, Site, SyncRun
from sync.patients import ehr_status
from sync.patients.demographics import Demographics, other_details
from sync.patients.routing import links_for
from sync.workflow import dispatch
from sync.workflow.runner import advance
from tests.desk import factories as f
from tests.fixtures import REPO_DIR
from tests.harness.vitals import template_opt, vitals

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ONCOLOGY_OPT = (REPO_DIR / "deploy/templates/conflictdesk_oncology.v2.opt").read_bytes()
ONCOLOGY = template_id_of(ONCOLOGY_OPT)
VITALS = template_id_of(template_opt())
TERMINAL = {SyncRun.Status.DONE, SyncRun.Status.CONFLICT, SyncRun.Status.DEAD_LETTER}


def _now():
    return datetime.now(timezone.utc)


def _name() -> str:
    """A surname no other test run has (MDM compares against every Patient HAPI holds, every earlier run's too, with
    Jaro-Winkler >= 0.88: four syllables of a small alphabet after a shared 'Ka' came close enough now and then for a
    leftover 'Margit' of the same birth date and postal code to MATCH a new one)."""
    return "Ka" + "".join(random.choice("bcdfghjklmnpqrstvwxz") + random.choice("aeiouy") for _ in range(6))


def _birth_date() -> str:
    """Any day from 1920 to 2005 (31,000 of them): with the name, no two runs' people are one person to MDM."""
    return (date(1920, 1, 1) + timedelta(days=random.randrange(31_000))).isoformat()


@pytest.fixture
def person():
    """Fresh demographics: a family name, a birth date, a postal code and another she moves to, one run's MRN
    systems.

    The postal codes are drawn too: every MDM rule without the family name (birth date, sex, postal code, given
    name) would otherwise hold for any earlier run's Margit of the same birth date. The test server's database
    keeps them all (1,715 Margits by December 2026, one chance in 18 of a shared birth date), and such a leftover
    made this run's first Margit a POSSIBLE_MATCH, never a golden record's founder (failed the clean-clone CI)."""
    run = "".join(random.choices(string.ascii_lowercase, k=8))
    home, moved_to = (str(code) for code in random.sample(range(10_000, 100_000), 2))
    return {"family": _name(), "birth_date": _birth_date(), "postal_code": home, "moved_to": moved_to, "run": run}


@pytest.fixture
def sites(transactional_db, ehrbase_urls, monkeypatch, person):
    monkeypatch.setattr(dispatch, "send", lambda run_id, countdown: None)  # driven here, not by a worker
    out = []
    for n, url in enumerate(ehrbase_urls[:2], start=1):
        with OpenEHRClient(url) as client:
            client.upload_template(template_opt())
            client.upload_template(ONCOLOGY_OPT)
        out.append(Site.objects.create(
            name=f"site{n}", openehr_base_url=url, poll_interval_seconds=1, local_demo=True,
            template_ids=[ONCOLOGY], demographics_source=Site.Demographics.EHR_STATUS,
            mrn_system=f"urn:conflictdesk:test:{person['run']}:site{n}:mrn"))
        Cursor.objects.create(source=f"site:site{n}", position=_now() - timedelta(seconds=1))
    return out


def register(site, url, **demographics) -> str:
    """An EHR at the site whose EHR_STATUS carries the subject's MRN and demographics."""
    found = Demographics(mrn_system=site.mrn_system, mrn=f"MRN-{uuid.uuid4().hex[:8]}", **demographics)
    with OpenEHRClient(url) as client:
        ehr = client.create_ehr(subject_id=found.mrn, subject_namespace=site.mrn_system).ehr_id
        status = ehr_status.read(client, ehr)
        ehr_status.write(client, ehr, {**status, "other_details": other_details(found)})
        client.create_composition(ehr, vitals(120), template_id=VITALS)
    return ehr


def drive() -> list[SyncRun]:
    runs = []
    for run in SyncRun.objects.exclude(status__in=TERMINAL).order_by("pk"):
        for _ in range(20):
            if advance(run.pk, "test") in TERMINAL:
                break
            SyncRun.objects.filter(pk=run.pk).update(next_attempt_at=None)
        runs.append(SyncRun.objects.get(pk=run.pk))
    return runs


def sync_sites(sites, ehrs) -> None:
    """Poll and drive; this test's EHRs' runs must all be done (the CDRs are shared: other tests' runs
    may come along and end as they end)."""
    for site in sites:
        poll_site(site)
    runs = [r for r in drive() if r.change_event and r.change_event.ehr_id in ehrs]
    assert runs and {r.status for r in runs} == {SyncRun.Status.DONE}


def link_of(mdm: MdmClient, patient_id: str, wanted=(MATCH, POSSIBLE_MATCH), patience_s=30):
    """The MDM link of a source Patient (matching is asynchronous in HAPI: poll for it)."""
    deadline = time.monotonic() + patience_s
    while True:
        links = [link for link in mdm.links(source=f"Patient/{patient_id}") if link.match_result in wanted]
        if links or time.monotonic() > deadline:
            return links[0] if links else None
        time.sleep(0.5)


def registered_one_by_one(fhir, people) -> tuple[list[str], list[PatientLink]]:
    """Register and sync each (site, url, demographics) in turn, waiting until MDM has linked each before the next.

    HAPI matches asynchronously on several consumers: registered together, whichever Patient it takes first
    founds the golden record, and the others' MATCH / POSSIBLE_MATCH would depend on that race."""
    mdm = MdmClient(fhir)
    ehrs, links = [], []
    for site, url, demographics in people:
        ehrs.append(register(site, url, **demographics))
        sync_sites([site], ehrs[-1:])
        links.append(PatientLink.objects.get(ehr_id=ehrs[-1]))
        assert link_of(mdm, links[-1].fhir_patient_id) is not None, f"MDM never linked {links[-1].fhir_patient_id}"
    return ehrs, links


def margit(person, **overrides):
    return {"family": person["family"], "given": ("Margit",), "birth_date": person["birth_date"], "sex": "female",
            "postal_code": person["postal_code"], **overrides}


def moved(person):
    """Margit as the site she moved to registered her: a new postal code, the rest the same."""
    return margit(person, postal_code=person["moved_to"])


def test_one_person_at_two_sites_with_a_typo_is_one_golden_record(sites, ehrbase_urls, fhir, person):
    typo = person["family"][:-1] + ("e" if person["family"][-1] != "e" else "a")
    ehrs = [register(sites[0], ehrbase_urls[0], **margit(person)),
            register(sites[1], ehrbase_urls[1], **margit(person, family=typo))]
    sync_sites(sites, ehrs)
    links = [PatientLink.objects.get(site=site, ehr_id=ehr) for site, ehr in zip(sites, ehrs)]
    # one central Patient per site registration, named by the site's MRN, with the demographics
    assert links[0].fhir_patient_id != links[1].fhir_patient_id
    for link, site in zip(links, sites):
        patient = fhir.read("Patient", link.fhir_patient_id)
        assert patient["identifier"][0] == {**patient["identifier"][0], "system": site.mrn_system, "value": link.subject_id}
        assert (patient["birthDate"], patient["gender"]) == (person["birth_date"], "female")
        assert (link.family_name, link.birth_date.isoformat(), link.sex) == (patient["name"][0]["family"],
                                                                               person["birth_date"], "female")
    mdm = MdmClient(fhir)
    found = [link_of(mdm, link.fhir_patient_id, wanted=(MATCH,)) for link in links]
    assert found[0] and found[1] and found[0].golden == found[1].golden
    golden = found[0].golden.split("/", 1)[1]
    # a resource on the golden record reaches both sites; one on a site's own Patient only that site
    assert sorted(pl.site.name for pl in links_for(fhir, golden)) == ["site1", "site2"]
    assert [pl.site.name for pl in links_for(fhir, links[1].fhir_patient_id)] == ["site2"]


def test_two_people_with_the_same_name_and_birth_date_wait_for_a_steward(sites, ehrbase_urls, fhir, person, client,
                                                                        settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    _, (first, second), golden, mdm = margit_moved(sites, ehrbase_urls, fhir, person)
    waiting = link_of(mdm, second.fhir_patient_id)
    assert (waiting.match_result, waiting.golden) == (POSSIBLE_MATCH, golden)  # not merged by a machine
    # until a steward says so, the golden record is only the first site's person
    assert [pl.site.name for pl in links_for(fhir, golden.split("/", 1)[1])] == ["site1"]
    # the steward's page shows both side by side (and records who looked), then the steward says
    # "different people": kept apart, audited with the steward's name, and still nothing routed across
    steward = f.make_user("stefan@desk.test", f.ROLE_USERS["steward"])
    client.force_login(steward)
    page = client.get(reverse("desk:matching")).content.decode()
    assert person["family"] in page and f"Patient/{second.fhir_patient_id}" in page and "differs" in page
    viewed = AuditEvent.objects.get(action="patient.viewed", actor=steward.email)
    assert {first.pk, second.pk} <= set(viewed.detail["patient_links"])
    answer = client.post(reverse("desk:matching_decide"), {"kind": POSSIBLE_MATCH, "golden": golden,
                                                            "other": f"Patient/{second.fhir_patient_id}",
                                                            "answer": "different"})
    assert answer.status_code == 302
    decided = AuditEvent.objects.get(action="mdm.match.rejected")
    assert (decided.actor, decided.detail["other"]) == (steward.email, f"Patient/{second.fhir_patient_id}")
    assert link_of(mdm, second.fhir_patient_id, wanted=(NO_MATCH,)).golden == golden
    assert [pl.site.name for pl in links_for(fhir, golden.split("/", 1)[1])] == ["site1"]
    own = link_of(mdm, second.fhir_patient_id, wanted=(MATCH,))
    assert own is not None and own.golden != golden
    assert [pl.site.name for pl in links_for(fhir, own.golden.split("/", 1)[1])] == ["site2"]


def test_a_treatment_plan_on_the_golden_patient_reaches_exactly_the_sites_holding_that_person(
        sites, ehrbase_urls, fhir, person):
    """Margit at both sites (one golden record); a look-alike at site2 only is a possible match."""
    ehrs, links = registered_one_by_one(fhir, [(sites[0], ehrbase_urls[0], margit(person)),
                                               (sites[1], ehrbase_urls[1], margit(person, given=("Margrit",))),
                                               (sites[1], ehrbase_urls[1], moved(person))])
    mdm = MdmClient(fhir)
    golden = link_of(mdm, links[0].fhir_patient_id, wanted=(MATCH,)).golden
    assert link_of(mdm, links[1].fhir_patient_id, wanted=(MATCH,)).golden == golden
    central_from_now()
    plan = fhir.create({"resourceType": "CarePlan", "status": "active", "intent": "plan",
                        "subject": {"reference": golden}, "title": "Tumour board plan",
                        "description": "4 cycles AC, then adjuvant radiotherapy"})
    poll_central()
    runs = [r for r in drive() if r.change_event.source_object_id == f"CarePlan/{plan.id}"]
    assert [r.status for r in runs] == [SyncRun.Status.DONE]
    written = RecordLink.objects.filter(fhir_resources__contains=[{"type": "CarePlan", "id": plan.id}])
    # exactly Margit's two EHRs: not the look-alike's, though she is at site2 too
    assert sorted((rl.site.name, rl.patient_link.ehr_id) for rl in written) == [("site1", ehrs[0]), ("site2", ehrs[1])]



def test_a_changed_name_at_the_site_updates_its_central_patient_and_never_reaches_a_log(
        sites, ehrbase_urls, fhir, person, caplog):
    caplog.set_level("DEBUG")
    site, url = sites[0], ehrbase_urls[0]
    ehr = register(site, url, **margit(person))
    ehrs = [ehr]
    sync_sites(sites, ehrs)
    link = PatientLink.objects.get(site=site, ehr_id=ehr)
    before = fhir.read("Patient", link.fhir_patient_id)["meta"]["versionId"]
    married = _name()
    with OpenEHRClient(url) as client:  # the site records her new name, then a new composition
        status = ehr_status.read(client, ehr)
        found = Demographics(mrn_system=site.mrn_system, mrn=link.subject_id, **margit(person, family=married))
        ehr_status.write(client, ehr, {**status, "other_details": other_details(found)})
        client.create_composition(ehr, vitals(118), template_id=VITALS)
    sync_sites(sites, ehrs)
    link.refresh_from_db()
    patient = fhir.read("Patient", link.fhir_patient_id)
    assert (patient["name"][0]["family"], link.family_name) == (married, married)
    assert int(patient["meta"]["versionId"]) == int(before) + 1  # the same registration, a new version
    assert PatientLink.objects.filter(site=site, ehr_id=ehr).count() == 1
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert person["family"] not in logged and married not in logged and person["birth_date"] not in logged


def test_a_name_changed_without_a_new_composition_is_caught_by_the_demographics_pass(sites, ehrbase_urls, fhir,
                                                                                    person):
    from django.core.management import call_command

    site, url = sites[0], ehrbase_urls[0]
    ehrs = [register(site, url, **margit(person))]
    sync_sites(sites, ehrs)
    link = PatientLink.objects.get(site=site, ehr_id=ehrs[0])
    call_command("sync_demographics", "--site", "site1")  # nothing moved: nothing written
    assert not AuditEvent.objects.filter(action="patient.demographics").exists()
    married = _name()
    with OpenEHRClient(url) as client:
        status = ehr_status.read(client, ehrs[0])
        found = Demographics(mrn_system=site.mrn_system, mrn=link.subject_id, **margit(person, family=married))
        ehr_status.write(client, ehrs[0], {**status, "other_details": other_details(found)})
    call_command("sync_demographics", "--site", "site1")
    link.refresh_from_db()
    assert link.family_name == married and fhir.read("Patient", link.fhir_patient_id)["name"][0]["family"] == married
    [event] = AuditEvent.objects.filter(action="patient.demographics")
    assert event.patient_link_id == link.pk and married not in str(event.detail)


def margit_moved(sites, ehrbase_urls, fhir, person):
    """Margit at site1, and at site2 with a new postal code: MDM MATCHes the first to a golden record and
    holds the second as a POSSIBLE_MATCH for a steward. (ehrs, links, golden, mdm).

    Registered one by one (``registered_one_by_one``), so the golden record is site1's."""
    ehrs, links = registered_one_by_one(fhir, [(sites[0], ehrbase_urls[0], margit(person)),
                                               (sites[1], ehrbase_urls[1], moved(person))])
    mdm = MdmClient(fhir)
    first = link_of(mdm, links[0].fhir_patient_id, wanted=(MATCH,))
    assert link_of(mdm, links[1].fhir_patient_id).match_result == POSSIBLE_MATCH
    return ehrs, links, first.golden, mdm


def central_from_now() -> None:
    """The central poll reads from two seconds ago: the plans the test writes next, not other tests' history."""
    Cursor.objects.update_or_create(source="central", defaults={"position": _now() - timedelta(seconds=2)})


def plan_on(fhir, golden: str, description: str) -> str:
    return fhir.create({"resourceType": "CarePlan", "status": "active", "intent": "plan",
                        "subject": {"reference": golden}, "title": "Tumour board plan",
                        "description": description}).id


def holders(plan_id: str) -> dict[str, str]:
    """EHR id -> composition version of every site record holding the plan."""
    return {rl.patient_link.ehr_id: rl.openehr_version_uid
            for rl in RecordLink.objects.filter(fhir_resources__contains=[{"type": "CarePlan", "id": plan_id}])}


def drive_plan(plan_id: str) -> list[str]:
    return [r.status for r in drive() if r.change_event.source_object_id == f"CarePlan/{plan_id}"]


def test_a_registration_a_steward_links_later_receives_the_plans_next_version(sites, ehrbase_urls, fhir, person):
    """Margit moved: site2 registered her with a new postal code (a possible match). The plan made on her
    golden record reaches site1 only; once the steward says "same person", its next version reaches
    site2 too, and site1 gets the new version of what it already had."""
    ehrs, links, golden, mdm = margit_moved(sites, ehrbase_urls, fhir, person)
    central_from_now()
    plan = plan_on(fhir, golden, "4 cycles AC")

    def deliver():
        poll_central()
        assert drive_plan(plan) == [SyncRun.Status.DONE], list(DeadLetter.objects.values("step", "error"))
        return holders(plan)

    first = deliver()
    assert list(first) == [ehrs[0]]
    mdm.update_link(golden, f"Patient/{links[1].fhir_patient_id}", MATCH)  # the steward's "same person"
    Cursor.objects.filter(source="central").update(position=_now() - timedelta(seconds=2))
    fhir.update({**fhir.read("CarePlan", plan), "description": "4 cycles AC, then G-CSF"})
    second = deliver()
    assert sorted(second) == sorted(ehrs)
    assert second[ehrs[0]].split("::")[0] == first[ehrs[0]].split("::")[0]  # the same composition at site1,
    assert second[ehrs[0]] != first[ehrs[0]]                                 # a new version of it


def test_a_steward_confirmed_registration_gets_the_golden_records_existing_plan_at_once(sites, ehrbase_urls, fhir,
                                                                                        person):
    """No new central version needed: the steward's "same person" backfills the plan to site2, audited with the
    steward's name; a second pass (the beat's sweep, or the same confirm again) starts nothing."""
    from sync.actions.patients import do_confirm_match
    from sync.patients import backfill

    ehrs, links, golden, _ = margit_moved(sites, ehrbase_urls, fhir, person)
    central_from_now()
    plan = plan_on(fhir, golden, "4 cycles AC")
    poll_central()
    assert drive_plan(plan) == [SyncRun.Status.DONE] and list(holders(plan)) == [ehrs[0]]
    before = holders(plan)[ehrs[0]]
    steward = f.make_user("stella@desk.test", f.ROLE_USERS["steward"])
    do_confirm_match(golden, f"Patient/{links[1].fhir_patient_id}", acting_user=steward)
    assert set(drive_plan(plan)) == {SyncRun.Status.DONE}
    held = holders(plan)
    assert sorted(held) == sorted(ehrs) and held[ehrs[0]] == before  # site1's copy untouched
    with OpenEHRClient(ehrbase_urls[1]) as client:  # the plan is at site2 as a composition
        assert client.get_composition(ehrs[1], held[ehrs[1]]).ref.version_uid == held[ehrs[1]]
    event = AuditEvent.objects.get(action="patient.backfill", patient_link_id=links[1].pk)
    assert event.actor == steward.email and event.detail["runs"] >= 1 and event.detail["golden"] == golden
    # A second pass starts nothing for this plan: the beat's sweep (over every golden record of the shared
    # server, where other tests' people may be linking late meanwhile) and the same golden record again.
    backfill.sweep(fhir)
    assert backfill.backfill_golden(fhir, golden.split("/", 1)[1]) == 0
    assert drive_plan(plan) == [] and holders(plan) == held


def test_a_registration_mdm_links_late_gets_the_existing_plan_from_the_sweep(sites, ehrbase_urls, fhir, person):
    """Margit's plan exists before site2 registers her; MDM MATCHes site2's Patient seconds after it is
    written, and the beat's sweep delivers the plan then, with no new version of it."""
    from audit.record import system_actor
    from sync.patients import backfill

    first = register(sites[0], ehrbase_urls[0], **margit(person))
    sync_sites(sites, [first])
    mdm = MdmClient(fhir)
    golden = link_of(mdm, PatientLink.objects.get(ehr_id=first).fhir_patient_id, wanted=(MATCH,)).golden
    central_from_now()
    plan = plan_on(fhir, golden, "Capecitabine, 8 cycles")
    poll_central()
    assert drive_plan(plan) == [SyncRun.Status.DONE] and list(holders(plan)) == [first]
    second = register(sites[1], ehrbase_urls[1], **margit(person, given=("Margrit",)))
    sync_sites(sites, [second])
    link = PatientLink.objects.get(ehr_id=second)
    assert link_of(mdm, link.fhir_patient_id, wanted=(MATCH,)).golden == golden  # MDM, asynchronously
    assert backfill.sweep(fhir) >= 1
    assert set(drive_plan(plan)) == {SyncRun.Status.DONE}
    assert sorted(holders(plan)) == sorted([first, second])
    event = AuditEvent.objects.get(action="patient.backfill", patient_link_id=link.pk)
    assert event.actor == system_actor() and event.detail["golden"] == golden
    assert backfill.sweep(fhir) == 0  # idempotent: nothing new to deliver


def test_a_split_after_delivery_keeps_what_was_delivered_and_routes_nothing_more(sites, ehrbase_urls, fhir, person):
    """The steward confirmed, the plan reached site2, then the steward says "different people": site2's copy
    stays (never silently removed) and the rejection's audit event names it; the plan's next version
    reaches site1 only."""
    from sync.actions.patients import do_confirm_match, do_reject_match

    ehrs, links, golden, _ = margit_moved(sites, ehrbase_urls, fhir, person)
    central_from_now()
    plan = plan_on(fhir, golden, "4 cycles AC")
    poll_central()
    drive_plan(plan)
    steward = f.make_user("sven@desk.test", f.ROLE_USERS["steward"])
    other = f"Patient/{links[1].fhir_patient_id}"
    do_confirm_match(golden, other, acting_user=steward)
    drive_plan(plan)
    delivered = holders(plan)
    assert sorted(delivered) == sorted(ehrs)
    kept = RecordLink.objects.get(patient_link=links[1], fhir_resources__contains=[{"type": "CarePlan", "id": plan}])
    do_reject_match(golden, other, acting_user=steward)
    rejected = AuditEvent.objects.get(action="mdm.match.rejected")
    assert rejected.detail["delivered_stay"] == [kept.pk] and rejected.actor == steward.email
    Cursor.objects.filter(source="central").update(position=_now() - timedelta(seconds=2))
    fhir.update({**fhir.read("CarePlan", plan), "description": "4 cycles AC, then G-CSF"})
    poll_central()
    assert set(drive_plan(plan)) == {SyncRun.Status.DONE}
    after = holders(plan)
    assert after[ehrs[1]] == delivered[ehrs[1]]  # site2's copy neither removed nor updated
    assert after[ehrs[0]] != delivered[ehrs[0]]  # site1 got the new version
    with OpenEHRClient(ehrbase_urls[1]) as client:
        assert client.get_composition(ehrs[1], delivered[ehrs[1]]).ref.version_uid == delivered[ehrs[1]]
