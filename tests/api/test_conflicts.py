"""Conflicts over the API: the queue, one conflict whole, and a decision through the same action as the desk's."""
import pytest

from audit.models import AuditEvent
from conflictdesk.api.views import conflicts as views
from sync.workflow import diff
from sync.models import Conflict, Resolution
from sync.workflow import versions


def decide(client, conflict, **body):
    data = {"choice": "keep_site", "reason": "Re-measured at the bedside.", "seen": versions.versions_seen(conflict),
            **body}
    return client.post(f"/api/v1/conflicts/{conflict.pk}/decide/", data, format="json")


def test_it_lists_open_conflicts_paginated(api, people, conflict):
    body = api(people.auditor).get("/api/v1/conflicts/").json()
    assert body["count"] == 1 and body["results"][0]["id"] == conflict.pk
    assert body["results"][0]["site"] == "site1" and body["results"][0]["versions_seen"] == versions.versions_seen(conflict)


def test_it_names_the_bad_filter(api, people, conflict):
    response = api(people.clinician).get("/api/v1/conflicts/?status=bogus&patient=x")
    assert response.status_code == 400 and set(response.json()) == {"status", "patient"}


def test_detail_has_both_versions_and_the_fields_to_decide(api, people, conflict):
    body = api(people.clinician).get(f"/api/v1/conflicts/{conflict.pk}/").json()
    assert body["openehr_composition"] == conflict.openehr_composition
    assert body["fhir_resources"] == conflict.fhir_resources
    assert [f["id"] for f in body["fields_to_decide"]] == [f.id for f in diff.compare(conflict).fields]
    assert {f["title"] for f in body["fields_to_decide"]} == {"Body temperature", "Body temperature · status"}
    assert {f["changed_on"] for f in body["fields_to_decide"]} == {"site", "central"}


def test_a_decision_goes_through_the_desks_action(api, people, conflict, engine_hook, monkeypatch):
    calls = []
    real = views.do_decide_conflict

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(views, "do_decide_conflict", spy)
    monkeypatch.setattr(versions, "current_versions", versions.versions_seen)
    response = decide(api(people.clinician), conflict, choice="keep_central")
    assert response.status_code == 201, response.content
    (args, kwargs), = calls
    assert args[0].pk == conflict.pk and kwargs["acting_user"] == people.clinician and kwargs["choice"] == "keep_central"
    assert kwargs["seen"] == versions.versions_seen(conflict)


def test_it_stores_and_audits_like_the_desk(api, people, conflict, engine_hook, live_versions):
    response = decide(api(people.clinician), conflict)
    assert response.status_code == 201
    resolution = Resolution.objects.get(conflict=conflict)
    assert response.json() == {"id": resolution.pk, "conflict_id": conflict.pk, "choice": "keep_site",
                                "field_choices": resolution.field_choices,
                                "decided_at": response.json()["decided_at"], "run_id": 4242}
    assert engine_hook == [resolution]
    event = AuditEvent.objects.get(action="desk.conflict.decide")
    assert event.actor == people.clinician.email and "bedside" not in str(event.detail)


@pytest.mark.parametrize("body,field", [
    ({"reason": "   "}, "reason"),
    ({"reason": None}, "reason"),
    ({"choice": "flip_a_coin"}, "choice"),
    ({"seen": "v1"}, "seen"),
    ({"field_choices": {"x": "neither"}}, "field_choices"),
])
def test_a_bad_decision_names_the_field(api, people, conflict, engine_hook, live_versions, body, field):
    response = decide(api(people.clinician), conflict, **body)
    assert response.status_code == 400 and field in response.json(), response.content
    assert not Resolution.objects.exists() and engine_hook == []


def test_a_merge_needs_a_side_for_every_field(api, people, conflict, engine_hook, live_versions):
    response = decide(api(people.clinician), conflict, choice="merge", field_choices={})
    assert response.status_code == 400
    assert "choose a side for every differing field" in response.json()["field_choices"][0]


def test_it_merges_field_by_field(api, people, conflict, engine_hook, live_versions):
    picks = {fd.id: "site" for fd in diff.compare(conflict).fields}
    response = decide(api(people.clinician), conflict, choice="merge", field_choices=picks)
    assert response.status_code == 201 and Resolution.objects.get().field_choices == picks


def test_it_refuses_when_a_side_moved(api, people, conflict, engine_hook, live_versions):
    live_versions["openehr"] = conflict.openehr_version_uid.replace("::2", "::3")
    response = decide(api(people.clinician), conflict)
    assert response.status_code == 409
    assert response.json()["current_conflict_id"] == conflict.pk and "changed on a server" in response.json()["detail"]
    assert not Resolution.objects.exists()


def test_it_refuses_a_closed_conflict(api, people, conflict, engine_hook, live_versions):
    Conflict.objects.filter(pk=conflict.pk).update(status=Conflict.Status.SUPERSEDED)
    assert decide(api(people.clinician), conflict).status_code == 409


def test_unreachable_servers_are_503(api, people, conflict, engine_hook, monkeypatch):
    def down(conflict):
        raise ConnectionError("down")

    monkeypatch.setattr(versions, "current_versions", down)
    response = decide(api(people.clinician), conflict)
    assert response.status_code == 503 and "try again" in response.json()["detail"]


@pytest.mark.parametrize("deleted_on", [Conflict.Deleted.SITE, Conflict.Deleted.CENTRAL])
def test_a_deletion_conflict_shows_its_side_and_refuses_a_merge(api, people, conflict, engine_hook, live_versions,
                                                                  deleted_on):
    Conflict.objects.filter(pk=conflict.pk).update(deleted_on=deleted_on)
    conflict.refresh_from_db()
    client = api(people.clinician)
    assert client.get(f"/api/v1/conflicts/{conflict.pk}/").json()["deleted_on"] == deleted_on
    picks = {fd.id: "site" for fd in diff.compare(conflict).fields}
    response = decide(client, conflict, choice="merge", field_choices=picks)
    assert response.status_code == 400 and "choice" in response.json(), response.content
    assert not Resolution.objects.exists() and engine_hook == []
    assert decide(client, conflict, choice="keep_central").status_code == 201


def test_an_ordinary_conflict_says_nothing_was_deleted(api, people, conflict):
    assert api(people.clinician).get(f"/api/v1/conflicts/{conflict.pk}/").json()["deleted_on"] == ""
