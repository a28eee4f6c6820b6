"""Who changed each side of a conflict and when, from the composition's composer and the FHIR
Provenance / meta; a system is named when no person is, never "unknown"."""
from datetime import datetime, timezone
from types import SimpleNamespace

from django.urls import reverse

from conflictdesk.desk.authorship import central_author, site_author

COMMITTED = datetime(2026, 11, 20, 10, 42, tzinfo=timezone.utc)


def stored(composition=None, resources=(), *, site_by="", site_at=None, central_by="", central_at=None):
    """The fields the authorship reads, as a stored Conflict holds them."""
    return SimpleNamespace(
        record_link=SimpleNamespace(site=SimpleNamespace(name="site1")),
        openehr_composition=composition or {}, openehr_changed_by=site_by, openehr_changed_at=site_at,
        fhir_resources=list(resources), fhir_changed_by=central_by, fhir_changed_at=central_at)


def observation(**meta):
    return {"resourceType": "Observation", "id": "o1", "meta": {"versionId": "2", **meta}}


def provenance(*agents):
    return {"resourceType": "Provenance", "id": "pv1", "agent": [{"who": who} for who in agents]}


def test_the_site_side_is_the_composer_at_the_site_at_its_commit_time():
    author = site_author(stored({"composer": {"_type": "PARTY_IDENTIFIED", "name": "Dr. Xu"}}, site_at=COMMITTED))
    assert (author.who, author.person, author.where, author.when) == ("Dr. Xu", True, "site1", COMMITTED)


def test_the_committer_the_engine_recorded_wins_over_the_composer():
    author = site_author(stored({"composer": {"name": "Dr. Xu"}}, site_by="Nurse Ode"))
    assert (author.who, author.person) == ("Nurse Ode", True)


def test_a_composition_composed_by_the_patient_names_the_patient():
    assert site_author(stored({"composer": {"_type": "PARTY_SELF"}})).who == "the patient"


def test_without_a_composer_name_the_feeder_system_is_named_as_a_system():
    composition = {"composer": {"_type": "PARTY_IDENTIFIED"},
                   "feeder_audit": {"originating_system_audit": {"system_id": "LIS-Lab"}}}
    author = site_author(stored(composition))
    assert (author.who, author.person) == ("LIS-Lab", False)


def test_with_nothing_named_the_sites_server_is_named():
    author = site_author(stored({}))
    assert not author.person and "site1" in author.who


def test_the_central_side_is_the_provenance_person_before_any_device():
    resources = [observation(lastUpdated="2026-11-20T10:00:00Z"),
                 provenance({"reference": "Device/engine", "display": "ConflictDesk sync engine"},
                            {"reference": "Practitioner/p9", "display": "Dr. Central"})]
    author = central_author(stored(resources=resources))
    assert (author.who, author.person, author.where) == ("Dr. Central", True, "central")
    assert author.when == datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)


def test_a_provenance_naming_only_a_device_names_it_as_a_system():
    author = central_author(stored(resources=[provenance({"reference": "Device/engine", "display": "Importer"})]))
    assert (author.who, author.person) == ("Importer", False)


def test_without_provenance_the_meta_source_system_is_named():
    author = central_author(stored(resources=[observation(source="https://ris.example.org/fhir#req-7")]))
    assert (author.who, author.person) == ("ris.example.org", False)


def test_hapis_own_request_id_source_names_no_system_so_the_central_server_is_named():
    author = central_author(stored(resources=[observation(source="#a1b2c3")]))
    assert not author.person and "central" in author.who and author.when is None


def test_the_latest_resource_update_is_the_central_time_unless_the_engine_recorded_one():
    resources = [observation(lastUpdated="2026-11-20T09:00:00Z"), observation(lastUpdated="2026-11-20T11:30:00+00:00")]
    assert central_author(stored(resources=resources)).when == datetime(2026, 11, 20, 11, 30, tzinfo=timezone.utc)
    assert central_author(stored(resources=resources, central_at=COMMITTED)).when == COMMITTED


def test_the_conflict_page_and_queue_show_each_sides_author_never_unknown(login, people, conflict):
    conflict.openehr_changed_by = conflict.fhir_changed_by = ""
    conflict.openehr_changed_at = COMMITTED
    conflict.openehr_composition["composer"] = {"_type": "PARTY_IDENTIFIED", "name": "Dr. Xu"}
    conflict.save()
    client = login(people.clinician)
    page = client.get(reverse("desk:conflict", args=[conflict.pk])).content.decode()
    assert '<strong class="author">Dr. Xu</strong>' in page
    assert f"at {conflict.record_link.site.name}, <time datetime=" in page
    assert '<strong class="author author-system">the central FHIR server</strong>' in page
    queue = client.get(reverse("desk:conflicts")).content.decode()
    assert "Dr. Xu / the central FHIR server" in queue
    assert "unknown" not in page and "? / ?" not in queue


def test_a_reverse_conflict_page_shows_who_changed_the_central_side_and_when(login, people, conflict):
    """A central change vs a site change (the reverse path): the engine stored the central side's author
    (its Provenance's person) and commit time (the version's meta.lastUpdated); the page says both."""
    from sync.models import Direction

    conflict.run.direction = Direction.TO_OPENEHR
    conflict.run.save()
    conflict.fhir_changed_by, conflict.fhir_changed_at = "Ada Osei", COMMITTED
    conflict.save()
    page = login(people.clinician).get(reverse("desk:conflict", args=[conflict.pk])).content.decode()
    assert '<strong class="author">Ada Osei</strong> at central, <time datetime="2026-11-20T' in page
    assert "10:42</time>" in page
