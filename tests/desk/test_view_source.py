"""The desk's "view source" page and the links to it from every FHIR version the desk shows."""
from __future__ import annotations

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from tests.api.test_sources import EHR, canonical, flat, sources, vuid  # noqa: F401  (fixture)

URL = reverse("desk:source", args=["Observation", "obs-1"])


def test_it_renders_the_source_composition_clinically(login, people, sources):
    response = login(people.clinician).get(URL)
    assert response.status_code == 200
    page = response.content.decode()
    assert vuid(2) in page and "site1" in page and "same as synced" in page
    assert "Body temperature" in page or "Temperature" in page  # the desk's renderer, not JSON
    assert "&quot;_type&quot;" not in page
    assert AuditEvent.objects.filter(action="source.viewed", actor=people.clinician.email, outcome="ok").count() == 1


def test_the_raw_toggle_shows_the_canonical_json(login, people, sources):
    page = login(people.auditor).get(URL + "?view=raw").content.decode()
    assert "&quot;_type&quot;: &quot;COMPOSITION&quot;" in page and vuid(2) in page


def test_flat_is_shown_raw(login, people, sources):
    page = login(people.steward).get(URL + "?format=flat").content.decode()
    assert "encounter/_uid" in page and sources.openehr.calls == [(EHR, vuid(2), True)]


def test_a_site_down_is_a_503_page_with_the_last_synced_hash(login, people, sources):
    from audit.chain import payload_hash

    sources.openehr.down = True
    response = login(people.clinician).get(URL)
    assert response.status_code == 503
    page = response.content.decode()
    assert "unreachable" in page and payload_hash(canonical(2)) in page and "hash of the composition" in page


def test_no_engine_provenance_is_a_404_page(login, people, sources):
    response = login(people.clinician).get(reverse("desk:source", args=["Observation", "elsewhere"]))
    assert response.status_code == 404 and "no Provenance" in response.content.decode()


@pytest.mark.parametrize("who", ["admin", "norole"])
def test_roles_without_view_conflicts_are_refused(login, people, sources, who):
    assert login(getattr(people, who)).get(URL).status_code == 403
    assert not AuditEvent.objects.filter(action="source.viewed").exists()


def test_the_conflict_links_view_source_from_every_central_version(login, people, conflict, live_versions):
    links = {reverse("desk:source", args=[r["type"], r["id"]]) for r in conflict.fhir_versions}
    assert links
    for view in ("clinical", "raw"):
        page = login(people.clinician).get(reverse("desk:conflict", args=[conflict.pk]) + f"?view={view}").content.decode()
        for link in links:
            assert f'href="{link}"' in page, (view, link)
