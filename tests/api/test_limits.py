"""Low: request bodies are capped before any parser reads them, and the API throttles each client.

DRF's JSON parser reads the raw stream, so Django's own DATA_UPLOAD_MAX_MEMORY_SIZE
check (on ``request.body``) never runs for it.
"""
import json

import pytest
from django.conf import settings
from rest_framework.throttling import UserRateThrottle


def test_it_refuses_an_oversized_json_body_before_parsing_it(api, people):
    body = json.dumps({"site": "site1", "padding": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)})
    response = api(people.admin).generic("POST", "/api/v1/triggers/", body, content_type="application/json")
    assert response.status_code == 413


def test_it_refuses_an_oversized_body_from_anyone(client, db):
    body = "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)
    assert client.generic("POST", "/api/v1/sites/", body, content_type="application/json").status_code == 413


def test_the_api_throttles_a_signed_in_client(api, people, monkeypatch):
    from django.core.cache import cache

    cache.clear()
    monkeypatch.setattr(UserRateThrottle, "THROTTLE_RATES", {"user": "3/min", "anon": "2/min"})
    client = api(people.auditor)
    codes = [client.get("/api/v1/health/").status_code for _ in range(5)]
    assert codes[:3] == [200, 200, 200] and codes[-1] == 429


@pytest.mark.parametrize("scope", ["user", "anon"])
def test_the_throttle_rates_are_set(scope):
    assert settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"][scope]
