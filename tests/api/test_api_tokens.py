"""API tokens (finding "tokens never expire and are stored in plain text"): hashed, expiring, old ones carried over.

The attacks: read a token row (a backup, a read-only SQL injection, a DBA) and use what is in it;
keep using a token long after it was issued. Both must fail. DRF's plain-text tokens from before
are hashed by the migration, keep their expiry, and their plain-text table is gone.
"""
from datetime import timedelta
from importlib import import_module

import pytest
from django.apps import apps
from django.contrib.admin.sites import site as admin_site
from django.db import connection
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from sync.actions import do_issue_api_token

hash_plain_tokens = import_module("conflictdesk.api.migrations.0001_hash_plain_drf_tokens").hash_plain_tokens


def client_with(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def row_values(user) -> list[str]:
    return [str(v) for row in AuthToken.objects.filter(user=user).values() for v in row.values()]


def test_a_leaked_token_row_cannot_authenticate(people):
    key = do_issue_api_token(people.auditor, acting_user=None)
    assert client_with(key).get("/api/v1/health/").status_code == 200
    stored = row_values(people.auditor)
    assert not any(key in value for value in stored)  # the key is nowhere in the row
    for value in stored:
        assert client_with(value).get("/api/v1/health/").status_code == 401


def test_a_token_past_its_expiry_is_refused(people, settings):
    settings.CONFLICTDESK_API_TOKEN_DAYS = 30
    key = do_issue_api_token(people.auditor, acting_user=None)
    token = AuthToken.objects.get(user=people.auditor)
    assert timedelta(days=29) < token.expiry - timezone.now() <= timedelta(days=30)
    AuthToken.objects.filter(pk=token.pk).update(expiry=timezone.now() - timedelta(seconds=1))
    assert client_with(key).get("/api/v1/health/").status_code == 401
    assert client_with(key).get("/api/v1/schema/").status_code == 401


def test_rotating_revokes_the_old_tokens_and_the_new_one_works(people):
    old = do_issue_api_token(people.auditor, acting_user=None)
    fresh = do_issue_api_token(people.auditor, acting_user=people.auditor, rotate=True)
    assert client_with(old).get("/api/v1/health/").status_code == 401
    assert client_with(fresh).get("/api/v1/health/").status_code == 200


@pytest.fixture
def plain_drf_tokens(people):
    """DRF's authtoken_token table as an older release left it, with one live and one expired token."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, "
                       "created timestamptz NOT NULL, user_id integer NOT NULL)")
        cursor.execute("INSERT INTO authtoken_token VALUES (%s, %s, %s), (%s, %s, %s)",
                       ["a" * 40, timezone.now() - timedelta(days=10), people.auditor.pk,
                        "b" * 40, timezone.now() - timedelta(days=91), people.steward.pk])
    return {"live": "a" * 40, "expired": "b" * 40}


def test_the_migration_hashes_live_plain_tokens_keeps_their_expiry_and_drops_the_plain_table(
        plain_drf_tokens, people, settings):
    settings.CONFLICTDESK_API_TOKEN_DAYS = 90
    with connection.schema_editor() as editor:
        hash_plain_tokens(apps, editor)
    assert "authtoken_token" not in connection.introspection.table_names()
    assert client_with(plain_drf_tokens["live"]).get("/api/v1/health/").status_code == 200
    assert client_with(plain_drf_tokens["expired"]).get("/api/v1/health/").status_code == 401
    carried = AuthToken.objects.get(user=people.auditor)
    assert timedelta(days=79) < carried.expiry - timezone.now() <= timedelta(days=80)
    assert not any(plain_drf_tokens["live"] in value for value in row_values(people.auditor))
    assert not AuthToken.objects.filter(user=people.steward).exists()


def test_the_admin_cannot_mint_or_edit_tokens(rf, people):
    people.admin.is_superuser = True
    request = rf.get("/admin/knox/authtoken/")
    request.user = people.admin
    token_admin = admin_site._registry[AuthToken]
    assert not token_admin.has_add_permission(request)
    assert not token_admin.has_change_permission(request)
