"""Low: a search or history page's ``next`` link is followed only on the server's own origin and base path.

A hostile or misconfigured server could otherwise send the engine (and any
credentials its client carries) to another host.
"""
import httpx
import pytest

from sync.clients.errors import InvalidRequest
from sync.clients.fhir import FHIRClient

FHIR = "http://fhir.test/fhir"


def _client(next_url, sent):
    def handler(request):
        sent.append(str(request.url))
        if len(sent) == 1:
            return httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset",
                                             "link": [{"relation": "next", "url": next_url}],
                                             "entry": [{"resource": {"resourceType": "Patient", "id": "p1"}}]})
        return httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset", "entry": []})
    return FHIRClient(FHIR, transport=httpx.MockTransport(handler))


@pytest.mark.parametrize("next_url", ["https://attacker.example/fhir?_getpages=x", "http://fhir.test:8443/fhir?p=2",
                                      "https://fhir.test/fhir?p=2", "http://fhir.test/other/Patient?p=2",
                                      "http://fhir.test.attacker.example/fhir?p=2", "//attacker.example/fhir"])
def test_it_does_not_follow_a_next_link_off_its_origin(next_url):
    sent = []
    with pytest.raises(InvalidRequest):
        list(_client(next_url, sent).search("Patient"))
    assert len(sent) == 1


def test_it_follows_a_next_link_on_its_origin():
    sent = []
    assert [r["id"] for r in _client("http://fhir.test/fhir?_getpages=abc&_getpagesoffset=50", sent).search("Patient")] == ["p1"]
    assert len(sent) == 2
