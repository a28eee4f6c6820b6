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


def test_bulk_redrive_takes_the_filter_and_lists_the_runs(api, people):
    site2 = f.make_site("site2")
    mine = [f.make_dead_letter(cause=DeadLetter.Cause.TRANSIENT_EXHAUSTED) for _ in range(2)]
    other = f.make_dead_letter(site2)
    client = api(people.steward)
    response = client.post("/api/v1/dead-letters/redrive/", {"site": "site1", "cause": "transient_exhausted"},
                           format="json")
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["count"] == 2 and body["dead_letter_ids"] == [d.pk for d in mine]
    assert body["run_ids"] == [d.run_id for d in mine]
    event = AuditEvent.objects.get(action="sync.redrive.bulk")
    assert event.detail["run_ids"] == body["run_ids"] and event.actor == people.steward.email
    assert DeadLetter.objects.get(pk=other.pk).status == DeadLetter.Status.OPEN
    again = client.post("/api/v1/dead-letters/redrive/", {"site": "site1"}, format="json")
    assert again.status_code == 409 and "no open dead letter" in again.json()["detail"]


def test_bulk_redrive_refuses_bad_filters_and_other_roles(api, people):
    f.make_dead_letter()
    steward = api(people.steward)
    assert steward.post("/api/v1/dead-letters/redrive/", {"cause": "nope"}, format="json").status_code == 400
    bad_range = steward.post("/api/v1/dead-letters/redrive/",
                             {"since": "2026-12-06T10:00Z", "until": "2026-12-06T09:00Z"}, format="json")
    assert bad_range.status_code == 400 and "until" in bad_range.json()
    assert api(people.auditor).post("/api/v1/dead-letters/redrive/", {}, format="json").status_code == 403
    assert DeadLetter.objects.get().status == DeadLetter.Status.OPEN


def test_the_list_filters_by_rule_and_time(api, people):
    letter = f.make_dead_letter()
    client = api(people.auditor)
    assert client.get("/api/v1/dead-letters/?rule=fhir.r4").json()["count"] == 1
    assert client.get("/api/v1/dead-letters/?rule=rm.").json()["count"] == 0
    assert client.get("/api/v1/dead-letters/?since=2999-01-01T00:00Z").json()["count"] == 0
    assert letter.pk


def test_detail_says_what_to_fix(api, people):
    from tests.desk.test_deadletter_fix import PATH, PAYLOAD

    letter = f.make_dead_letter()
    DeadLetter.objects.filter(pk=letter.pk).update(rule="rm.dv_quantity.units.ucum", path=PATH, payload=PAYLOAD)
    fix = api(people.steward).get(f"/api/v1/dead-letters/{letter.pk}/").json()["fix"]
    assert fix["offending"] == {"path": PATH, "where": "Glucose", "value": '"..mol/l"'}
    assert fix["what"].startswith("The unit is not a UCUM code") and "new version" in fix["todo"]
