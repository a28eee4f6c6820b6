"""Finding 4: Retry-After is parsed defensively and capped, whatever the server writes in it."""
from datetime import datetime, timezone

import httpx
import pytest
from django.conf import settings

from sync.clients.http import retry_after

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _header(value: str) -> httpx.Response:
    return httpx.Response(503, headers={"Retry-After": value})


@pytest.mark.parametrize("value", ["999999999999999999999", "1e12", "Fri, 31 Dec 9999 23:59:59 GMT", "31536000"])
def test_it_caps_a_huge_retry_after(value):
    got = retry_after(_header(value), now=NOW)
    assert got is None or 0 <= got <= settings.CONFLICTDESK_RETRY_AFTER_MAX_SECONDS


@pytest.mark.parametrize("value", ["\u00b2", "\u0663", "-5", "7.5", "inf", "nan", "0x10", "1_000", "", "  "])
def test_it_never_raises_on_odd_values(value):
    got = retry_after(httpx.Response(503, headers=[("Retry-After", value.encode())]), now=NOW)
    assert got is None or 0 <= got <= settings.CONFLICTDESK_RETRY_AFTER_MAX_SECONDS


def test_an_ordinary_value_is_kept():
    assert retry_after(_header("7"), now=NOW) == 7.0
