"""Low: every page carries a Content-Security-Policy that allows only this origin's scripts and styles.

An injected <script> or inline handler in a rendered clinical field would not run.
"""
import pytest
from django.urls import reverse


def _policy(response) -> dict[str, set[str]]:
    header = response.headers.get("Content-Security-Policy", "")
    return {d.split()[0]: set(d.split()[1:]) for d in header.split(";") if d.strip()}


@pytest.mark.parametrize("url", ["account_login", "desk:conflicts"])
def test_it_sends_a_strict_policy(client, people, url):
    client.force_login(people.clinician)
    policy = _policy(client.get(reverse(url)))
    assert policy["default-src"] == {"'self'"}
    assert policy["script-src"] == {"'self'"} and policy["style-src"] == {"'self'"}
    assert policy["object-src"] == {"'none'"} and policy["frame-ancestors"] == {"'none'"}
    assert policy["base-uri"] == {"'self'"} and policy["form-action"] == {"'self'"}


def test_htmx_adds_no_inline_style_and_evaluates_nothing(client, people):
    client.force_login(people.clinician)
    page = client.get(reverse("desk:conflicts")).content.decode()
    assert 'name="htmx-config"' in page and '"includeIndicatorStyles":false' in page.replace(" ", "")
    assert '"allowEval":false' in page.replace(" ", "")


def test_the_api_docs_still_load_their_own_scripts(client, people):
    client.force_login(people.clinician)
    response = client.get("/api/v1/docs/")
    assert response.status_code == 200
    assert "'unsafe-inline'" not in _policy(response).get("script-src", set())
