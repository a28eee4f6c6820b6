"""Who the patient is, wherever a person decides (issue 16 item 1): name, birth date, sex and the
site's MRN on the queue (searchable), the conflict page and the dead letter page; every view of
them leaves an audit event naming the person who looked and the PatientLink ids (never the values)."""
from datetime import date

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from sync.models import ChangeEvent, Direction

from . import factories as f


@pytest.fixture
def margit(db):
    conflict = f.make_conflict()
    link = conflict.record_link.patient_link
    link.subject_id, link.family_name, link.given_names = "MRN-4711", "Johansson", "Margit Anna"
    link.birth_date, link.sex = date(1956, 3, 14), "female"
    link.save()
    return conflict


def _viewed(user, page):
    return [e.detail["patient_links"] for e in AuditEvent.objects.filter(action="patient.viewed", actor=user.email)
            if e.detail["page"] == page]


def test_the_queue_names_the_patient_and_finds_them_by_name_mrn_or_birth_date(client, people, margit):
    client.force_login(people.clinician)
    page = client.get(reverse("desk:conflicts")).content.decode()
    assert "JOHANSSON" in page and "1956-03-14" in page and "MRN-4711" in page
    for query in ("johansson", "Margit Johansson", "MRN-4711", "1956-03-14"):
        found = client.get(reverse("desk:conflicts"), {"patient": query}).content.decode()
        assert f'href="{reverse("desk:conflict", args=[margit.pk])}"' in found, query
    for query in ("Meier", "1956-03-15", "Margit Meier"):
        missed = client.get(reverse("desk:conflicts"), {"patient": query}).content.decode()
        assert f'href="{reverse("desk:conflict", args=[margit.pk])}"' not in missed, query
    assert [margit.record_link.patient_link_id] in _viewed(people.clinician, "conflict queue")


def test_the_conflict_page_shows_who_and_records_the_look(client, people, margit, monkeypatch):
    monkeypatch.setattr("sync.workflow.versions.current_versions", lambda c: {})
    client.force_login(people.clinician)
    page = client.get(reverse("desk:conflict", args=[margit.pk])).content.decode()
    assert "JOHANSSON" in page and "Margit Anna" in page and "female" in page and "MRN-4711" in page
    assert _viewed(people.clinician, "conflict") == [[margit.record_link.patient_link_id]]


def test_the_dead_letter_page_shows_the_patient_of_its_run(client, people, margit):
    letter = f.make_dead_letter(margit.record_link.site)
    letter.run.change_event = ChangeEvent.objects.create(
        direction=Direction.TO_FHIR, source="site:site1", site=letter.run.site, source_object_id="vo-dl",
        source_version="vo-dl::s::1", version_number=1, ehr_id=f.EHR_ID)
    letter.run.save()
    client.force_login(people.steward)
    page = client.get(reverse("desk:deadletter", args=[letter.pk])).content.decode()
    assert "JOHANSSON" in page and "1956-03-14" in page
    assert _viewed(people.steward, "dead letter") == [[margit.record_link.patient_link_id]]


def test_the_auditor_sees_who_looked_at_whom(client, people, margit):
    client.force_login(people.clinician)
    client.get(reverse("desk:conflicts"))
    client.force_login(people.auditor)
    def listed(patient):
        page = client.get(reverse("desk:audit"), {"patient": patient, "action": "patient.viewed"}).content.decode()
        return people.clinician.email in page or "Clara" in page

    assert listed("Johansson") and not listed("Meier")


def test_the_chain_of_custody_names_the_patient_and_records_the_look(client, people, margit):
    from audit.record import record_event

    record_event(action="sync.write", outcome="ok", actor="worker", record_key=margit.run.record_key,
                 patient_link_id=margit.record_link.patient_link_id)
    client.force_login(people.auditor)
    page = client.get(reverse("desk:audit_record"), {"key": margit.run.record_key}).content.decode()
    assert "JOHANSSON" in page and "MRN-4711" in page
    assert _viewed(people.auditor, "chain of custody") == [[margit.record_link.patient_link_id]]
