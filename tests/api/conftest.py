"""API fixtures: the desk's people and conflict, each person with an API token."""
from __future__ import annotations

import pytest
from knox.models import AuthToken
from rest_framework.test import APIClient

from tests.desk.conftest import conflict, engine_hook, fast_passwords, live_versions, people  # noqa: F401


@pytest.fixture
def api():
    """``api(user)``: a client authenticated the machine way (Authorization: Token ...); ``api()`` anonymous."""

    def as_(user=None):
        client = APIClient()
        if user is not None:
            client.credentials(HTTP_AUTHORIZATION=f"Token {AuthToken.objects.create(user)[1]}")
        return client

    return as_


@pytest.fixture(autouse=True)
def fresh_throttles():
    """API throttles count in the cache: each test starts with none."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture(autouse=True)
def fresh_metrics(settings):
    settings.CONFLICTDESK_METRICS_CACHE_SECONDS = 0
