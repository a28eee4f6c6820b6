"""Every desk URL, as every role and as nobody, against ONE table of who may do what.

A URL added to the desk without a row here fails ``test_the_table_covers_every_desk_url``.
"""
import pytest
from django.urls import reverse

from audit.models import AuditEvent
from conflictdesk.desk.urls import urlpatterns

from . import factories as f

C, S, A, AD = "clinician", "steward", "auditor", "admin"
EVERY_ROLE = {C, S, A, AD}

# url name -> (method, roles allowed). The single source of truth for the walk.
TABLE = {
    "conflicts": ("GET", {C, S, A}),
    "conflict_counts": ("GET", {C, S, A}),
    "conflict": ("GET", {C, S, A}),
    "conflict_decide": ("POST", {C}),
    "deadletters": ("GET", {S, A}),
    "deadletter": ("GET", {S, A}),
    "deadletter_redrive": ("POST", {S}),
    "deadletters_redrive": ("POST", {S}),
    "deadletter_discard": ("POST", {S}),
    "source": ("GET", {C, S, A}),
    "audit": ("GET", {A}),
    "audit_record": ("GET", {A}),
    "audit_verify": ("GET", {A}),
    "audit_export": ("GET", {A}),
    "health": ("GET", EVERY_ROLE),
    "health_panel": ("GET", EVERY_ROLE),
    "matching": ("GET", {S}),
    "matching_decide": ("POST", {S}),
    "people": ("GET", {AD}),
    "people_invite": ("POST", {AD}),
}


def test_the_table_covers_every_desk_url():
    assert {p.name for p in urlpatterns} == set(TABLE)


@pytest.fixture
def objects(db):
    conflict = f.make_conflict()
    letter = f.make_dead_letter(conflict.record_link.site)
    return {"conflict": conflict.pk, "letter": letter.pk}


def _a_source(resource_type, resource_id, *, fmt, acting_user):
    from sync.source import SourceResult

    return SourceResult(resource=f"{resource_type}/{resource_id}", provenance="Provenance/p", via="provenance",
                        site="site1", ehr_id="e", version_uid="v::s::1", format=fmt, content={}, hash="h",
                        last_synced_hash="", last_synced_hash_of="")


def url_for(name, objects):
    pattern = next(p for p in urlpatterns if p.name == name)
    kwargs = {}
    if name == "source":
        kwargs = {"resource_type": "Observation", "resource_id": "walk"}
    if "pk" in pattern.pattern.converters:
        kwargs["pk"] = objects["letter"] if name.startswith("deadletter") else objects["conflict"]
    return reverse(f"desk:{name}", kwargs=kwargs)


@pytest.mark.parametrize("name", sorted(TABLE))
@pytest.mark.parametrize("who", sorted(EVERY_ROLE) + ["norole", "anonymous"])
def test_walk(client, people, objects, name, who, monkeypatch):
    # POSTs carry no data: allowed roles get a form error (400) or a redirect, never a 403.
    monkeypatch.setattr("sync.workflow.versions.current_versions", lambda c: {})
    monkeypatch.setattr("conflictdesk.desk.views.sources.do_view_source", _a_source)  # access, not the servers
    monkeypatch.setattr("conflictdesk.desk.steward.open_questions", lambda fhir: [])
    method, allowed = TABLE[name]
    if who != "anonymous":
        client.force_login(getattr(people, who))
    refusals = AuditEvent.objects.filter(action="desk.refused").count()
    url = url_for(name, objects)
    response = client.get(url) if method == "GET" else client.post(url, {})
    if who == "anonymous":
        assert response.status_code == 302 and response["Location"].startswith(reverse("account_login"))
    elif who in allowed:
        assert response.status_code in (200, 302, 400), response.status_code
    else:
        assert response.status_code == 403
        assert AuditEvent.objects.filter(action="desk.refused").count() == refusals + 1


def test_home_sends_each_role_to_its_first_page(client, people):
    expected = {C: "desk:conflicts", S: "desk:conflicts", A: "desk:conflicts", AD: "desk:people"}
    for who, target in expected.items():
        client.force_login(getattr(people, who))
        assert client.get("/")["Location"] == reverse(target)
    client.force_login(people.norole)
    assert client.get("/").status_code == 200


def test_get_on_an_action_is_refused(login, people, objects):
    assert login(people.steward).get(url_for("deadletter_redrive", objects)).status_code == 405


def test_a_refusal_is_audited_with_the_permission(login, people, objects):
    login(people.clinician).get(reverse("desk:audit"))
    event = AuditEvent.objects.filter(action="desk.refused").latest("pk")
    assert event.actor == people.clinician.email
    assert event.detail == {"permission": "view_audit", "url_name": "desk:audit", "method": "GET"}


def test_unknown_objects_are_404(login, people):
    assert login(people.clinician).get(reverse("desk:conflict", args=[999999])).status_code == 404
