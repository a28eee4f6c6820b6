"""Shared fixtures. Integration fixtures point at the real servers that
`make services` (deploy/services.sh) starts once per test run; they never
start a JVM themselves, so every test reuses the same EHRbase and HAPI.

A missing server FAILS an integration test (CI must not pass by skipping);
deselect them with `-m "not integration"` for a quick local unit run.
"""
import os
import time
from pathlib import Path

import httpx
import pytest

from tests.fixtures import CORPUS_DIR

REPO_DIR = Path(__file__).resolve().parents[1]

DEFAULT_SITE_URLS = "http://127.0.0.1:8101/ehrbase/rest/openehr/v1,http://127.0.0.1:8102/ehrbase/rest/openehr/v1"
DEFAULT_FHIR_URL = "http://127.0.0.1:8090/fhir"


def _require(url: str, what: str, patience_s: float = 60) -> None:
    """Fail (never skip) unless the server answers within `patience_s`: a busy
    2-core machine can take a while to build HAPI's capability statement."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            httpx.get(url, timeout=30).raise_for_status()
            return
        except httpx.HTTPError as exc:
            if time.monotonic() > deadline:
                pytest.fail(f"{what} is not answering at {url} ({exc.__class__.__name__}); run `make services` first")
            time.sleep(2)


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    return CORPUS_DIR


@pytest.fixture(scope="session")
def ehrbase_urls() -> list[str]:
    urls = [u.strip() for u in os.environ.get("CONFLICTDESK_SITE_URLS", DEFAULT_SITE_URLS).split(",") if u.strip()]
    for url in urls:
        _require(url.replace("/rest/openehr/v1", "/rest/status"), "EHRbase")
    return urls


@pytest.fixture(scope="session")
def fhir_base_url() -> str:
    url = os.environ.get("CONFLICTDESK_FHIR_BASE_URL", DEFAULT_FHIR_URL)
    _require(f"{url}/metadata", "HAPI FHIR")
    return url


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    """Give each pytest process its own test database.

    Several engineers (and CI) may run the suite at once on one PostgreSQL;
    a shared `test_conflictdesk` would be dropped under a running suite.
    """
    from django.conf import settings

    suffix = os.environ.get("CONFLICTDESK_TEST_DB_SUFFIX") or str(os.getpid())
    for db in settings.DATABASES.values():
        test = db.setdefault("TEST", {})
        test["NAME"] = f"{test.get('NAME') or 'test_' + db['NAME']}_{suffix}"
