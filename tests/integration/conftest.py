"""Clients on the real servers, shared by the integration tests."""
import pytest

from sync.clients.fhir import FHIRClient
from sync.clients.openehr import OpenEHRClient
from tests.harness.vitals import template_opt


@pytest.fixture
def cdr(ehrbase_urls):
    """Site 1's CDR with the vital-signs template uploaded."""
    with OpenEHRClient(ehrbase_urls[0]) as client:
        client.upload_template(template_opt())
        yield client


@pytest.fixture
def fhir(fhir_base_url):
    """The central server, direct (never through a fault proxy)."""
    with FHIRClient(fhir_base_url) as client:
        yield client
