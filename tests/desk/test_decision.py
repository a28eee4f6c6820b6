"""A clinician's decision: stored as a Resolution, audited, handed to the engine; refused when a side moved."""
import json

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from sync.workflow import diff
from conflictdesk.desk.forms import field_token
from sync.models import Conflict, Resolution
from sync.workflow import versions

from . import factories as f


def post_decision(client, conflict, choice, picks=None, reason="Re-measured at the bedside; site value is right."):
    data = {"choice": choice, "reason": reason, "seen": json.dumps(versions.versions_seen(conflict))}
    for field_id, side in (picks or {}).items():
        data[field_token(field_id)] = side
    return client.post(reverse("desk:conflict_decide", args=[conflict.pk]), data)


@pytest.mark.parametrize("choice", ["keep_site", "keep_central"])
def test_it_stores_audits_and_starts_a_run_for_keep(login, people, conflict, engine_hook, live_versions, choice):
    response = post_decision(login(people.clinician), conflict, choice)
    assert response.status_code == 302 and response["Location"] == reverse("desk:conflicts")
    resolution = Resolution.objects.get(conflict=conflict)
    assert resolution.choice == choice and resolution.decided_by == people.clinician
    assert engine_hook == [resolution]
    comparison = diff.compare(conflict)
    expected = comparison.site_record if choice == "keep_site" else comparison.central_record
    assert resolution.content["record"] == expected
    assert resolution.content["expected"] == versions.versions_seen(conflict)
    conflict.refresh_from_db()
    assert conflict.status == Conflict.Status.RESOLVED
    event = AuditEvent.objects.get(action="desk.conflict.decide")
    assert event.actor == people.clinician.email and event.record_key == conflict.run.record_key
    assert event.detail["resolution_id"] == resolution.pk and event.detail["choice"] == choice
    assert event.run_id == 4242  # the engine's new run
    assert "Re-measured" not in json.dumps(event.detail)  # the reason stays out of the chain (hash only)


def test_it_merges_field_by_field(login, people, conflict, engine_hook, live_versions):
    comparison = diff.compare(conflict)
    first = diff.resource_key(comparison.central_resources[0])
    picks = {fd.id: ("site" if fd.key == first and fd.element == "valueQuantity" else "central") for fd in comparison.fields}
    response = post_decision(login(people.clinician), conflict, "merge", picks)
    assert response.status_code == 302
    resolution = Resolution.objects.get(conflict=conflict)
    assert resolution.field_choices == picks
    merged = resolution.content["record"][first]
    assert merged["valueQuantity"]["value"] == 38.5 and merged["status"] == "amended"
    assert engine_hook == [resolution]


def test_a_merge_needs_a_side_for_every_field(login, people, conflict, engine_hook, live_versions):
    response = post_decision(login(people.clinician), conflict, "merge", {})
    assert response.status_code == 400
    assert b"choose site or central for every differing field" in response.content
    assert not Resolution.objects.exists() and engine_hook == []


def test_a_reason_is_required(login, people, conflict, engine_hook, live_versions):
    response = post_decision(login(people.clinician), conflict, "keep_site", reason="   ")
    assert response.status_code == 400 and not Resolution.objects.exists()


@pytest.mark.parametrize("side", ["openehr", "fhir"])
def test_it_refuses_when_a_side_moved_while_the_clinician_looked(login, people, conflict, engine_hook, live_versions, side):
    if side == "openehr":
        live_versions["openehr"] = conflict.openehr_version_uid.replace("::2", "::3")
    else:
        ref = conflict.fhir_versions[0]
        live_versions["fhir"] = {f"{ref['type']}/{ref['id']}": "3"}
    response = post_decision(login(people.clinician), conflict, "keep_site")
    assert response.status_code == 302 and response["Location"] == reverse("desk:conflict", args=[conflict.pk])
    assert not Resolution.objects.exists() and engine_hook == []
    assert not AuditEvent.objects.filter(action="desk.conflict.decide").exists()
    page = login(people.clinician).get(response["Location"])
    assert b"Not applied" in page.content


def test_it_sends_the_clinician_to_the_newer_conflict(login, people, conflict, engine_hook, live_versions):
    seen = versions.versions_seen(conflict)
    Conflict.objects.filter(pk=conflict.pk).update(status=Conflict.Status.SUPERSEDED)
    # A newer conflict on the same record, as the engine records it when the site moved again.
    newer = Conflict.objects.create(
        run=type(conflict.run).objects.create(direction=conflict.run.direction, site=conflict.run.site,
                                              record_key=conflict.run.record_key, status="conflict"),
        record_link=conflict.record_link, resource_type="Observation",
        openehr_version_uid=conflict.openehr_version_uid.replace("::2", "::3"),
        openehr_composition=conflict.openehr_composition, fhir_versions=conflict.fhir_versions,
        fhir_resources=conflict.fhir_resources, base_content=conflict.base_content,
    )
    client = login(people.clinician)
    response = client.post(reverse("desk:conflict_decide", args=[conflict.pk]),
                           {"choice": "keep_central", "reason": "x", "seen": json.dumps(seen)})
    assert response["Location"] == reverse("desk:conflict", args=[newer.pk])
    assert not Resolution.objects.exists()


def test_it_refuses_when_the_servers_cannot_be_read(login, people, conflict, engine_hook, monkeypatch):
    def unreachable(c):
        raise ConnectionError("down")

    monkeypatch.setattr(versions, "current_versions", unreachable)
    response = post_decision(login(people.clinician), conflict, "keep_central")
    assert response.status_code == 503 and not Resolution.objects.exists()
    assert b"could not read the current versions" in response.content


def test_the_detail_page_shows_both_sides_the_diff_and_the_base(login, people, conflict):
    page = login(people.clinician).get(reverse("desk:conflict", args=[conflict.pk])).content.decode()
    assert "Body temperature" in page and "38.5 °C" in page  # site, readable, with units
    assert "amended" in page and "36.9 °C" in page  # central values
    assert "entry 1, event 2" in page  # repeated readings told apart
    assert "Dr. Site" in page and "Dr. Central" in page
    assert "Base version" in page and 'name="reason"' in page
    raw = login(people.clinician).get(reverse("desk:conflict", args=[conflict.pk]) + "?view=raw").content.decode()
    assert "&quot;resourceType&quot;: &quot;Observation&quot;" in raw and "&quot;_type&quot;: &quot;COMPOSITION&quot;" in raw


def test_an_auditor_sees_the_conflict_without_the_decision_form(login, people, conflict):
    page = login(people.auditor).get(reverse("desk:conflict", args=[conflict.pk])).content.decode()
    assert "Base version" in page and 'name="reason"' not in page
