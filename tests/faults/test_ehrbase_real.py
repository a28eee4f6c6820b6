"""The proxy in front of each real EHRbase site, read-only: invisible when
quiet, and its faults reach OpenEHRClient as TransientError."""

from urllib.parse import urlsplit

import pytest

from faultproxy import FaultProxy
from sync.clients.errors import TransientError
from sync.clients.openehr import OpenEHRClient

pytestmark = pytest.mark.integration


@pytest.fixture(params=[0, 1], ids=["site1", "site2"])
def site(request, ehrbase_urls):
    url = ehrbase_urls[request.param % len(ehrbase_urls)]
    target = urlsplit(url)
    with FaultProxy((target.hostname, target.port), hang_limit=10) as proxy:
        with OpenEHRClient(proxy.url_for(url)) as client:
            yield proxy, client


def test_it_passes_ehrbase_through_and_injects_faults(site):
    proxy, cdr = site
    templates = cdr.list_templates()
    proxy.fail(1, retry_after=4)
    with pytest.raises(TransientError) as caught:
        cdr.list_templates()
    assert caught.value.status == 503 and caught.value.retry_after_seconds == 4.0
    proxy.drop(at="response")
    with pytest.raises(TransientError, match="transport error"):
        cdr.list_templates()
    proxy.down()
    with pytest.raises(TransientError, match="ConnectError"):
        cdr.list_templates()
    proxy.up()
    assert cdr.list_templates() == templates
    assert [e.kind for e in proxy.events()] == ["fail", "drop", "down", "up"]
