"""Deletions and corrections both ways, on real EHRbase and HAPI (issue 20).

Runs are driven in this process with ``advance`` (no worker needed, every
server real), as in test_engine_resolution. Each test makes its own EHR and
subject, so reruns never collide on the shared servers.
"""
from __future__ import annotations

import html
import re
from datetime import datetime, timedelta, timezone

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from sync.clients.errors import NotFound
from sync.clients.openehr import OpenEHRClient, template_id_of
from sync.detection import check_deletions, poll_central, poll_site
from sync.identity import provenance_id
from sync.models import ChangeEvent, Conflict, Cursor, DeadLetter, RecordLink, Site, SyncRun
from sync.workflow import dispatch
from sync.workflow.deletion import is_retired
from sync.workflow.reconcile import reconcile_site
from sync.workflow.runner import advance
from tests.fixtures import OPENEHR_CORPUS, REPO_DIR
from tests.harness.vitals import TEMPERATURE_LOINC, vitals_with_temperature

pytestmark = [pytest.mark.integration]

TEMPLATE = "vital_signs_ehrn"
SYSTOLIC = "ehrn_vital_signs.v2/vital_signs:0/blood_pressure:0/any_event:0/systolic|magnitude"
OPEN = ["pending", "running", "retry_wait", "waiting"]


def _now():
    return datetime.now(timezone.utc)


@pytest.fixture
def cdr(ehrbase_urls):
    with OpenEHRClient(ehrbase_urls[0]) as client:
        client.upload_template((OPENEHR_CORPUS / "templates" / f"{TEMPLATE}.opt").read_bytes())
        yield client


@pytest.fixture
def site(db, ehrbase_urls, monkeypatch):
    monkeypatch.setattr(dispatch, "send", lambda run_id, countdown: None)  # driven here
    site = Site.objects.create(name="site1", openehr_base_url=ehrbase_urls[0], poll_interval_seconds=1, local_demo=True,
                               template_ids=[tid()])
    Cursor.objects.create(source="site:site1", position=_now() - timedelta(seconds=1))
    Cursor.objects.create(source="central", position=_now() - timedelta(seconds=1))
    return site


def vitals(bp: float, temp: float | None = None) -> dict:
    """The corpus vital signs with a systolic value, and a body temperature entry when ``temp`` is given."""
    return vitals_with_temperature(bp, temp)


def tid():
    return template_id_of((OPENEHR_CORPUS / "templates" / f"{TEMPLATE}.opt").read_bytes())


def drive(ehr) -> list[str]:
    """Run this EHR's open site runs to their end, oldest first (central ones: ``drive_central``)."""
    runs = SyncRun.objects.filter(status__in=OPEN, change_event__ehr_id=ehr).order_by("pk")
    return [advance(run.pk, "test") for run in runs]


def synced(cdr, site, ehr, composition):
    ref = cdr.create_composition(ehr, composition, template_id=tid())
    poll_site(site)
    assert drive(ehr) == ["done"]
    return ref, RecordLink.objects.get(versioned_object_uid=ref.uid)


def code_of(resource) -> str:
    return ((resource.get("code") or {}).get("coding") or [{}])[0].get("code", "")


@pytest.fixture
def auditor(db):
    from django.test import Client

    from tests.desk import factories

    client = Client()
    client.force_login(factories.make_user("aud-del@desk.test", factories.ROLE_USERS["auditor"]))
    return client


def test_a_deleted_composition_marks_every_central_resource_entered_in_error(cdr, fhir, site, ehr, auditor):
    started = _now()
    v1, link = synced(cdr, site, ehr, vitals(120, 37.2))
    before = {r["id"]: fhir.read(r["type"], r["id"]) for r in link.fhir_resources}
    cdr.delete_composition(ehr, v1.version_uid)
    assert check_deletions(site) == 1  # the deletion schedule finds it
    run = SyncRun.objects.get(change_event__source_object_id=v1.uid, change_event__change_type="deleted")
    deleted_uid = run.change_event.source_version
    assert deleted_uid == cdr.revision_history(ehr, v1.uid)[-1].version_uid
    assert advance(run.pk, "test") == SyncRun.Status.DONE
    for r in link.fhir_resources:
        now = fhir.read(r["type"], r["id"])  # still readable, not physically deleted
        assert is_retired(now) and int(now["meta"]["versionId"]) == int(r["version"]) + 1
        assert fhir.vread(r["type"], r["id"], r["version"]) == before[r["id"]]  # the history stays
    provenance = fhir.read("Provenance", provenance_id(f"{deleted_uid}|deleted"))
    assert provenance["activity"]["coding"][0]["code"] == "DELETE"
    assert {t["reference"] for t in provenance["target"]} == {f"{r['type']}/{r['id']}" for r in link.fhir_resources}
    # who deleted it at the site and when, from the site's own audit of the deletion version
    deletion = cdr.revision_history(ehr, v1.uid)[-1]
    assert deletion.committer and provenance["occurredDateTime"][:19] == deletion.committed_at[:19]
    [performer] = [a for a in provenance["agent"] if a["type"]["coding"][0]["code"] == "performer"]
    assert performer["who"] == {"display": deletion.committer}
    assert performer["onBehalfOf"]["identifier"]["value"] == site.name
    write = AuditEvent.objects.get(run_id=run.pk, action="sync.write")
    assert sorted(write.detail["entered_in_error"]) == sorted(f"{r['type']}/{r['id']}" for r in link.fhir_resources)
    link.refresh_from_db()
    assert link.deleted and link.openehr_version_uid == deleted_uid
    poll_central()  # our entered-in-error versions come back as echoes, never as a change for the site
    assert drive(ehr) == []
    report = reconcile_site(site, started - timedelta(seconds=1), _now(), ehr_id=ehr)
    assert report.unaccounted == [] and deleted_uid in report.by_state["synced"]
    custody = auditor.get(reverse("desk:audit_record"), {"key": run.record_key}).content.decode()
    assert "composition v2 detected: deleted" in custody
    assert f"{len(link.fhir_resources)} resources marked entered-in-error" in custody
    # Accounted only while its effect is visible: a central resource live again makes it unaccounted.
    first = next(r for r in link.fhir_resources if r["type"] == "Observation")
    live = fhir.read(first["type"], first["id"])
    fhir.update({**live, "status": "final"}, if_match_version=live["meta"]["versionId"])
    report = reconcile_site(site, started - timedelta(seconds=1), _now(), ehr_id=ehr)
    assert deleted_uid in report.unaccounted


def test_a_new_version_without_an_entry_marks_that_entrys_resources_only(cdr, fhir, site, ehr):
    started = _now()
    v1, link = synced(cdr, site, ehr, vitals(120, 37.2))
    temperature = [r for r in link.fhir_resources if code_of(fhir.read(r["type"], r["id"])) == TEMPERATURE_LOINC]
    assert len(temperature) == 1
    v2 = cdr.update_composition(ehr, v1.version_uid, vitals(125), template_id=tid())
    poll_site(site)
    assert drive(ehr) == ["done"]
    for r in link.fhir_resources:
        assert is_retired(fhir.read(r["type"], r["id"])) == (r in temperature)
    link.refresh_from_db()
    assert not link.deleted and link.openehr_version_uid == v2.version_uid
    assert temperature[0]["id"] not in {r["id"] for r in link.fhir_resources}
    provenance = fhir.read("Provenance", provenance_id(f"{v2.version_uid}|deleted"))
    assert provenance["target"] == [{"reference": f"Observation/{temperature[0]['id']}"}]
    # reconcile: the correction is accounted while its effect is visible centrally, not once the entry is live again
    report = reconcile_site(site, started - timedelta(seconds=1), _now(), ehr_id=ehr)
    assert report.unaccounted == [] and v2.version_uid in report.by_state["synced"]
    live = fhir.read(temperature[0]["type"], temperature[0]["id"])
    fhir.update({**live, "status": "final"}, if_match_version=live["meta"]["versionId"])
    report = reconcile_site(site, started - timedelta(seconds=1), _now(), ehr_id=ehr)
    assert report.unaccounted == [v2.version_uid]  # v1 stays superseded, v2 no longer accounted


def test_a_deletion_run_replayed_after_its_write_writes_nothing_twice(cdr, fhir, site, ehr):
    v1, link = synced(cdr, site, ehr, vitals(118, 36.9))
    cdr.delete_composition(ehr, v1.version_uid)
    check_deletions(site)
    run = SyncRun.objects.get(change_event__source_object_id=v1.uid, change_event__change_type="deleted")
    assert advance(run.pk, "test") == SyncRun.Status.DONE
    versions = {r["id"]: fhir.read(r["type"], r["id"])["meta"]["versionId"] for r in link.fhir_resources}
    assert check_deletions(site) == 0  # recorded once
    ChangeEvent.objects.filter(pk=run.change_event_id).update(status="pending")
    SyncRun.objects.filter(pk=run.pk).update(status="pending", step="write", checkpoint={
        **SyncRun.objects.get(pk=run.pk).checkpoint, "plan": "write"})
    assert advance(run.pk, "test") in (SyncRun.Status.DONE, SyncRun.Status.CONFLICT, SyncRun.Status.RETRY_WAIT)
    assert {r["id"]: fhir.read(r["type"], r["id"])["meta"]["versionId"] for r in link.fhir_resources} == versions




def drive_central(refs) -> list[str]:
    """Poll the centre and run the runs of these resources (the shared server holds others' traffic too)."""
    poll_central()
    runs = SyncRun.objects.filter(status__in=OPEN, change_event__source="central",
                                  change_event__source_object_id__in=list(refs)).order_by("pk")
    return [advance(run.pk, "test") for run in runs]


def refs_of(link) -> list[str]:
    return [f"{r['type']}/{r['id']}" for r in link.fhir_resources]


def unreferenced(fhir, link, ref, version_uid):
    """What a person does before HAPI lets them delete a resource: drop the references to it.

    HAPI enforces referential integrity on delete; the record's FHIR Composition lists the
    entry and the sync's Provenance targets it.
    """
    fhir.delete("Provenance", provenance_id(version_uid))
    for r in link.fhir_resources:
        if r["type"] == "Composition":
            doc = fhir.read(r["type"], r["id"])
            for section in doc.get("section", []):
                section["entry"] = [e for e in section.get("entry", []) if e.get("reference") != ref]
            fhir.update(doc, if_match_version=doc["meta"]["versionId"])


def test_a_central_deletion_takes_the_entry_out_at_the_site_with_a_feeder_audit(cdr, fhir, site, ehr):
    v1, link = synced(cdr, site, ehr, vitals(121, 37.9))
    temperature = next(r for r in link.fhir_resources if code_of(fhir.read(r["type"], r["id"])) == TEMPERATURE_LOINC)
    ref = f"{temperature['type']}/{temperature['id']}"
    unreferenced(fhir, link, ref, v1.version_uid)
    fhir.delete(temperature["type"], temperature["id"])
    assert set(drive_central([f"{r['type']}/{r['id']}" for r in link.fhir_resources])) == {"done"}
    latest = cdr.get_composition(ehr, v1.uid)
    flat = cdr.get_composition(ehr, latest.ref.version_uid, flat=True).content
    assert flat[SYSTOLIC] == 121 and not any("body_temperature" in k for k in flat)
    event = ChangeEvent.objects.get(source="central", source_object_id=ref, change_type="deleted")
    feeder = latest.content["feeder_audit"]
    assert feeder["originating_system_item_ids"][0]["id"] == f"{ref}/_history/{event.source_version}"
    link.refresh_from_db()
    assert not link.deleted and link.openehr_version_uid == latest.ref.version_uid
    assert ref not in {f"{r['type']}/{r['id']}" for r in link.fhir_resources}
    poll_site(site)  # our own version 2 comes back as an echo
    assert drive(ehr) == [] and ChangeEvent.objects.get(source_version=latest.ref.version_uid).status == "echo"


def test_entered_in_error_centrally_deletes_a_composition_with_nothing_else_left(cdr, fhir, site, ehr):
    started = _now()
    v1, link = synced(cdr, site, ehr, vitals(119))
    refs = [f"{r['type']}/{r['id']}" for r in link.fhir_resources]
    clinical = [r for r in link.fhir_resources if r["type"] not in ("Encounter", "Composition")]
    assert len(clinical) == 1
    resource = fhir.read(clinical[0]["type"], clinical[0]["id"])
    fhir.update({**resource, "status": "entered-in-error"}, if_match_version=resource["meta"]["versionId"])
    assert drive_central(refs) == ["done"]
    with pytest.raises(NotFound):
        cdr.get_composition(ehr, v1.uid)
    deletion = cdr.revision_history(ehr, v1.uid)[-1]
    assert deletion.change_type == "deleted"
    # No FEEDER_AUDIT on a whole-composition DELETE (EHRbase takes no body): the run's audit names the central
    # version that asked for it and carries the site's own audit of the deletion (who, when, which system).
    run = SyncRun.objects.get(change_event__source="central", change_event__source_object_id__in=refs)
    write = AuditEvent.objects.get(run_id=run.pk, action="sync.write")
    assert write.destination_version == deletion.version_uid
    assert write.detail["site_audit"] == [{"version_uid": deletion.version_uid, "change_type": "deleted",
                                           "time_committed": deletion.committed_at, "committer": deletion.committer,
                                           "system_id": deletion.system_id}]
    assert deletion.committer and deletion.system_id and deletion.committed_at  # EHRbase names them
    assert {(e.source_object, e.source_version) for e in AuditEvent.objects.filter(run_id=run.pk)} == {
        (run.change_event.source_object_id, run.change_event.source_version)}
    link.refresh_from_db()
    assert link.deleted
    assert check_deletions(site) == 0  # our own deletion: an echo, no run
    report = reconcile_site(site, started - timedelta(seconds=1), _now(), ehr_id=ehr)
    assert report.unaccounted == []


def test_a_composition_deleted_for_a_central_removal_retires_what_was_left_centrally(cdr, fhir, site, ehr):
    """Nothing stays live for a record gone at both sides: the Encounter and Composition follow its last entry."""
    v1, link = synced(cdr, site, ehr, vitals(122))
    leftovers = [r for r in link.fhir_resources if r["type"] in ("Encounter", "Composition")]
    assert {r["type"] for r in leftovers} == {"Encounter", "Composition"}
    bp = next(r for r in link.fhir_resources if r["type"] == "Observation")
    resource = fhir.read(bp["type"], bp["id"])
    fhir.update({**resource, "status": "entered-in-error"}, if_match_version=resource["meta"]["versionId"])
    assert drive_central(refs_of(link)) == ["done"]
    with pytest.raises(NotFound):
        cdr.get_composition(ehr, v1.uid)
    now = {r["type"]: fhir.read(r["type"], r["id"]) for r in leftovers}
    assert all(is_retired(r) for r in now.values())
    deleted_version = cdr.revision_history(ehr, v1.uid)[-1].version_uid
    provenance = fhir.read("Provenance", provenance_id(f"{deleted_version}|deleted"))
    assert {t["reference"] for t in provenance["target"]} == {f"{r['type']}/{r['id']}" for r in leftovers}
    event = AuditEvent.objects.filter(action__startswith="sync.", detail__entered_in_error__isnull=False).latest("pk")
    assert set(event.detail["entered_in_error"]) == {f"{r['type']}/{r['id']}" for r in leftovers}
    assert drive_central(refs_of(link)) == []  # the retirements are our own writes: echoes, no run


@pytest.fixture
def clinician(db, client):
    from tests.desk import factories

    user = factories.make_user("dr-del@desk.test", factories.ROLE_USERS["clinician"])
    client.force_login(user)
    return client


def decide_on_desk(desk, conflict, label_words: str) -> SyncRun:
    """Open the conflict page as a clinician, pick the decision whose label holds ``label_words``, post it."""
    page = desk.get(reverse("desk:conflict", args=[conflict.pk])).content.decode()
    form = page[page.index('id="decision"'):]
    labels = re.findall(r'value="(keep_\w+)"[^>]*>\s*([^<]+)</label>', form)
    choice = next(value for value, label in labels if label_words in label)
    seen = html.unescape(re.search(r'name="seen" value="([^"]*)"', form).group(1))
    answer = desk.post(reverse("desk:conflict_decide", args=[conflict.pk]),
                       {"choice": choice, "reason": "confirmed with the ward", "seen": seen})
    assert answer.status_code == 302, answer.content.decode()[:500]
    return SyncRun.objects.get(resolution__conflict=conflict)


def test_a_correction_dropping_an_entry_the_centre_edited_is_a_conflict_never_applied(cdr, fhir, site, ehr):
    """An entry deleted by a site correction while the centre edited it: a clinician decides, nothing is retired."""
    v1, link = synced(cdr, site, ehr, vitals(120, 37.2))
    temperature = next(r for r in link.fhir_resources if code_of(fhir.read(r["type"], r["id"])) == TEMPERATURE_LOINC)
    resource = fhir.read(temperature["type"], temperature["id"])
    resource["valueQuantity"]["value"] = 38.4
    fhir.update(resource, if_match_version=resource["meta"]["versionId"])
    cdr.update_composition(ehr, v1.version_uid, vitals(120), template_id=tid())  # the temperature entry dropped
    poll_site(site)
    assert drive(ehr) == ["conflict"]
    now = fhir.read(temperature["type"], temperature["id"])
    assert not is_retired(now) and now["valueQuantity"]["value"] == 38.4  # never auto-resolved
    assert Conflict.objects.filter(record_link=link, status="open").count() == 1


def site_deleted_central_edited(cdr, fhir, site, ehr):
    """v1 synced; the centre edits the blood pressure; the site deletes the composition: a conflict."""
    v1, link = synced(cdr, site, ehr, vitals(120))
    bp = next(r for r in link.fhir_resources if r["type"] == "Observation")
    resource = fhir.read(bp["type"], bp["id"])
    resource["component"][0]["valueQuantity"]["value"] = 141
    fhir.update(resource, if_match_version=resource["meta"]["versionId"])
    cdr.delete_composition(ehr, v1.version_uid)
    check_deletions(site)
    assert drive(ehr) == ["conflict"]
    return v1, link, bp, Conflict.objects.get(record_link=link, status="open")


def test_a_site_deletion_over_a_central_edit_is_a_conflict_shown_as_deleted_and_changed(cdr, fhir, site, ehr,
                                                                                         clinician):
    v1, link, bp, conflict = site_deleted_central_edited(cdr, fhir, site, ehr)
    assert conflict.deleted_on == "site" and conflict.openehr_changed_at and conflict.fhir_changed_at
    assert not is_retired(fhir.read(bp["type"], bp["id"]))  # never auto-resolved: nothing applied
    page = clinician.get(reverse("desk:conflict", args=[conflict.pk])).content.decode()
    assert "Deleted at site1" in page and "changed centrally" in page
    assert "keep the deletion" in page and "keep the central edit" in page


def test_keeping_the_site_deletion_marks_the_central_record_entered_in_error(cdr, fhir, site, ehr, clinician):
    v1, link, bp, conflict = site_deleted_central_edited(cdr, fhir, site, ehr)
    run = decide_on_desk(clinician, conflict, "keep the deletion")
    assert advance(run.pk, "test") == SyncRun.Status.DONE
    assert all(is_retired(fhir.read(r["type"], r["id"])) for r in link.fhir_resources if r["type"] == "Observation")
    deletion = cdr.revision_history(ehr, v1.uid)[-1]  # who deleted it at the site and when, in the DELETE Provenance
    provenance = fhir.read("Provenance", provenance_id(f"{deletion.version_uid}|deleted"))
    assert provenance["activity"]["coding"][0]["code"] == "DELETE"
    assert provenance["occurredDateTime"][:19] == deletion.committed_at[:19]
    assert {"display": deletion.committer} in [a["who"] for a in provenance["agent"]]
    with pytest.raises(NotFound):
        cdr.get_composition(ehr, v1.uid)  # the site stays deleted
    link.refresh_from_db()
    assert link.deleted


def test_keeping_the_central_edit_restores_the_composition_at_the_site(cdr, fhir, site, ehr, clinician):
    v1, link, bp, conflict = site_deleted_central_edited(cdr, fhir, site, ehr)
    run = decide_on_desk(clinician, conflict, "keep the central edit")
    letter = DeadLetter.objects.filter(run=run).values("rule", "path")
    assert advance(run.pk, "test") == SyncRun.Status.DONE, letter.first()
    restored = cdr.get_composition(ehr, v1.uid)
    assert restored.ref.version == 3  # v2 is the deletion
    assert cdr.get_composition(ehr, restored.ref.version_uid, flat=True).content[SYSTOLIC] == 141
    link.refresh_from_db()
    assert not link.deleted and link.openehr_version_uid == restored.ref.version_uid
    assert not is_retired(fhir.read(bp["type"], bp["id"]))
    poll_site(site)
    assert drive(ehr) == []  # the restored version is our own write: an echo


def central_retired_site_edited(cdr, fhir, site, ehr):
    """v1 synced; the site edits (not yet polled); the centre marks the record entered-in-error: a conflict."""
    v1, link = synced(cdr, site, ehr, vitals(120))
    v2 = cdr.update_composition(ehr, v1.version_uid, vitals(133), template_id=tid())
    bp = next(r for r in link.fhir_resources if r["type"] == "Observation")
    resource = fhir.read(bp["type"], bp["id"])
    fhir.update({**resource, "status": "entered-in-error"}, if_match_version=resource["meta"]["versionId"])
    assert drive_central([f"{r['type']}/{r['id']}" for r in link.fhir_resources]) == ["conflict"]
    return v1, v2, link, bp, Conflict.objects.get(record_link=link, status="open")


def test_keeping_the_central_deletion_over_a_site_edit_deletes_at_the_site(cdr, fhir, site, ehr, clinician):
    v1, v2, link, bp, conflict = central_retired_site_edited(cdr, fhir, site, ehr)
    assert conflict.deleted_on == "central"
    page = clinician.get(reverse("desk:conflict", args=[conflict.pk])).content.decode()
    assert "Deleted centrally" in page and "changed at site1" in page
    run = decide_on_desk(clinician, conflict, "keep the deletion")
    assert advance(run.pk, "test") == SyncRun.Status.DONE
    with pytest.raises(NotFound):
        cdr.get_composition(ehr, v1.uid)
    assert is_retired(fhir.read(bp["type"], bp["id"]))


def test_keeping_the_site_edit_over_a_central_deletion_restores_it_centrally(cdr, fhir, site, ehr, clinician):
    v1, v2, link, bp, conflict = central_retired_site_edited(cdr, fhir, site, ehr)
    run = decide_on_desk(clinician, conflict, "keep the site")
    assert advance(run.pk, "test") == SyncRun.Status.DONE
    restored = fhir.read(bp["type"], bp["id"])
    assert not is_retired(restored) and restored["component"][0]["valueQuantity"]["value"] == 133
    assert cdr.get_composition(ehr, v1.uid).ref.version_uid == v2.version_uid  # the site kept as it is


def test_keeping_the_site_edit_over_a_central_physical_delete_puts_it_back_on_the_deleted_id(cdr, fhir, site, ehr,
                                                                                               clinician):
    v1, link = synced(cdr, site, ehr, vitals(120))
    v2 = cdr.update_composition(ehr, v1.version_uid, vitals(134), template_id=tid())
    bp = next(r for r in link.fhir_resources if r["type"] == "Observation")
    ref = f"{bp['type']}/{bp['id']}"
    unreferenced(fhir, link, ref, v1.version_uid)
    fhir.delete(bp["type"], bp["id"])
    assert drive_central(refs_of(link)) == ["conflict"]
    conflict = Conflict.objects.get(record_link=link, status="open")
    assert conflict.deleted_on == "central"
    deleted_as = fhir.latest_version(bp["type"], bp["id"]).version_id
    run = decide_on_desk(clinician, conflict, "keep the site")
    assert advance(run.pk, "test") == SyncRun.Status.DONE, DeadLetter.objects.filter(run=run).values("rule").first()
    restored = fhir.read(bp["type"], bp["id"])  # the same id, a version after the deletion
    assert int(restored["meta"]["versionId"]) == int(deleted_as) + 1
    assert not is_retired(restored) and restored["component"][0]["valueQuantity"]["value"] == 134
    assert cdr.get_composition(ehr, v1.uid).ref.version_uid == v2.version_uid  # the site kept as it is
    assert drive_central(refs_of(link)) == []  # the restore is our own write: an echo


def test_a_centrally_born_record_deleted_centrally_deletes_the_composition_made_for_it(cdr, fhir, site, ehr):
    v1, link = synced(cdr, site, ehr, vitals(117))
    patient = link.patient_link.fhir_patient_id
    oncology = (REPO_DIR / "deploy/templates/conflictdesk_oncology.v2.opt").read_bytes()
    cdr.upload_template(oncology)  # a template whose content slots take an observation on its own
    Site.objects.filter(pk=site.pk).update(template_ids=[template_id_of(oncology)])
    born = fhir.create({
        "resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": TEMPERATURE_LOINC, "display": "Body temperature"}]},
        "subject": {"reference": f"Patient/{patient}"}, "effectiveDateTime": "2026-12-01T10:00:00+00:00",
        "valueQuantity": {"value": 38.1, "unit": "Cel", "system": "http://unitsofmeasure.org", "code": "Cel"},
    })
    ref = f"Observation/{born.id}"
    assert drive_central([ref]) == ["done"], DeadLetter.objects.values("rule", "path").last()
    made = RecordLink.objects.get(fhir_resources__contains=[{"type": "Observation", "id": born.id}])
    assert cdr.get_composition(ehr, made.versioned_object_uid).ref.version == 1
    fhir.delete("Observation", born.id)
    assert drive_central([ref]) == ["done"]
    with pytest.raises(NotFound):
        cdr.get_composition(ehr, made.versioned_object_uid)
    made.refresh_from_db()
    assert made.deleted
    assert check_deletions(site) == 0  # our own deletion: an echo
