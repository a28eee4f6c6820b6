"""HAPI FHIR behind basic auth (BasicAuthFilter; the demo's and compose's setting): nobody without the
credentials reads or writes, only the capability statement stays open, and the engine's client gets in
with CONFLICTDESK_FHIR_CREDENTIALS.

The suite's HAPI runs open (make services: HAPI_AUTH=none), so this starts a second one from the same
jar (deploy/hapi-fhir.sh build) on port 8190 with its own database, hapi_authcheck, kept between runs,
and without the IG packages (their install takes minutes; validation is not what this checks).
"""
from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from sync.clients.errors import ClientError
from sync.clients.fhir import FHIRClient
from sync.workflow.services import central_auth
from tests.harness.engine import REPO

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PORT, DATABASE = 8190, "hapi_authcheck"
BASE = f"http://127.0.0.1:{PORT}/fhir"
JDK17 = Path("/usr/lib/jvm/java-17-openjdk-amd64/bin/java")


def _psql(sql: str) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-q", "-X", "-c", sql], check=True, timeout=60)


@pytest.fixture(scope="module")
def hapi(tmp_path_factory):
    subprocess.run(["deploy/hapi-fhir.sh", "build"], cwd=REPO, check=True, timeout=900)
    jar = tmp_path_factory.mktemp("hapi-auth") / "hapi.jar"
    shutil.copy(REPO / "deploy/hapi-fhir/target/conflictdesk-hapi-fhir.jar", jar)  # a later build never rewrites it
    exists = subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-tAX", "-c",
                             f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"],
                            capture_output=True, text=True, check=True).stdout.strip()
    if not exists:
        _psql(f'CREATE DATABASE "{DATABASE}" OWNER hapi')
    user, password = "cd-check", secrets.token_urlsafe(18)
    env = {**os.environ, "HAPI_DB_URL": f"jdbc:postgresql://127.0.0.1:5432/{DATABASE}", "HAPI_DB_USER": "hapi",
           "HAPI_DB_PASSWORD": os.environ.get("HAPI_DB_PASSWORD", "hapi-dev-password"),
           "HAPI_PACKAGES_DIR": "",  # no IG packages: $validate is not what this checks, and they take minutes
           "HAPI_AUTH_CREDENTIALS": f"{user}:{password}"}
    java = str(JDK17) if JDK17.exists() else "java"
    log = (jar.parent / "hapi.log").open("w")
    process = subprocess.Popen([java, "-Xms256m", "-Xmx1g", "-XX:TieredStopAtLevel=1", "-jar", str(jar),
                                f"--server.port={PORT}"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 600
        while not _answers(f"{BASE}/metadata"):
            assert process.poll() is None, f"HAPI exited during start-up (log: {log.name})"
            assert time.monotonic() < deadline, f"HAPI not ready in 600 s (log: {log.name})"
            time.sleep(2)
        yield user, password
    finally:
        process.terminate()
        try:
            process.wait(120)
        except subprocess.TimeoutExpired:  # a graceful stop that hangs on a loaded box: the test's own JVM
            process.kill()
            process.wait(30)
        log.close()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_request_without_the_credentials_is_refused(hapi):
    user, password = hapi
    patient = {"resourceType": "Patient", "active": True}
    assert httpx.get(f"{BASE}/Patient?_count=1").status_code == 401
    assert httpx.get(f"{BASE}/_history?_count=1", auth=(user, password + "x")).status_code == 401
    assert httpx.post(f"{BASE}/Patient", json=patient).status_code == 401
    refused = httpx.get(f"{BASE}/Patient?_count=1")
    assert refused.headers["WWW-Authenticate"].startswith("Basic")
    assert httpx.get(f"{BASE}/Patient?_count=1", auth=(user, password)).status_code == 200
    assert httpx.get(f"{BASE}/metadata").status_code == 200  # the capability statement only


def test_the_engine_sends_the_central_credentials(hapi, settings):
    user, password = hapi
    settings.CONFLICTDESK_FHIR_CREDENTIALS = f"{user}:{password}"
    with FHIRClient(BASE, auth=central_auth()) as fhir:
        assert isinstance(list(fhir.search("Patient", {"_count": "1"})), list)
    with FHIRClient(BASE) as fhir, pytest.raises(ClientError) as refused:
        list(fhir.search("Patient", {"_count": "1"}))
    assert refused.value.status == 401
