"""The OpenAPI schema (generated cleanly, served behind login, docs from vendored assets) and `api_token`."""
import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema
from knox.models import AuthToken

from audit.models import AuditEvent


def test_the_schema_generates_without_warnings_or_errors(db):
    from drf_spectacular.drainage import GENERATOR_STATS

    GENERATOR_STATS.reset()
    schema = SchemaGenerator().get_schema(request=None, public=True)
    validate_schema(schema)
    assert not GENERATOR_STATS._warn_cache and not GENERATOR_STATS._error_cache
    paths = set(schema["paths"])
    assert {"/api/v1/sites/", "/api/v1/runs/", "/api/v1/conflicts/{id}/decide/", "/api/v1/dead-letters/{id}/redrive/",
            "/api/v1/dead-letters/{id}/discard/", "/api/v1/audit-events/export/", "/api/v1/triggers/",
            "/api/v1/health/"} <= paths
    assert "knoxApiToken" in schema["components"]["securitySchemes"]


def test_schema_and_docs_are_behind_login(api, client, people):
    assert api().get("/api/v1/schema/").status_code == 401
    assert api(people.auditor).get("/api/v1/schema/?format=json").json()["info"]["title"] == "ConflictDesk API"
    response = client.get("/api/v1/docs/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


@pytest.mark.parametrize("url", ["/api/v1/docs/", "/api/v1/redoc/"])
def test_docs_pages_use_vendored_assets(client, people, url):
    client.force_login(people.clinician)
    page = client.get(url).content.decode()
    assert "/static/drf_spectacular_sidecar/" in page and "cdn.jsdelivr" not in page and "unpkg" not in page


def test_api_token_prints_a_new_token_each_time_and_rotate_revokes_the_others(people):
    first, second, rotated = io.StringIO(), io.StringIO(), io.StringIO()
    call_command("api_token", people.steward.email, stdout=first)
    call_command("api_token", people.steward.email.upper(), stdout=second)
    assert first.getvalue() != second.getvalue()
    assert AuthToken.objects.filter(user=people.steward).count() == 2
    call_command("api_token", people.steward.email, "--rotate", stdout=rotated)
    assert AuthToken.objects.filter(user=people.steward).count() == 1
    assert list(AuditEvent.objects.filter(action__startswith="api.token").order_by("pk")
                .values_list("action", flat=True)) == ["api.token.issue"] * 3
    assert rotated.getvalue().strip() not in str(list(AuditEvent.objects.values_list("detail", flat=True)))


def test_api_token_refuses_an_unknown_user(db):
    with pytest.raises(CommandError, match="no user"):
        call_command("api_token", "nobody@desk.test")
