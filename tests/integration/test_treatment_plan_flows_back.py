"""Issue 17's headline, on the real servers: a tumour board plan made at the centre reaches both sites of
its patient, a site's record of an activity done comes back, and the plan edited on both sides between
two syncs is a conflict.  The plan's status travels as ACTION.care_plan.v0 careflow steps: a site marking
the plan completed completes the central CarePlan, a central status change is written at both sites as
the matching step (sync/mapping/careplan_action.py).

A CarePlan with a chemotherapy MedicationRequest, a radiotherapy ServiceRequest (both ``basedOn`` the
plan) and a Goal is created at HAPI in one transaction, for a patient with an EHR at site1 and site2.
Detection and the runs are driven here (poll, then ``advance`` each run), as the dead-letter test of
test_engine_real does: the engine's steps, HAPI, both EHRbases and the audit chain are real.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from django.db.models import Q

from audit.models import AuditEvent
from audit.verify import verify_all
from sync.clients.openehr import OpenEHRClient, template_id_of
from sync.detection import poll_central, poll_site
from sync.mapping import datatypes as dt
from sync.mapping import rmpath
from sync.models import ChangeEvent, Conflict, DeadLetter, Cursor, PatientLink, RecordLink, Site, SyncRun
from sync.workflow import dispatch
from sync.workflow.diff import compare
from sync.workflow.reconcile import reconcile_site
from sync.workflow.runner import advance
from tests.fixtures import REPO_DIR
from tests.mapping.test_oncology_careplan import administration_given

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OPT = (REPO_DIR / "deploy/templates/conflictdesk_oncology.v2.opt").read_bytes()
TEMPLATE = template_id_of(OPT)
PLAN = "openEHR-EHR-INSTRUCTION.care_plan_request.v0"
MEMBERS = [PLAN, "openEHR-EHR-INSTRUCTION.medication_order.v3", "openEHR-EHR-INSTRUCTION.service_request.v1",
           "openEHR-EHR-EVALUATION.goal.v1"]
TERMINAL = {SyncRun.Status.DONE, SyncRun.Status.CONFLICT, SyncRun.Status.DEAD_LETTER}


def _now():
    return datetime.now(timezone.utc)


@pytest.fixture
def sites(transactional_db, ehrbase_urls, monkeypatch):
    monkeypatch.setattr(dispatch, "send", lambda run_id, countdown: None)  # driven here, not by a worker
    out = []
    for n, url in enumerate(ehrbase_urls[:2], start=1):
        with OpenEHRClient(url) as client:
            client.upload_template(OPT)
        out.append(Site.objects.create(name=f"site{n}", openehr_base_url=url, poll_interval_seconds=1,
                                       local_demo=True, template_ids=[TEMPLATE]))
        Cursor.objects.create(source=f"site:site{n}", position=_now() - timedelta(seconds=1))
    return out


@pytest.fixture
def patient(sites, fhir, ehrbase_urls):
    """A central Patient with an EHR at both sites (linked as the patient matching would)."""
    pid = fhir.create({"resourceType": "Patient", "identifier": [
        {"system": "urn:conflictdesk:test", "value": str(uuid.uuid4())}]}).resource["id"]
    ehrs = {}
    for site, url in zip(sites, ehrbase_urls):
        with OpenEHRClient(url) as client:
            ehr = client.create_ehr(subject_id=f"pat-{uuid.uuid4()}", subject_namespace="conflictdesk-test").ehr_id
        PatientLink.objects.create(site=site, ehr_id=ehr, fhir_patient_id=pid)
        ehrs[site.name] = ehr
    return pid, ehrs


def tumour_board(pid: str) -> dict:
    urn = {k: f"urn:uuid:{uuid.uuid4()}" for k in ("plan", "chemo", "rt", "goal")}
    subject = {"reference": f"Patient/{pid}"}
    plan = {"resourceType": "CarePlan", "status": "active", "intent": "plan", "subject": subject,
            "title": "Tumour board plan", "description": "4 cycles AC, then adjuvant whole-breast radiotherapy",
            "period": {"start": "2026-12-01"},
            "activity": [{"reference": {"reference": urn["chemo"]}}, {"reference": {"reference": urn["rt"]}}],
            "goal": [{"reference": urn["goal"]}], "note": [{"text": "tumour board"}]}
    chemo = {"resourceType": "MedicationRequest", "status": "active", "intent": "order", "subject": subject,
             "basedOn": [{"reference": urn["plan"]}],
             "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                       "code": "3002", "display": "cyclophosphamide"}],
                                           "text": "cyclophosphamide"}}
    rt = {"resourceType": "ServiceRequest", "status": "active", "intent": "order", "subject": subject,
          "basedOn": [{"reference": urn["plan"]}], "code": {"text": "Adjuvant radiotherapy"}}
    goal = {"resourceType": "Goal", "lifecycleStatus": "active", "subject": subject,
            "description": {"text": "Disease-free at 5 years"}}
    entries = [(urn["plan"], plan), (urn["chemo"], chemo), (urn["rt"], rt), (urn["goal"], goal)]
    return {"resourceType": "Bundle", "type": "transaction",
            "entry": [{"fullUrl": u, "resource": r, "request": {"method": "POST", "url": r["resourceType"]}}
                      for u, r in entries]}


def drive(ehrs: dict | None = None) -> list[SyncRun]:
    """Advance every central run not finished yet, and the site runs of ``ehrs`` (the shared CDRs hold
    other tests' compositions too: theirs are not driven), oldest first, until each is terminal."""
    runs = []
    pending = SyncRun.objects.exclude(status__in=TERMINAL)
    pending = pending.filter(Q(change_event__source="central") | Q(change_event__ehr_id__in=list((ehrs or {}).values())))
    for run in pending.order_by("pk"):
        for _ in range(20):
            if advance(run.pk, "test") in TERMINAL:
                break
            SyncRun.objects.filter(pk=run.pk).update(next_attempt_at=None)
        runs.append(SyncRun.objects.get(pk=run.pk))
    return runs


def plan_links(plan_id: str) -> list[RecordLink]:
    return list(RecordLink.objects.filter(fhir_resources__contains=[{"type": "CarePlan", "id": plan_id}]))


def _created(answer) -> dict[str, str]:
    return {e.resource_type: e.id for e in answer.entries}


@pytest.fixture
def delivered(sites, patient, fhir, ehrbase_urls):
    """The tumour board plan made at HAPI and carried to both sites."""
    pid, ehrs = patient
    Cursor.objects.update_or_create(source="central", defaults={"position": _now() - timedelta(seconds=2)})
    ids = _created(fhir.transaction(tumour_board(pid), representation=True))
    poll_central()
    mine = {f"{t}/{i}" for t, i in ids.items()}  # the shared HAPI holds other tests' changes too: not asserted on
    runs = [r for r in drive() if r.change_event.source_object_id in mine]
    for site in sites:  # the engine's own writes come back through detection as echoes, not runs
        poll_site(site)
    assert drive(ehrs) == []
    assert {e.status for e in ChangeEvent.objects.filter(ehr_id__in=list(ehrs.values()))} == {"echo"}
    return pid, ehrs, ids, runs


def test_a_central_tumour_board_plan_reaches_both_sites_as_one_composition_each(delivered, sites, ehrbase_urls):
    pid, ehrs, ids, runs = delivered
    assert {r.status for r in runs} == {SyncRun.Status.DONE}, list(DeadLetter.objects.values("cause", "rule", "path", "error"))
    links = plan_links(ids["CarePlan"])
    assert sorted(link.site.name for link in links) == ["site1", "site2"]
    for link, url in ((link, dict(zip(("site1", "site2"), ehrbase_urls))[link.site.name]) for link in links):
        assert link.template_id == TEMPLATE
        assert sorted(r["type"] for r in link.fhir_resources) == ["CarePlan", "Goal", "MedicationRequest",
                                                                   "ServiceRequest"]
        with OpenEHRClient(url) as client:
            comp = client.get_composition(ehrs[link.site.name], link.openehr_version_uid).content
        assert comp["archetype_details"]["template_id"]["value"] == TEMPLATE
        entries = [e for _, e in rmpath.entries(comp)]
        assert [e["archetype_node_id"] for e in entries] == MEMBERS
        # the same feeder audit as any reverse write: each entry names the central resource it came from
        named = [i["id"].split("/_history/")[0] for e in entries
                 for i in e["feeder_audit"]["originating_system_item_ids"][:1]]
        assert named == [f"{t}/{ids[t]}" for t in ("CarePlan", "MedicationRequest", "ServiceRequest", "Goal")]
    # one composition per site: the order and the referral (basedOn the plan) made no record of their own
    assert RecordLink.objects.count() == 2
    plan_run = next(r for r in runs if r.change_event.source_object_id == f"CarePlan/{ids['CarePlan']}")
    audit = AuditEvent.objects.get(run_id=plan_run.pk, action="sync.audit")
    assert audit.outcome == "ok" and audit.destination == "site:%d,site:%d" % tuple(sorted(s.pk for s in sites))
    assert [r.broken for r in verify_all() if r.broken] == []


def test_a_site_records_the_chemotherapy_given_and_the_centre_gets_it(delivered, fhir, ehrbase_urls):
    pid, ehrs, ids, _ = delivered
    link = next(x for x in plan_links(ids["CarePlan"]) if x.site.name == "site1")
    with OpenEHRClient(ehrbase_urls[0]) as client:
        comp = client.get_composition(ehrs["site1"], link.openehr_version_uid).content
        comp["content"].append(administration_given("cyclophosphamide"))
        client.update_composition(ehrs["site1"], link.openehr_version_uid, comp)
    poll_site(link.site)
    runs = drive(ehrs)
    assert [r.status for r in runs] == [SyncRun.Status.DONE]
    given = list(fhir.search("MedicationAdministration", {"subject": f"Patient/{pid}"}))
    assert [(r["status"], r["medicationCodeableConcept"]["text"]) for r in given] == [("completed", "cyclophosphamide")]
    # the plan, its order, referral and goal are still the centre's own resources, none twinned or retired
    plan = fhir.read("CarePlan", ids["CarePlan"])
    assert (plan["status"], plan["title"]) == ("active", "Tumour board plan")
    assert [a["reference"]["reference"] for a in plan["activity"]] == [
        f"MedicationRequest/{ids['MedicationRequest']}", f"ServiceRequest/{ids['ServiceRequest']}"]
    assert plan["goal"] == [{"reference": f"Goal/{ids['Goal']}"}]
    for rtype in ("CarePlan", "MedicationRequest", "ServiceRequest", "Goal"):
        assert [r["id"] for r in fhir.search(rtype, {"subject": f"Patient/{pid}"})] == [ids[rtype]]
    assert fhir.read("MedicationRequest", ids["MedicationRequest"])["status"] == "active"


def test_the_plan_edited_at_the_centre_and_at_a_site_between_syncs_is_a_conflict(delivered, fhir, ehrbase_urls, sites):
    pid, ehrs, ids, _ = delivered
    started = _now()
    link = next(x for x in plan_links(ids["CarePlan"]) if x.site.name == "site2")
    with OpenEHRClient(ehrbase_urls[1]) as client:
        comp = client.get_composition(ehrs["site2"], link.openehr_version_uid).content
        plan = next(e for _, e in rmpath.entries(comp) if e["archetype_node_id"] == PLAN)
        description = plan["activities"][0]["description"]["items"]
        next(i for i in description if i["archetype_node_id"] == "at0007")["value"]["value"] = "6 cycles AC"
        site_edit = client.update_composition(ehrs["site2"], link.openehr_version_uid, comp)
    central = fhir.read("CarePlan", ids["CarePlan"])
    fhir.update({**central, "description": "4 cycles AC, then radiotherapy to the chest wall"},
                if_match_version=central["meta"]["versionId"])
    poll_central()
    runs = [r for r in drive(ehrs) if r.change_event.source_object_id == f"CarePlan/{ids['CarePlan']}"]
    assert SyncRun.Status.CONFLICT in {r.status for r in runs}, list(DeadLetter.objects.values("cause", "rule", "path", "error"))
    conflict = Conflict.objects.get(openehr_version_uid=site_edit.version_uid)
    assert conflict.status == Conflict.Status.OPEN
    [central_plan] = [r for r in conflict.fhir_resources if r["resourceType"] == "CarePlan"]
    assert central_plan["description"] == "4 cycles AC, then radiotherapy to the chest wall"
    # the desk shows it side by side: the plan's description, changed on both sides, as one field
    [field] = [f for f in compare(conflict).fields if f.key == f"CarePlan/{ids['CarePlan']}" and f.element == "description"]
    assert (field.site, field.central, field.changed_on) == (
        "6 cycles AC", "4 cycles AC, then radiotherapy to the chest wall", "both")
    with OpenEHRClient(ehrbase_urls[1]) as client:
        now = client.get_composition(ehrs["site2"], link.versioned_object_uid)
    assert now.ref.version_uid == site_edit.version_uid  # nothing was written over the site's edit
    for site in sites:  # the sites' own commits (the engine's writes, site2's edit) are detected too
        poll_site(site)
    later = drive(ehrs)
    assert {r.status for r in later} <= {SyncRun.Status.DONE, SyncRun.Status.CONFLICT}, \
        list(DeadLetter.objects.values("cause", "rule", "path", "error"))
    for site in sites:
        report = reconcile_site(site, started - timedelta(seconds=1), _now(), ehr_id=ehrs[site.name])
        assert report.unaccounted == [], (site.name, dict(report.by_state))
    assert [r.broken for r in verify_all() if r.broken] == []


def test_an_allergy_recorded_at_the_centre_reaches_both_sites(sites, patient, fhir, ehrbase_urls):
    pid, ehrs = patient
    Cursor.objects.update_or_create(source="central", defaults={"position": _now() - timedelta(seconds=2)})
    allergy = fhir.create({
        "resourceType": "AllergyIntolerance", "patient": {"reference": f"Patient/{pid}"},
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                                       "code": "active"}]},
        "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
                                           "code": "confirmed"}]},
        "category": ["medication"], "criticality": "high", "code": {"text": "Carboplatin"},
        "reaction": [{"manifestation": [{"text": "Anaphylaxis"}], "severity": "severe"}]}).resource
    poll_central()
    mine = [r for r in drive(ehrs) if r.change_event.source_object_id == f"AllergyIntolerance/{allergy['id']}"]
    assert [r.status for r in mine] == [SyncRun.Status.DONE], list(DeadLetter.objects.values("cause", "rule", "error"))
    links = list(RecordLink.objects.filter(fhir_resources__contains=[{"type": "AllergyIntolerance", "id": allergy["id"]}]))
    assert sorted(link.site.name for link in links) == ["site1", "site2"]
    for link in links:
        url = dict(zip(("site1", "site2"), ehrbase_urls))[link.site.name]
        with OpenEHRClient(url) as client:
            comp = client.get_composition(ehrs[link.site.name], link.openehr_version_uid).content
        [entry] = [e for _, e in rmpath.entries(comp)]
        assert entry["archetype_node_id"] == "openEHR-EHR-EVALUATION.adverse_reaction_risk.v2"
        [event] = [i for i in entry["data"]["items"] if i["archetype_node_id"] == "openEHR-EHR-CLUSTER.adverse_reaction_event.v1"]
        assert {i["value"]["value"] for i in event["items"]} >= {"Anaphylaxis", "Severe"}


def plan_step(at: str, text: str, state: str, code: str, when: str) -> dict:
    """ACTION.care_plan.v0 acting on the composition's plan (its careflow step ``at``, ISM state ``code``)."""
    return {"_type": "ACTION", "name": {"_type": "DV_TEXT", "value": "Care Plan"}, "archetype_node_id": STEP,
            "archetype_details": {"_type": "ARCHETYPED", "archetype_id": {"_type": "ARCHETYPE_ID", "value": STEP},
                                  "rm_version": "1.0.4"},
            "language": dt.code_phrase("ISO_639-1", "en"), "encoding": dt.code_phrase("IANA_character-sets", "UTF-8"),
            "subject": {"_type": "PARTY_SELF"}, "time": {"_type": "DV_DATE_TIME", "value": when},
            "ism_transition": {"_type": "ISM_TRANSITION", "current_state": dt.coded_text(state, "openehr", code),
                               "careflow_step": dt.coded_text(text, "local", at)},
            "description": {"_type": "ITEM_TREE", "name": {"_type": "DV_TEXT", "value": "Tree"},
                            "archetype_node_id": "at0019", "items": []},
            "instruction_details": {"_type": "INSTRUCTION_DETAILS", "activity_id": "activities[at0001]",
                                    "instruction_id": {"_type": "LOCATABLE_REF", "namespace": "local",
                                                       "type": "INSTRUCTION", "path": f"/content[{PLAN}]",
                                                       "id": {"_type": "HIER_OBJECT_ID", "value": str(uuid.uuid4())}}}}


STEP = "openEHR-EHR-ACTION.care_plan.v0"
ISM = "https://conflictdesk.example.org/fhir/StructureDefinition/openehr-ism-transition"


def dead() -> list:
    return list(DeadLetter.objects.values("cause", "rule", "path", "error"))


def _steps(comp) -> list[tuple[str, str]]:
    return [(e["ism_transition"]["current_state"]["defining_code"]["code_string"],
             e["ism_transition"]["careflow_step"]["defining_code"]["code_string"])
            for _, e in rmpath.entries(comp) if e["archetype_node_id"] == STEP]


def test_a_site_marks_the_plan_completed_and_the_central_care_plan_is_completed(delivered, fhir, ehrbase_urls, sites):
    pid, ehrs, ids, _ = delivered
    started = _now()
    link = next(x for x in plan_links(ids["CarePlan"]) if x.site.name == "site1")
    with OpenEHRClient(ehrbase_urls[0]) as client:
        comp = client.get_composition(ehrs["site1"], link.openehr_version_uid).content
        done = plan_step("at0013", "Care Plan Completed", "completed", "532", "2026-12-05T16:00:00+01:00")
        comp["content"].append(done)
        client.update_composition(ehrs["site1"], link.openehr_version_uid, comp)
    poll_site(link.site)
    runs = drive(ehrs)
    assert [r.status for r in runs] == [SyncRun.Status.DONE], dead()
    plan = fhir.read("CarePlan", ids["CarePlan"])
    assert (plan["status"], plan["title"], plan["period"].get("end")) == ("completed", "Tumour board plan",
                                                                          "2026-12-05T16:00:00+01:00")
    [ext] = [e for e in plan["extension"] if e["url"] == ISM]
    assert {x["url"]: x["valueCoding"]["code"] for x in ext["extension"]} == {"currentState": "532",
                                                                               "careflowStep": "at0013"}
    # no second plan: the step is the plan's status, and the plan still names its order, referral and goal
    assert [r["id"] for r in fhir.search("CarePlan", {"subject": f"Patient/{pid}"})] == [ids["CarePlan"]]
    assert [a["reference"]["reference"] for a in plan["activity"]] == [
        f"MedicationRequest/{ids['MedicationRequest']}", f"ServiceRequest/{ids['ServiceRequest']}"]
    # the engine's own write at the centre comes back as an echo (no run): site1 keeps its one step, none is
    # written back over it
    poll_central()
    assert {r.status for r in drive(ehrs)} <= {SyncRun.Status.DONE}, dead()
    with OpenEHRClient(ehrbase_urls[0]) as client:
        comp1 = client.get_composition(ehrs["site1"], link.versioned_object_uid).content
    assert _steps(comp1) == [("532", "at0013")]
    for site in sites:
        poll_site(site)
    assert {r.status for r in drive(ehrs)} <= {SyncRun.Status.DONE}
    for site in sites:
        report = reconcile_site(site, started - timedelta(seconds=1), _now(), ehr_id=ehrs[site.name])
        assert report.unaccounted == [], (site.name, dict(report.by_state))
    assert [r.broken for r in verify_all() if r.broken] == []


def test_a_central_status_change_writes_the_careflow_step_at_both_sites(delivered, fhir, ehrbase_urls, sites):
    pid, ehrs, ids, _ = delivered
    central = fhir.read("CarePlan", ids["CarePlan"])
    fhir.update({**central, "status": "on-hold"}, if_match_version=central["meta"]["versionId"])
    poll_central()
    runs = [r for r in drive(ehrs) if r.change_event.source_object_id == f"CarePlan/{ids['CarePlan']}"]
    assert {r.status for r in runs} == {SyncRun.Status.DONE}, dead()
    for link in plan_links(ids["CarePlan"]):
        url = dict(zip(("site1", "site2"), ehrbase_urls))[link.site.name]
        with OpenEHRClient(url) as client:
            comp = client.get_composition(ehrs[link.site.name], link.versioned_object_uid).content
        assert _steps(comp) == [("530", "at0035")]  # Care Plan Suspended
        assert [e["archetype_node_id"] for _, e in rmpath.entries(comp)] == MEMBERS + [STEP]
    for site in sites:  # the engine's writes come back as echoes
        poll_site(site)
    assert drive(ehrs) == []
    assert fhir.read("CarePlan", ids["CarePlan"])["meta"]["versionId"] == str(int(central["meta"]["versionId"]) + 1)
