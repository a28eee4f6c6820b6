"""Fixtures of the engine fault tests: a private broker, HAPI and site 1 behind fault proxies, a worker."""
import os
import uuid
from datetime import timedelta

import pytest
from django.db import connection

from faultproxy import FaultProxy
from sync.models import Cursor, Site
from tests.harness import PrivateRedis, Worker, now
from tests.harness.checks import worker_env

# A fixed port only when asked for; by default the broker takes a free one.
REDIS_PORT = int(os.environ.get("CONFLICTDESK_FAULT_REDIS_PORT", "0")) or None


def _host_of(url: str) -> str:
    return url.split("//", 1)[1].split("/", 1)[0]


@pytest.fixture
def redis_broker(tmp_path):
    redis = PrivateRedis(tmp_path, port=REDIS_PORT)
    if redis.alive():
        pytest.fail(f"port {redis.port} already has a redis: set CONFLICTDESK_FAULT_REDIS_PORT to a free port")
    redis.start()
    from conflictdesk.celery import app

    previous, app.conf.broker_url = app.conf.broker_url, redis.url
    yield redis
    app.conf.broker_url = previous
    if redis.alive():
        redis.cli("shutdown", "nosave")


@pytest.fixture
def hapi_proxy(fhir_base_url):
    with FaultProxy(_host_of(fhir_base_url), idle_timeout=30, hang_limit=30) as proxy:
        yield proxy


@pytest.fixture
def site_proxy(ehrbase_urls):
    """Site 1's EHRbase as the engine reaches it; the test's own commits go straight to the server."""
    with FaultProxy(_host_of(ehrbase_urls[0]), idle_timeout=30, hang_limit=30) as proxy:
        yield proxy


@pytest.fixture
def worker(redis_broker, hapi_proxy, fhir_base_url, transactional_db, tmp_path):
    handle = Worker(worker_env(connection.settings_dict, redis_broker.url, hapi_proxy.url_for(fhir_base_url)), tmp_path)
    yield handle
    handle.stop()


def _site(base_url: str) -> Site:
    site = Site.objects.create(name="site1", openehr_base_url=base_url, poll_interval_seconds=1, local_demo=True)
    Cursor.objects.create(source="site:site1", position=now() - timedelta(seconds=1))
    return site


@pytest.fixture
def site(transactional_db, ehrbase_urls):
    return _site(ehrbase_urls[0])


@pytest.fixture
def proxied_site(transactional_db, ehrbase_urls, site_proxy):
    return _site(site_proxy.url_for(ehrbase_urls[0]))


@pytest.fixture
def ehr(cdr):
    return cdr.create_ehr(subject_id=f"pat-{uuid.uuid4()}", subject_namespace="conflictdesk-test").ehr_id
