"""Low: an API token stops working after CONFLICTDESK_API_TOKEN_DAYS; rotating it gives a fresh one."""
from datetime import timedelta

from django.utils import timezone
from rest_framework.authtoken.models import Token

from sync.actions import do_issue_api_token


def test_an_old_token_is_refused(api, people, settings):
    settings.CONFLICTDESK_API_TOKEN_DAYS = 30
    client = api(people.auditor)
    assert client.get("/api/v1/health/").status_code == 200
    Token.objects.filter(user=people.auditor).update(created=timezone.now() - timedelta(days=31))
    assert client.get("/api/v1/health/").status_code == 401
    assert client.get("/api/v1/schema/").status_code == 401


def test_a_rotated_token_works_again(api, people, settings):
    settings.CONFLICTDESK_API_TOKEN_DAYS = 30
    Token.objects.create(user=people.auditor)
    Token.objects.filter(user=people.auditor).update(created=timezone.now() - timedelta(days=31))
    fresh = do_issue_api_token(people.auditor, acting_user=people.auditor, rotate=True)
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {fresh.key}")
    assert client.get("/api/v1/health/").status_code == 200
