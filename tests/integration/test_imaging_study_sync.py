"""Issue 18's imaging row both ways on the real servers: the general record's imaging report, whose study the site
identifies by its DICOM Study Instance UID, reaches HAPI as a DiagnosticReport naming an ImagingStudy.  The study's
edits do not flow back (not a flow-back type), its removal does (issue 20): marked entered-in-error at the centre,
the site's report stays as it was, without the study's identifier; the site's commit comes back as an echo.  Runs are driven here with ``advance``
(no worker), every server real, a fresh EHR per test."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from sync.clients.openehr import OpenEHRClient
from sync.demo import general
from sync.detection import poll_central_removals, poll_site
from sync.models import ChangeEvent, Cursor, DeadLetter, RecordLink, SyncRun
from sync.workflow.runner import advance

pytestmark = [pytest.mark.integration]
IMAGING = "openEHR-EHR-OBSERVATION.imaging_exam_result.v1"
TERMINAL = ("done", "dead_letter", "conflict")
VISIT = datetime(2025, 2, 3, 9, 0, tzinfo=timezone(timedelta(hours=1)))


def _now():
    return datetime.now(timezone.utc)


@pytest.fixture
def cdr(ehrbase_urls):
    with OpenEHRClient(ehrbase_urls[0]) as client:
        client.upload_template(general.OPT_PATH.read_bytes())
        yield client


def drive_all(site, ehr) -> list[str]:
    """Detect at the site and run this EHR's open runs to their end (the CDR is shared: only ours)."""
    poll_site(site)
    runs = SyncRun.objects.filter(change_event__ehr_id=ehr).exclude(status__in=TERMINAL)
    return [advance(run.pk, "test") for run in runs.order_by("pk")]


def _values(entry: dict) -> dict:
    """Node path (node ids) -> value of every element of an entry."""
    out = {}

    def walk(node, path):
        for item in node.get("items") or node.get("events") or []:
            here = f"{path}/{item['archetype_node_id']}"
            if "value" in item:
                out[here] = item["value"]
            walk(item.get("data") or item, here)
    for part in ("data", "protocol"):
        if part in entry:
            walk(entry[part], part)
    return out


def _protocol(comp: dict) -> dict:
    [entry] = [e for e in comp["content"] if e["archetype_node_id"] == IMAGING]
    return {i["archetype_node_id"]: i.get("value") for i in entry["protocol"]["items"]}


def test_a_study_declared_wrong_centrally_leaves_the_site_report_without_it(cdr, fhir, site):
    subject = f"pat-{uuid.uuid4()}"
    ehr = cdr.create_ehr(subject_id=subject, subject_namespace="conflictdesk-test").ehr_id
    ref = cdr.create_composition(ehr, general.general_composition(2024, subject, VISIT))
    assert drive_all(site, ehr) == ["done"]
    link = RecordLink.objects.get(versioned_object_uid=ref.uid)
    [study_ref] = [r for r in link.fhir_resources if r["type"] == "ImagingStudy"]
    study = fhir.read("ImagingStudy", study_ref["id"])
    [report] = [fhir.read("DiagnosticReport", r["id"]) for r in link.fhir_resources if r["type"] == "DiagnosticReport"]
    assert report["imagingStudy"] == [{"reference": f"ImagingStudy/{study['id']}"}]
    uid = _protocol(cdr.get_composition(ehr, ref.version_uid).content)["at0092"]["id"]
    assert uid == general.study_uid(2024, subject)
    assert {"system": "urn:dicom:uid", "value": f"urn:oid:{uid}", "use": "official"} in study["identifier"]

    # a clinician declares the study wrong at the centre: the site's report stays, without that study
    Cursor.objects.update_or_create(source="central:removals", defaults={"position": _now() - timedelta(seconds=2)})
    study["status"] = "entered-in-error"
    fhir.update(study, if_match_version=study["meta"]["versionId"])
    poll_central_removals()
    runs = SyncRun.objects.filter(change_event__source_object_id=f"ImagingStudy/{study['id']}") \
        .exclude(status__in=TERMINAL)
    assert [advance(run.pk, "test") for run in runs.order_by("pk")] == ["done"], \
        [d["path"] for d in DeadLetter.objects.values("path")]
    latest = cdr.get_composition(ehr, ref.uid)
    assert latest.ref.version_uid != ref.version_uid  # a new version, not a deletion
    comp = latest.content
    [entry] = [e for e in comp["content"] if e["archetype_node_id"] == IMAGING]
    assert "at0092" not in _protocol(comp)  # the study's identifier is out
    before = cdr.get_composition(ehr, ref.version_uid).content
    [was] = [e for e in before["content"] if e["archetype_node_id"] == IMAGING]
    # the report itself as it was, without what the study carried (its date, coded modality, status, description)
    study_nodes = {"at0092", "at0099", "at0105", "at0070"}
    assert {p: v for p, v in _values(entry).items() if not study_nodes & set(p.split("/"))} == \
        {p: v for p, v in _values(was).items() if not study_nodes & set(p.split("/"))}
    assert not study_nodes & {n for p in _values(entry) for n in p.split("/")}
    assert fhir.read("DiagnosticReport", report["id"])["status"] == report["status"]
    assert drive_all(site, ehr) == []  # the engine's site commit is an echo
    assert ChangeEvent.objects.filter(source_version=latest.ref.version_uid, status="echo").exists()
