"""Exports an auditor can check: FHIR R4 AuditEvents, CSV and JSON Lines, each row with its hashes."""
import csv
import io
import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from fhir.resources.R4B.auditevent import AuditEvent as R4AuditEvent

from audit.chain import canonical_json, sha256_hex
from audit.export import EXPORT_FIELDS, chain_of_custody, events_between, write_csv, write_fhir_ndjson, write_jsonl
from audit.fhir import PATIENT_LINK_SYSTEM, event_resource
from audit.record import record_event

from conftest import T0, sync_event

pytestmark = pytest.mark.django_db


@pytest.fixture
def events():
    made = [sync_event(i) for i in range(3)]
    made.append(sync_event(3, partition="central", record_key="other"))
    made.append(record_event(action="desk.login", outcome="refused", actor="alice", actor_kind="user",
                             occurred_at=T0 + timedelta(seconds=4), detail={"reason": "mfa"}))
    return made


def test_it_exports_valid_r4_audit_events(events):
    out = io.StringIO()
    assert write_fhir_ndjson(events, out) == 5
    resources = [json.loads(line) for line in out.getvalue().splitlines()]
    for resource in resources:
        R4AuditEvent.model_validate(resource)
    sync, login = resources[0], resources[-1]
    assert sync["recorded"] == "2026-03-01T09:30:00.123456Z" and sync["outcome"] == "0"
    assert sync["type"]["code"] == "sync.write"
    patient = sync["entity"][0]
    assert patient["what"] == {"identifier": {"system": PATIENT_LINK_SYSTEM, "value": "7"}}
    chain = {d["type"]: d["valueString"] for d in sync["entity"][-1]["detail"]}
    assert chain["hash"] == events[0].hash and chain["prev-hash"] == events[0].prev_hash
    destination = {d["type"]: d["valueString"] for d in sync["entity"][2]["detail"]}
    assert destination == {"destination-version": "0", "sha256-as-written": "b" * 64, "sha256-read-back": "b" * 64}
    assert login["agent"][0]["requestor"] is True and login["outcome"] == "4"
    assert all(e["what"]["identifier"]["system"] != PATIENT_LINK_SYSTEM for e in login["entity"])


def test_it_exports_r4_not_r5():
    # R5 renamed AuditEvent.type to code; the export must stay R4 for the central server.
    assert "type" in R4AuditEvent.model_fields
    resource = event_resource(sync_event(1))
    assert "code" not in resource and resource["type"]["system"].startswith("urn:conflictdesk")


def test_it_writes_json_lines_an_auditor_can_rehash(events):
    out = io.StringIO()
    assert write_jsonl(events, out) == 5
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    for row, event in zip(rows, events):
        assert (row["id"], row["hash"]) == (event.pk, event.hash)
        content = {k: v for k, v in row.items() if k not in ("id", "hash")}
        assert sha256_hex(canonical_json(content)) == event.hash
    assert rows[1]["prev_hash"] == rows[0]["hash"]


def test_it_writes_csv_with_every_field(events):
    out = io.StringIO()
    assert write_csv(events, out) == 5
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert len(rows) == 5 and tuple(rows[0]) == EXPORT_FIELDS
    assert rows[0]["hash"] == events[0].hash and rows[0]["occurred_at"] == "2026-03-01T09:30:00.123456Z"
    assert json.loads(rows[-1]["detail"]) == {"reason": "mfa"}
    assert rows[-1]["patient_link_id"] == "" and rows[0]["patient_link_id"] == "7"


def test_it_selects_a_half_open_time_range(events):
    chosen = events_between(T0 + timedelta(seconds=1), T0 + timedelta(seconds=3))
    assert [e.pk for e in chosen] == [events[1].pk, events[2].pk]


@pytest.mark.parametrize("fmt", ["fhir", "csv", "jsonl"])
def test_it_exports_from_the_command(events, fmt, tmp_path, capsys):
    target = tmp_path / f"export.{fmt}"
    call_command("audit_export", "--since", "2026-03-01T09:30:01", "--until", "2026-03-01T10:00:00+00:00",
                 "--format", fmt, "--output", str(target))
    assert "exported 4 audit events" in capsys.readouterr().err
    lines = target.read_text().splitlines()
    assert len(lines) == (5 if fmt == "csv" else 4)


def test_it_tells_the_chain_of_custody_of_one_record(events):
    custody = chain_of_custody("site1/ehr-1/obs-1::/content")
    assert [e.pk for e in custody] == [e.pk for e in events[:3]]
    assert [e.prev_hash for e in custody[1:]] == [e.hash for e in custody[:-1]]
