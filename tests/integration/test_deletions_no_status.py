"""Deletions of records mapped to a type R4 gives no status (issue 20), on real EHRbase and HAPI.

R4's AdverseEvent (a diagnosis' CTCAE grading) has no status element: a deleted site record marks it
entered-in-error with R5's status as HL7's cross-version modifier extension, in the same transaction,
If-Match and DELETE Provenance as every other type (never a dead letter, never a physical delete). A
central entered-in-error on it, a type whose edits do not flow back, still reaches the site: the grading
cluster is taken out there, the diagnosis stays.
"""
from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from audit.models import AuditEvent
from sync.detection import CENTRAL_REMOVALS, check_deletions, poll_central, poll_central_removals, poll_site
from sync.demo.flat import ROOT, TEMPLATE_ID, FlatComposition
from sync.demo.generator import add_toxicity
from sync.demo.seed import ensure_template
from sync.identity import provenance_id
from sync.models import ChangeEvent, Cursor, DeadLetter, RecordLink, SyncRun
from sync.workflow.deletion import XVER_STATUS, is_retired
from sync.workflow.runner import advance
from tests.fixtures import REPO_DIR
from tests.mapping.hapi import hapi_errors

pytestmark = [pytest.mark.integration]

OPEN = ["pending", "running", "retry_wait", "waiting"]
XVER_AE = XVER_STATUS.format("AdverseEvent")
STANDIN = (REPO_DIR / "deploy" / "hapi-fhir" / "src" / "main" / "resources" / "fhir-standins"
           / "StructureDefinition-extension-AdverseEvent.status.json")


def _now():
    return datetime.now(timezone.utc)


@pytest.fixture
def oncology(cdr, site, fhir_base_url):
    """Site 1 with the oncology template; the central cursors at now; the stand-in definition on HAPI
    (written at HAPI's start by FhirPackageLoader; PUT here as the loader does, for a server started before)."""
    ensure_template(cdr)
    site.template_ids = [TEMPLATE_ID]
    site.save(update_fields=["template_ids"])
    for source in ("central", CENTRAL_REMOVALS):  # both central readers start now, before the test writes
        Cursor.objects.create(source=source, position=_now() - timedelta(seconds=1))
    standin = json.loads(STANDIN.read_text())
    httpx.put(f"{fhir_base_url}/StructureDefinition/{standin['id']}", json=standin, timeout=60).raise_for_status()
    return site


def drive(ehr) -> list[str]:
    runs = SyncRun.objects.filter(status__in=OPEN, change_event__ehr_id=ehr).order_by("pk")
    return [advance(run.pk, "test") for run in runs]


def toxicity() -> dict:
    onset = _now() - timedelta(days=2)
    flat = FlatComposition(onset, facility="Deletion Test Centre", composer="Dr Deletion")
    add_toxicity(flat, random.Random(20), onset)
    return flat.values


def synced_toxicity(cdr, site, ehr):
    ref = cdr.create_composition(ehr, toxicity(), template_id=TEMPLATE_ID)
    poll_site(site)
    assert drive(ehr) == ["done"]
    link = RecordLink.objects.get(versioned_object_uid=ref.uid)
    [ae] = [r for r in link.fhir_resources if r["type"] == "AdverseEvent"]
    [condition] = [r for r in link.fhir_resources if r["type"] == "Condition"]
    return ref, link, ae, condition


def test_a_deleted_site_record_marks_its_adverse_event_entered_in_error_by_r5s_status(
        cdr, fhir, oncology, ehr, fhir_base_url):
    v1, link, ae, condition = synced_toxicity(cdr, oncology, ehr)
    before = fhir.read("AdverseEvent", ae["id"])
    assert not is_retired(before) and "modifierExtension" not in before
    cdr.delete_composition(ehr, v1.version_uid)
    assert check_deletions(oncology) == 1
    run = SyncRun.objects.get(change_event__source_object_id=v1.uid, change_event__change_type="deleted")
    assert advance(run.pk, "test") == SyncRun.Status.DONE  # not a dead letter by deletion.status
    assert not DeadLetter.objects.filter(run_id=run.pk).exists()
    now = fhir.read("AdverseEvent", ae["id"])  # still there: marked, not deleted
    assert now["modifierExtension"] == [{"url": XVER_AE, "valueCode": "entered-in-error"}]
    assert int(now["meta"]["versionId"]) == int(ae["version"]) + 1 and is_retired(now)
    assert {k: v for k, v in now.items() if k not in ("meta", "modifierExtension")} == \
        {k: v for k, v in before.items() if k != "meta"}  # nothing else changed: lossless
    assert fhir.vread("AdverseEvent", ae["id"], ae["version"]) == before  # the history stays
    assert is_retired(fhir.read("Condition", condition["id"]))
    deleted_uid = run.change_event.source_version
    provenance = fhir.read("Provenance", provenance_id(f"{deleted_uid}|deleted"))
    assert provenance["activity"]["coding"][0]["code"] == "DELETE"
    assert {"reference": f"AdverseEvent/{ae['id']}"} in provenance["target"]
    write = AuditEvent.objects.get(run_id=run.pk, action="sync.write")
    assert f"AdverseEvent/{ae['id']}" in write.detail["entered_in_error"]
    assert hapi_errors(fhir_base_url, now) == []  # R4-valid, the modifier extension known (stand-in)
    link.refresh_from_db()
    assert link.deleted
    poll_central()  # our own versions come back as echoes
    poll_central_removals()
    assert ChangeEvent.objects.get(source="central", source_object_id=f"AdverseEvent/{ae['id']}").status == "echo"
    assert drive(ehr) == []


def test_a_new_version_without_the_grading_retires_the_adverse_event_only(cdr, fhir, oncology, ehr):
    v1, link, ae, condition = synced_toxicity(cdr, oncology, ehr)
    flat = cdr.get_composition(ehr, v1.version_uid, flat=True).content
    graded = {k: v for k, v in flat.items() if "common_terminology_criteria" not in k}
    assert len(graded) < len(flat)
    v2 = cdr.update_composition(ehr, v1.version_uid, graded, template_id=TEMPLATE_ID)
    poll_site(oncology)
    assert drive(ehr) == ["done"]
    assert fhir.read("AdverseEvent", ae["id"])["modifierExtension"][0]["valueCode"] == "entered-in-error"
    assert not is_retired(fhir.read("Condition", condition["id"]))  # the diagnosis stays live
    provenance = fhir.read("Provenance", provenance_id(f"{v2.version_uid}|deleted"))
    assert provenance["target"] == [{"reference": f"AdverseEvent/{ae['id']}"}]



def test_the_types_created_by_put_are_exactly_the_mapped_ones_hapi_cannot_search_by_identifier(fhir_base_url):
    """bundle.NO_IDENTIFIER_SEARCH against the server's own CapabilityStatement, for every type the mapping makes."""
    from sync.mapping import fhirmodel
    from sync.mapping.composition import RESOURCES as COMPOSITION_LEVEL
    from sync.mapping.from_fhir import PART_ONLY
    from sync.mapping.spec import registry
    from sync.workflow.bundle import NO_IDENTIFIER_SEARCH

    made = {s.resource for s in registry().values() if s.resource and fhirmodel.is_resource(s.resource)}
    made |= {*COMPOSITION_LEVEL, *PART_ONLY}
    statement = httpx.get(f"{fhir_base_url}/metadata", timeout=120).json()
    searchable = {r["type"]: {p["name"] for p in r.get("searchParam", [])} for r in statement["rest"][0]["resource"]}
    assert {t for t in made if "identifier" not in searchable.get(t, set())} == set(NO_IDENTIFIER_SEARCH)


def test_a_central_entered_in_error_adverse_event_takes_the_grading_out_at_the_site(cdr, fhir, oncology, ehr):
    v1, link, ae, condition = synced_toxicity(cdr, oncology, ehr)
    current = fhir.read("AdverseEvent", ae["id"])
    edited = fhir.update({**current, "date": "2024-01-01"}, if_match_version=current["meta"]["versionId"]).resource
    poll_central()
    poll_central_removals()  # an edit of a type whose edits do not flow back: no change for the sites
    assert not ChangeEvent.objects.filter(source="central", source_object_id=f"AdverseEvent/{ae['id']}").exists()
    marked = {**edited, "modifierExtension": [{"url": XVER_AE, "valueCode": "entered-in-error"}]}
    fhir.update(marked, if_match_version=edited["meta"]["versionId"])
    poll_central()  # not a flow-back type: the poll does not read it
    assert not ChangeEvent.objects.filter(source="central", source_object_id=f"AdverseEvent/{ae['id']}").exists()
    poll_central_removals()  # the removal check (on the deletion schedule) does
    runs = SyncRun.objects.filter(status__in=OPEN, change_event__source="central",
                                  change_event__source_object_id=f"AdverseEvent/{ae['id']}")
    assert [advance(r.pk, "test") for r in runs] == ["done"]
    latest = cdr.get_composition(ehr, v1.uid)
    assert latest.ref.version_uid != v1.version_uid  # a new version, not a deletion
    flat = cdr.get_composition(ehr, latest.ref.version_uid, flat=True).content
    assert not any("common_terminology_criteria" in k for k in flat)  # the grading is out
    assert any(k.startswith(f"{ROOT}/problem_diagnosis:0/problem_diagnosis_name") for k in flat)  # the diagnosis stays
    event = ChangeEvent.objects.get(source="central", source_object_id=f"AdverseEvent/{ae['id']}")
    feeder = latest.content["feeder_audit"]["originating_system_item_ids"][0]["id"]
    assert feeder == f"AdverseEvent/{ae['id']}/_history/{event.source_version}"
    assert not is_retired(fhir.read("Condition", condition["id"]))
