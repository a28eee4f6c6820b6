"""/healthz: the liveness URL the image's HEALTHCHECK and deploy/demo.sh poll."""
import json

from django.urls import resolve

from conflictdesk import health


def test_it_answers_anonymous_get_with_status_ok_only(client):
    # No db mark: any database access would fail this test.
    response = client.get("/healthz")
    assert response.status_code == 200
    assert json.loads(response.content) == {"status": "ok"}
    assert "no-store" in response["Cache-Control"]


def test_it_is_the_health_module_view_and_accepts_only_reads(client):
    assert resolve("/healthz").func is health.healthz
    assert client.post("/healthz").status_code == 405
