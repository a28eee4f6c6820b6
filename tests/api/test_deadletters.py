"""Dead letters over the API: list, detail, re-drive and discard through the desk's services."""
from audit.models import AuditEvent
from sync.models import DeadLetter, SyncRun
from tests.desk import factories as f


def test_it_lists_open_letters_and_filters_by_cause(api, people):
    letter = f.make_dead_letter()
    f.make_dead_letter(cause=DeadLetter.Cause.FIDELITY)
    client = api(people.steward)
    assert client.get("/api/v1/dead-letters/").json()["count"] == 2
    body = client.get("/api/v1/dead-letters/?cause=validation").json()
    assert [r["id"] for r in body["results"]] == [letter.pk]
    assert client.get("/api/v1/dead-letters/?cause=nope").json() == {"cause": ['"nope" is not a valid choice.']}


def test_detail_has_attempts_and_payload(api, people):
    letter = f.make_dead_letter()
    body = api(people.auditor).get(f"/api/v1/dead-letters/{letter.pk}/").json()
    assert body["payload"] == {"_type": "COMPOSITION"} and body["attempts"][0]["error_class"] == "ValidationFailed"


def test_redrive_puts_the_run_back_and_is_audited(api, people):
    letter = f.make_dead_letter()
    response = api(people.steward).post(f"/api/v1/dead-letters/{letter.pk}/redrive/")
    assert response.status_code == 202 and response.json()["status"] == SyncRun.Status.PENDING
    letter.refresh_from_db()
    assert letter.status == DeadLetter.Status.REDRIVEN and letter.closed_by == people.steward
    assert AuditEvent.objects.get(action="sync.redrive").actor == people.steward.email
    assert api(people.steward).post(f"/api/v1/dead-letters/{letter.pk}/redrive/").status_code == 409


def test_discard_needs_a_reason_and_is_audited(api, people):
    letter = f.make_dead_letter()
    client = api(people.steward)
    response = client.post(f"/api/v1/dead-letters/{letter.pk}/discard/", {"reason": " "}, format="json")
    assert response.status_code == 400 and "reason" in response.json()
    response = client.post(f"/api/v1/dead-letters/{letter.pk}/discard/", {"reason": "test data"}, format="json")
    assert response.status_code == 200 and response.json()["status"] == "discarded"
    assert response.json()["closed_by"] == people.steward.email
    event = AuditEvent.objects.get(action="desk.deadletter.discard")
    assert event.actor == people.steward.email and "test data" not in str(event.detail)
    assert client.post(f"/api/v1/dead-letters/{letter.pk}/discard/", {"reason": "again"}, format="json").status_code == 409


def test_an_unknown_letter_is_404(api, people):
    assert api(people.steward).get("/api/v1/dead-letters/999999/").status_code == 404
