"""Every endpoint x every role: allowed exactly when the desk's role table grants the permission."""
import pytest

from audit.models import AuditEvent
from conflictdesk.api.views.triggers import TRIGGER_PERMISSIONS
from conflictdesk.desk.roles import ROLE_PERMISSIONS
from tests.desk import factories as f

ROLES = ["clinician", "steward", "auditor", "admin", "norole"]

# (method, url, permission(s)); {c} is a conflict id, {d} a dead letter id
ENDPOINTS = [
    ("get", "/api/v1/sites/", "manage_sites"),
    ("get", "/api/v1/sites/site1/", "manage_sites"),
    ("post", "/api/v1/sites/", "manage_sites"),
    ("get", "/api/v1/runs/", "view_health"),
    ("get", "/api/v1/conflicts/", "view_conflicts"),
    ("get", "/api/v1/conflicts/{c}/", "view_conflicts"),
    ("post", "/api/v1/conflicts/{c}/decide/", "decide_conflict"),
    ("get", "/api/v1/dead-letters/", "view_deadletters"),
    ("get", "/api/v1/dead-letters/{d}/", "view_deadletters"),
    ("post", "/api/v1/dead-letters/{d}/redrive/", "work_deadletters"),
    ("post", "/api/v1/dead-letters/{d}/discard/", "work_deadletters"),
    ("get", "/api/v1/audit-events/", "view_audit"),
    ("get", "/api/v1/audit-events/export/?format=csv", "view_audit"),
    ("post", "/api/v1/triggers/", TRIGGER_PERMISSIONS),
    ("get", "/api/v1/health/", "view_health"),
]


def granted(role: str, perms) -> bool:
    perms = (perms,) if isinstance(perms, str) else perms
    return role != "norole" and bool(ROLE_PERMISSIONS[getattr(f.roles, role.upper())] & set(perms))


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("method,url,perms", ENDPOINTS, ids=[f"{m} {u}" for m, u, _ in ENDPOINTS])
def test_it_allows_exactly_the_roles_the_table_grants(api, people, conflict, role, method, url, perms):
    letter = f.make_dead_letter()
    url = url.format(c=conflict.pk, d=letter.pk)
    response = getattr(api(getattr(people, role)), method)(url, {}, format="json") if method == "post" \
        else api(getattr(people, role)).get(url)
    refusals = AuditEvent.objects.filter(action="desk.refused", actor=getattr(people, role).email)
    if granted(role, perms):
        assert response.status_code != 403, response.content
        assert not refusals.exists()
    else:
        assert response.status_code == 403
        assert "needs desk permission" in response.json()["detail"]
        refusal = refusals.get()
        assert refusal.detail["method"] == method.upper() and refusal.outcome == "denied"
        assert refusal.detail["permission"] == (perms if isinstance(perms, str) else "|".join(perms))


@pytest.mark.parametrize("method,url,perms", ENDPOINTS, ids=[f"{m} {u}" for m, u, _ in ENDPOINTS])
def test_anonymous_gets_401_and_nothing_is_audited(api, db, conflict, method, url, perms):
    response = getattr(api(), method)(url.format(c=conflict.pk, d=1))
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Token")
    assert not AuditEvent.objects.filter(action="desk.refused").exists()


def test_the_browser_session_works_with_csrf(client, people, conflict):
    """Session auth: the signed-in desk user reads the API; a POST without the CSRF token is refused."""
    from rest_framework.test import APIClient

    browser = APIClient(enforce_csrf_checks=True)
    browser.force_login(people.clinician)
    assert browser.get("/api/v1/conflicts/").status_code == 200
    response = browser.post(f"/api/v1/conflicts/{conflict.pk}/decide/", {}, format="json")
    assert response.status_code == 403 and "CSRF" in response.json()["detail"]
