"""A clinician's decision on a real conflict, executed by the engine on real EHRbase and HAPI.

The conflict is made the way it happens (a site commit synced, then both
sides edited), the decision goes through the desk's own action ``do_decide_conflict``
(so the content shape the desk stores is the one the engine reads), and the
runs are driven in this process with ``advance``: no worker needed, every
server real. Each test makes its own EHR and subject.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from sync.actions import do_decide_conflict
from sync.clients.openehr import OpenEHRClient, template_id_of
from sync.detection import poll_site
from sync.models import ChangeEvent, Conflict, RecordLink, Resolution, SyncRun
from sync.workflow.reconcile import reconcile_site
from sync.workflow.runner import advance
from sync.workflow.versions import versions_seen
from tests.fixtures import OPENEHR_CORPUS

REPO = Path(__file__).resolve().parents[2]
CORPUS = OPENEHR_CORPUS
TEMPLATE = "vital_signs_ehrn"
SYSTOLIC = "ehrn_vital_signs.v2/vital_signs:0/blood_pressure:0/any_event:0/systolic|magnitude"
SYSTOLIC_LOINC = "8480-6"

pytestmark = [pytest.mark.integration]

TEMPERATURE = "ehrn_vital_signs.v2/vital_signs:0/body_temperature:0/any_event:0/temperature"
TEMPERATURE_LOINC = "8310-5"


def _now():
    return datetime.now(timezone.utc)


@pytest.fixture
def cdr(ehrbase_urls):
    with OpenEHRClient(ehrbase_urls[0]) as client:
        client.upload_template((CORPUS / "templates" / f"{TEMPLATE}.opt").read_bytes())
        yield client


@pytest.fixture
def clinician(db):
    return get_user_model().objects.create(username="dr-res@example.org", email="dr-res@example.org")


def vitals(bp: float, temp: float) -> dict:
    flat = json.loads((CORPUS / "compositions" / f"{TEMPLATE}.flat.json").read_text())
    flat = {k: v for k, v in flat.items() if not k.endswith("/_uid")}
    flat[SYSTOLIC] = bp
    prefix = TEMPERATURE.rsplit("/", 2)[0]
    flat.update({
        f"{TEMPERATURE}|magnitude": temp, f"{TEMPERATURE}|unit": "Cel",
        f"{prefix}/any_event:0/time": "2021-03-21T21:19:49.293785+01:00",
        f"{prefix}/language|terminology": "ISO_639-1", f"{prefix}/language|code": "de",
        f"{prefix}/encoding|terminology": "IANA_character-sets", f"{prefix}/encoding|code": "UTF-8",
    })
    return flat


def drive_all(site, ehr) -> list[str]:
    """Detect at the site and run this EHR's open runs to their end, oldest first.

    The CDR is shared (other tests, other engineers): the poll's overlap window
    can pick up their compositions too, which are none of this test's business.
    """
    poll_site(site)
    statuses = []
    runs = SyncRun.objects.filter(change_event__ehr_id=ehr).exclude(status__in=["done", "dead_letter", "conflict"])
    for run in runs.order_by("pk"):
        statuses.append(advance(run.pk, "test"))
    return statuses


def systolic(resource: dict):
    for component in resource.get("component", []):
        if any(c.get("code") == SYSTOLIC_LOINC for c in component["code"].get("coding", [])):
            return component["valueQuantity"]["value"]
    return None


def code_of(resource) -> str:
    return ((resource.get("code") or {}).get("coding") or [{}])[0].get("code", "")


def temperature(resource):
    return (resource.get("valueQuantity") or {}).get("value") if code_of(resource) == TEMPERATURE_LOINC else None


def central(fhir, link, pick):
    values = [pick(fhir.read(r["type"], r["id"])) for r in link.fhir_resources]
    return [v for v in values if v is not None]


def make_conflict(cdr, fhir, site, ehr, *, central_bp, central_temp):
    """v1 synced; the centre edits BP and temperature; the site commits v2 (BP 80, temp 37.9): a conflict."""
    tid = template_id_of((CORPUS / "templates" / f"{TEMPLATE}.opt").read_bytes())
    v1 = cdr.create_composition(ehr, vitals(70, 36.6), template_id=tid)
    assert drive_all(site, ehr) == ["done"]
    link = RecordLink.objects.get(versioned_object_uid=v1.uid)
    for r in link.fhir_resources:
        resource = fhir.read(r["type"], r["id"])
        if systolic(resource) is not None:
            next(c for c in resource["component"] if c["code"]["coding"][0]["code"] == SYSTOLIC_LOINC)["valueQuantity"]["value"] = central_bp
        elif temperature(resource) is not None:
            resource["valueQuantity"]["value"] = central_temp
        else:
            continue
        fhir.update(resource, if_match_version=resource["meta"]["versionId"])
    v2 = cdr.update_composition(ehr, v1.version_uid, vitals(80, 37.9), template_id=tid)
    assert drive_all(site, ehr) == ["conflict"]
    return tid, v1, v2, Conflict.objects.get(openehr_version_uid=v2.version_uid, status="open")


def decide(conflict, clinician, choice, field_choices=None):
    decision = do_decide_conflict(conflict, acting_user=clinician, choice=choice, reason="checked with the team",
                                  field_choices=field_choices or {}, seen=versions_seen(conflict))
    return decision.run


def test_keep_site_puts_the_site_version_centrally(cdr, fhir, site, ehr, clinician):
    started = _now()
    tid, v1, v2, conflict = make_conflict(cdr, fhir, site, ehr, central_bp=150, central_temp=39.0)
    run = decide(conflict, clinician, Resolution.Choice.KEEP_SITE)
    assert advance(run.pk, "test") == SyncRun.Status.DONE
    link = RecordLink.objects.get(versioned_object_uid=v1.uid)
    assert central(fhir, link, systolic) == [80] and central(fhir, link, temperature) == [37.9]
    assert cdr.get_composition(ehr, v1.uid).ref.version_uid == v2.version_uid  # the site was not written
    assert link.openehr_version_uid == v2.version_uid
    assert drive_all(site, ehr) == []  # nothing new to sync, nothing echoed as a change
    report = reconcile_site(site, started - timedelta(seconds=1), _now(), ehr_id=ehr)
    assert report.unaccounted == [] and v2.version_uid in report.by_state["conflict"]


def test_a_merge_writes_both_real_servers_and_echoes_nothing(cdr, fhir, site, ehr, clinician):
    from sync.workflow import diff

    started = _now()
    tid, v1, v2, conflict = make_conflict(cdr, fhir, site, ehr, central_bp=150, central_temp=39.0)
    comparison = diff.compare(conflict)
    # Blood pressure from the site, temperature from the centre: both sides must change.
    choices = {f.id: (diff.SITE if "blood_pressure" in f.key else diff.CENTRAL) for f in comparison.fields}
    assert set(choices.values()) == {diff.SITE, diff.CENTRAL}, [f.id for f in comparison.fields]
    run = decide(conflict, clinician, Resolution.Choice.MERGE, choices)
    assert advance(run.pk, "test") == SyncRun.Status.DONE
    link = RecordLink.objects.get(versioned_object_uid=v1.uid)
    assert central(fhir, link, systolic) == [80] and central(fhir, link, temperature) == [39.0]
    latest = cdr.get_composition(ehr, v1.uid)
    assert latest.ref.version == 3 and link.openehr_version_uid == latest.ref.version_uid
    flat = cdr.get_composition(ehr, latest.ref.version_uid, flat=True).content
    assert flat[SYSTOLIC] == 80 and flat[f"{TEMPERATURE}|magnitude"] == 39.0
    assert drive_all(site, ehr) == []  # v3 is our own write: an echo, no run
    assert ChangeEvent.objects.get(source_version=latest.ref.version_uid).status == ChangeEvent.Status.ECHO
    report = reconcile_site(site, started - timedelta(seconds=1), _now(), ehr_id=ehr)
    assert report.unaccounted == [] and latest.ref.version_uid in report.by_state["echo"]


def test_a_decision_on_versions_that_moved_opens_a_new_conflict(cdr, fhir, site, ehr, clinician):
    tid, v1, v2, conflict = make_conflict(cdr, fhir, site, ehr, central_bp=150, central_temp=39.0)
    run = decide(conflict, clinician, Resolution.Choice.KEEP_SITE)
    v3 = cdr.update_composition(ehr, v2.version_uid, vitals(95, 37.0), template_id=tid)  # after the decision
    assert advance(run.pk, "test") == SyncRun.Status.CONFLICT
    new = Conflict.objects.get(status="open", run=run)
    assert new.openehr_version_uid == v3.version_uid
    link = RecordLink.objects.get(versioned_object_uid=v1.uid)
    assert central(fhir, link, systolic) == [150]  # nothing overwritten
