"""Shared fixtures, and the markers that say which server a test needs.

Integration fixtures point at the real servers that `make services`
(deploy/services.sh) starts once per test run; they never start a JVM
themselves, so every test reuses the same EHRbase and HAPI. A missing server
FAILS an integration test (CI must not pass by skipping).

``pytest_collection_modifyitems`` below marks every test by what it needs, so
the Makefile's subsets are decided here, not by hand-kept lists:

* ``integration``: the real servers (EHRbase, HAPI, PostgreSQL, Redis): every
  test under tests/integration/, and any test that asks for a server fixture;
* ``db``: PostgreSQL (the test database): a ``django_db`` marker, a database
  fixture (``db``, ``transactional_db``, ``client``, ``live_server``, ...), a
  Django ``TransactionTestCase``, and every integration and browser test;
* ``browser``: Chromium: every test under tests/browser/.

`make test-unit` runs ``not integration and not db and not browser`` (no
server at all); `make test-db` runs ``db and not integration and not browser``
(PostgreSQL only); `make test` runs everything.
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


# Fixtures that open the test database (directly or through a request to a view or a live server).
DB_FIXTURES = frozenset({
    "db", "transactional_db", "django_db_setup", "django_db_reset_sequences", "django_db_serialized_rollback",
    "client", "async_client", "admin_client", "admin_user", "live_server",
})
# Fixtures that reach a real server other than PostgreSQL.
SERVER_FIXTURES = frozenset({"ehrbase_urls", "fhir_base_url"})
TESTS_DIR = Path(__file__).resolve().parent


def _needs_db(item: pytest.Item) -> bool:
    if item.get_closest_marker("django_db") is not None:
        return True
    if DB_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    cls = getattr(item, "cls", None)
    if cls is not None:
        from django.test import TransactionTestCase

        return issubclass(cls, TransactionTestCase)  # TestCase is one too; SimpleTestCase is not
    return False


def pytest_collection_modifyitems(config, items):
    """Mark each test by the servers it needs (see the module docstring)."""
    for item in items:
        parts = Path(str(item.fspath)).resolve().relative_to(TESTS_DIR).parts
        if parts[0] == "browser":
            item.add_marker(pytest.mark.browser)
        if parts[0] == "integration" or SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
        if (item.get_closest_marker("integration") or item.get_closest_marker("browser")) or _needs_db(item):
            item.add_marker(pytest.mark.db)
