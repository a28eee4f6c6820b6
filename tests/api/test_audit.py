"""Audit events over the API: read-only, filtered, and exported as FHIR ndjson, CSV or JSON Lines."""
import csv
import io
import json

from audit.models import AuditEvent
from audit.record import record_event


def events(n=3):
    return [record_event(action="sync.write", outcome="ok", actor="worker@h:1", partition="site:site1",
                         record_key=f"site:site1:rec{i}", patient_link_id=i) for i in range(n)]


def test_it_lists_and_filters(api, people):
    made = events()
    client = api(people.auditor)
    assert client.get("/api/v1/audit-events/").json()["count"] == 3
    body = client.get("/api/v1/audit-events/?patient=1&site=site1&action=sync.").json()
    assert [e["id"] for e in body["results"]] == [made[1].pk] and body["results"][0]["hash"] == made[1].hash
    assert set(client.get("/api/v1/audit-events/?patient=x&since=yesterday").json()) == {"patient", "since"}


def test_it_is_read_only(api, people):
    event = events(1)[0]
    client = api(people.auditor)
    assert client.post("/api/v1/audit-events/", {}, format="json").status_code == 405
    assert client.delete(f"/api/v1/audit-events/{event.pk}/").status_code == 405


def test_export_in_each_format(api, people):
    made = events()
    client = api(people.auditor)
    response = client.get("/api/v1/audit-events/export/?format=jsonl")
    assert response.status_code == 200 and response["Content-Type"] == "application/jsonl"
    rows = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    assert [r["hash"] for r in rows] == [e.hash for e in made]  # oldest first
    response = client.get("/api/v1/audit-events/export/?format=csv&patient=2")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [int(r["id"]) for r in rows] == [made[2].pk] and response["Content-Type"] == "text/csv"
    response = client.get("/api/v1/audit-events/export/?format=fhir")
    resources = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    assert len(resources) == 3 and {r["resourceType"] for r in resources} == {"AuditEvent"}
    assert response["Content-Disposition"] == 'attachment; filename="audit-events.ndjson"'


def test_export_csv_has_one_header_across_batches(api, people, monkeypatch):
    from audit import export

    monkeypatch.setattr(export, "BATCH", 2)
    events(5)
    response = api(people.auditor).get("/api/v1/audit-events/export/?format=csv")
    text = b"".join(response.streaming_content).decode()
    lines = text.strip().splitlines()
    assert sum(line.startswith("id,partition,") for line in lines) == 1 and len(lines) == 6


def test_export_names_a_bad_format_or_filter(api, people):
    client = api(people.auditor)
    response = client.get("/api/v1/audit-events/export/?format=xml")
    assert response.status_code == 400 and "format" in response.json()
    assert "until" in client.get(
        "/api/v1/audit-events/export/?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z").json()
    assert AuditEvent.objects.count() == 0
