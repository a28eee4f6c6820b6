"""The engine sends the central FHIR server the credentials the environment gives it (anchors included)."""
import base64

import httpx
import pytest

from audit import tasks
from sync.workflow import services


def test_it_sends_basic_credentials_to_the_central_server(settings, monkeypatch):
    settings.CONFLICTDESK_FHIR_CREDENTIALS = "engine:s3cret:with:colons"
    assert services.central_auth() == ("engine", "s3cret:with:colons")
    seen = []

    def handler(request):
        seen.append(request.headers.get("Authorization"))
        return httpx.Response(200, json={"resourceType": "Patient", "id": "p1"})

    real = services.FHIRClient
    monkeypatch.setattr(services, "FHIRClient", lambda url, **kw: real(url, transport=httpx.MockTransport(handler), **kw))
    monkeypatch.setattr(services, "_clients", {})
    services._default_services().fhir.read("Patient", "p1")
    assert seen == ["Basic " + base64.b64encode(b"engine:s3cret:with:colons").decode()]


def test_no_credentials_means_none_sent(settings):
    settings.CONFLICTDESK_FHIR_CREDENTIALS = None
    assert services.central_auth() is None


@pytest.mark.django_db
def test_the_anchoring_task_uses_them(settings, monkeypatch):
    settings.CONFLICTDESK_FHIR_CREDENTIALS = "anchor:pw"
    made = []

    class Fake:
        def __init__(self, url, **kwargs):
            made.append(kwargs.get("auth"))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(tasks, "FHIRClient", Fake)
    tasks.anchor_heads_task()
    assert made == [("anchor", "pw")]
