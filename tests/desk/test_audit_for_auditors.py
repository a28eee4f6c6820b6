"""The audit trail for auditors: grouped per run in sentences, people by name, machines by role, hashes
aside, filters by patient identifier and person's name, the verify page, and export of the filtered view."""
import json

from django.urls import reverse

from audit.record import record_event
from conflictdesk.desk import narrate
from sync.models import PatientLink

from . import factories as f

KEY = "site:site1:vo-1"


def _run(run_id=41, patient=7):
    common = dict(actor="worker@vm:15899", partition="site:site1", source="site:site1", source_object="vo-1",
                  source_version="vo-1::site1::3", record_key=KEY, run_id=run_id, patient_link_id=patient)
    record_event(action="sync.detect", outcome="ok", **common)
    record_event(action="sync.transform", outcome="ok", detail={"resources": 4, "losses": 0}, **common)
    record_event(action="sync.write", outcome="ok", destination="central",
                 destination_object="Observation/a,Observation/b,Encounter/c,Composition/d", written_hash="ef" * 32,
                 **common)
    record_event(action="sync.audit", outcome="ok", destination="central", readback_hash="ab" * 32, **common)


def test_the_default_view_is_one_sentence_per_run_with_machines_by_role(login, people):
    _run()
    record_event(action="desk.login", outcome="ok", actor=people.steward.email)
    people.steward.first_name, people.steward.last_name = "Stefan", "Weber"
    people.steward.save()
    body = login(people.auditor).get(reverse("desk:audit")).content.decode()
    assert "site1 composition v3 written to central as 4 resources, read back identical" in body
    assert "mapped to 4 FHIR resources" in body and "Run 41 · 4 events" in body
    assert "Stefan Weber signed in" in body and "sync engine" in body
    assert body.index("Stefan Weber signed in") < body.index("site1 composition v3 written")  # newest group first
    assert "ab" * 32 in body.split("<summary>hashes and ids</summary>", 1)[1]  # the hashes, behind the disclosure
    assert "worker@vm:15899" not in body.split("<summary>")[0]


def test_event_by_event_reads_in_sentences_too(login, people):
    _run()
    body = login(people.auditor).get(reverse("desk:audit"), {"view": "events"}).content.decode()
    assert "site1 composition v3 written to central as 4 resources" in body and "(run 41)" in body


def test_filters_by_patient_identifier_and_by_a_persons_name(login, people, conflict):
    link = conflict.record_link.patient_link
    PatientLink.objects.filter(pk=link.pk).update(subject_id="MRN-0042")
    _run(patient=link.pk)
    _run(run_id=42, patient=999)
    record_event(action="desk.login", outcome="ok", actor=people.clinician.email)
    people.clinician.first_name, people.clinician.last_name = "Clara", "Nowak"
    people.clinician.save()
    client = login(people.auditor)
    by_patient = client.get(reverse("desk:audit"), {"patient": "MRN-0042"}).content.decode()
    assert "Run 41" in by_patient and "Run 42" not in by_patient
    assert "Run 42" in client.get(reverse("desk:audit"), {"patient": "#999"}).content.decode()
    by_name = client.get(reverse("desk:audit"), {"actor": "nowak"}).content.decode()
    assert "Clara Nowak signed in" in by_name and "Run 41" not in by_name


def test_the_verify_button_gets_only_the_result_and_the_page_stands_alone(login, people):
    _run()
    client = login(people.auditor)
    fragment = client.get(reverse("desk:audit_verify"), HTTP_HX_REQUEST="true").content.decode()
    assert "chains intact" in fragment and "<html" not in fragment and "<h1" not in fragment
    page = client.get(reverse("desk:audit_verify")).content.decode()
    assert "<html" in page and "Verify the audit chains</h1>" in page and "desk.css" in page
    trail = client.get(reverse("desk:audit")).content.decode()
    assert 'hx-target="#verify-result"' in trail and '<div id="verify-result"' in trail


def test_it_exports_what_the_filters_show_as_csv_and_fhir(login, people):
    _run()
    record_event(action="desk.login", outcome="ok", actor=people.auditor.email)
    client = login(people.auditor)
    trail = client.get(reverse("desk:audit"), {"record": "vo-1"}).content.decode()
    assert f'{reverse("desk:audit_export")}?record=vo-1&amp;format=csv' in trail
    csv = client.get(reverse("desk:audit_export"), {"record": "vo-1", "format": "csv"})
    rows = b"".join(csv.streaming_content).decode().strip().splitlines()
    assert csv["Content-Type"] == "text/csv" and len(rows) == 5 and rows[0].startswith("id,partition,")
    fhir = client.get(reverse("desk:audit_export"), {"action": "sync.write", "format": "fhir"})
    resources = [json.loads(line) for line in b"".join(fhir.streaming_content).decode().splitlines()]
    assert [r["type"]["code"] for r in resources] == ["sync.write"] and resources[0]["resourceType"] == "AuditEvent"
    assert client.get(reverse("desk:audit_export"), {"format": "xml"}).status_code == 400


def test_only_the_auditor_exports(login, people):
    for who in ("clinician", "steward", "admin"):
        assert login(getattr(people, who)).get(reverse("desk:audit_export"), {"format": "csv"}).status_code == 403


def test_sentences_for_decisions_and_bulk_re_drives(db):
    user = f.make_user("dana@desk.test")
    user.first_name, user.last_name = "Dana", "Roth"
    user.save()
    decide = record_event(action="desk.conflict.decide", outcome="ok", actor=user.email, run_id=77,
                          detail={"conflict_id": 5, "choice": "merge", "fields": 3, "from_site": 1})
    bulk = record_event(action="sync.redrive.bulk", outcome="ok", actor="cli:worker@vm:1",
                        detail={"filter": {"site": "site1"}, "count": 26, "run_ids": [1, 2]})
    names = narrate.people([decide, bulk])
    assert narrate.sentence(decide, names) == "Dana Roth decided conflict #5: merge field by field (1 of 3 fields from the site)"
    assert narrate.sentence(bulk, names) == "command line on vm re-drove 26 dead letters in one go (site site1)"


def test_a_central_change_written_back_to_a_site_reads_as_such(db):
    write = record_event(action="sync.write", outcome="ok", actor="worker@vm:1", partition="central",
                         source="central", source_object="Observation/obs-9", source_version="4",
                         destination="site:site2", destination_object="vo-2", destination_version="vo-2::site2::5",
                         run_id=90)
    assert narrate.sentence(write) == "central Observation/obs-9 v4 written to site2 as a composition (v5)"


def test_a_backfilled_central_version_reads_as_central_and_says_backfill(db):
    write = record_event(action="sync.write", outcome="ok", actor="worker@vm:1", partition="central",
                         source="backfill:12", source_object="CarePlan/cp-1", source_version="3",
                         destination="site:site2", destination_object="vo-3", destination_version="vo-3::site2::1",
                         run_id=91)
    assert narrate.subject(write) == "central CarePlan/cp-1 v3 (backfill)"
