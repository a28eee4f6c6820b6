"""Dead letters: only a data steward re-drives or discards; both are audited."""
import pytest
from django.urls import reverse

from audit.models import AuditEvent
from sync.models import DeadLetter, SyncRun

from . import factories as f


@pytest.fixture
def letter(db):
    return f.make_dead_letter()


@pytest.fixture
def no_celery(monkeypatch):
    sent = []
    monkeypatch.setattr("sync.workflow.dispatch.send", lambda run_id, countdown: sent.append(run_id))
    return sent


def test_a_steward_re_drives_and_the_engine_audits_it(login, people, letter, no_celery, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = login(people.steward).post(reverse("desk:deadletter_redrive", args=[letter.pk]))
    assert response.status_code == 302
    letter.refresh_from_db()
    assert letter.status == DeadLetter.Status.REDRIVEN and letter.closed_by == people.steward
    assert SyncRun.objects.get(pk=letter.run_id).status == SyncRun.Status.PENDING
    assert no_celery == [letter.run_id]
    event = AuditEvent.objects.get(action="sync.redrive")
    assert event.actor == people.steward.email and event.detail["dead_letter_id"] == letter.pk


def test_a_steward_discards_with_a_reason(login, people, letter):
    response = login(people.steward).post(reverse("desk:deadletter_discard", args=[letter.pk]),
                                          {"reason": "Duplicate of a record entered twice at the site."})
    assert response.status_code == 302
    letter.refresh_from_db()
    assert letter.status == DeadLetter.Status.DISCARDED and letter.closed_by == people.steward
    assert letter.close_reason.startswith("Duplicate")
    event = AuditEvent.objects.get(action="desk.deadletter.discard")
    assert event.actor == people.steward.email and event.run_id == letter.run_id
    assert "Duplicate" not in str(event.detail)


def test_discarding_needs_a_reason(login, people, letter):
    response = login(people.steward).post(reverse("desk:deadletter_discard", args=[letter.pk]), {"reason": " "})
    assert response.status_code == 400
    letter.refresh_from_db()
    assert letter.status == DeadLetter.Status.OPEN


@pytest.mark.parametrize("who", ["clinician", "auditor", "admin"])
@pytest.mark.parametrize("action", ["deadletter_redrive", "deadletter_discard"])
def test_no_one_else_may_work_dead_letters(login, people, letter, who, action):
    response = login(getattr(people, who)).post(reverse(f"desk:{action}", args=[letter.pk]), {"reason": "x"})
    assert response.status_code == 403
    letter.refresh_from_db()
    assert letter.status == DeadLetter.Status.OPEN
    assert AuditEvent.objects.filter(action="desk.refused", actor=getattr(people, who).email).exists()


def test_a_closed_letter_is_not_re_driven_twice(login, people, letter, no_celery):
    DeadLetter.objects.filter(pk=letter.pk).update(status=DeadLetter.Status.DISCARDED)
    response = login(people.steward).post(reverse("desk:deadletter_redrive", args=[letter.pk]), follow=True)
    assert b"Not re-driven" in response.content and no_celery == []


def test_the_list_groups_by_cause_and_the_detail_shows_rule_path_attempts(login, people, letter):
    client = login(people.auditor)
    listing = client.get(reverse("desk:deadletters") + "?cause=validation").content.decode()
    assert f"#{letter.pk}" in listing and "fhir.r4.Observation" in listing
    assert client.get(reverse("desk:deadletters") + "?cause=unmapped").content.decode().count("No dead letters") == 1
    page = client.get(reverse("desk:deadletter", args=[letter.pk])).content.decode()
    assert "Observation.status" in page and "ValidationFailed" in page and "Re-drive" not in page


def test_a_fidelity_letter_shows_source_mapped_and_mapped_back(login, people):
    letter = f.make_dead_letter(cause=DeadLetter.Cause.FIDELITY)
    page = login(people.steward).get(reverse("desk:deadletter", args=[letter.pk])).content.decode()
    assert "mapped_back" in page and "Fidelity" in page
