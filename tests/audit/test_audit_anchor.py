"""Anchors on the central server catch a local table that was rewritten consistently."""
from dataclasses import dataclass

import pytest
from django.core.management import CommandError, call_command
from fhir.resources.R4B.auditevent import AuditEvent as R4AuditEvent

from audit.anchor import anchor_heads, verify_anchors
from audit.chain import event_hash
from audit.models import AuditAnchor, AuditEvent
from audit.verify import verify_partition

from conftest import T0, sync_event

pytestmark = pytest.mark.django_db


@dataclass
class Written:
    id: str
    version_id: str
    resource: dict


class Gone(Exception):
    status = 404


class FakeFHIR:
    """Keeps what it is given, with versions, like the central server; answers dicts as FHIRClient does."""

    def __init__(self):
        self.store = {}  # id -> the latest version
        self.history = {}  # (id, version) -> that version

    def create(self, resource):
        R4AuditEvent.model_validate(resource)
        new_id = str(len(self.store) + 1)
        return self._keep({**resource, "id": new_id, "meta": {"versionId": "1"}})

    def update(self, resource):
        version = str(int(self.store[resource["id"]]["meta"]["versionId"]) + 1)
        return self._keep({**resource, "meta": {"versionId": version}})

    def _keep(self, resource):
        self.store[resource["id"]] = resource
        self.history[(resource["id"], resource["meta"]["versionId"])] = resource
        return Written(resource["id"], resource["meta"]["versionId"], resource)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def read(self, resource_type, resource_id):
        assert resource_type == "AuditEvent"
        if resource_id not in self.store:
            raise Gone(resource_id)
        return self.store[resource_id]

    def vread(self, resource_type, resource_id, version_id):
        assert resource_type == "AuditEvent"
        if (resource_id, version_id) not in self.history or resource_id not in self.store:
            raise Gone(resource_id)
        return self.history[(resource_id, version_id)]

    def search(self, resource_type, params):
        system, code = params["type"].split("|")
        for resource in self.store.values():
            if (resource["type"]["system"], resource["type"]["code"]) == (system, code) and \
                    resource.get("source", {}).get("site") == params["site"]:
                yield resource


def rewrite_history(behind_the_back, events, index, **changes):
    """Change one event and recompute every later hash and link, as an owner covering tracks would."""
    prev = events[index].prev_hash
    for event in events[index:]:
        values = {**vars(event), **(changes if event is events[index] else {}), "prev_hash": prev}
        prev = event_hash(values)
        sets = ", ".join(f"{k} = %s" for k in changes) + ", " if event is events[index] else ""
        behind_the_back(f"UPDATE audit_auditevent SET {sets}prev_hash = %s, hash = %s WHERE id = %s",
                        [*(changes.values() if event is events[index] else ()), values["prev_hash"], prev, event.pk])
    behind_the_back("UPDATE audit_audithead SET hash = %s WHERE partition = %s", [prev, events[0].partition])


def test_it_anchors_only_heads_that_moved():
    server = FakeFHIR()
    sync_event(1)
    sync_event(2, partition="central")
    first = anchor_heads(server, actor="worker@test:1")
    assert [(a.partition, a.seq) for a in first] == [("central", 1), ("site:site1", 1)]
    assert anchor_heads(server) == []
    last = sync_event(3)
    again = anchor_heads(server)
    assert [(a.partition, a.seq, a.hash) for a in again] == [("site:site1", 2, last.hash)]
    assert AuditAnchor.objects.count() == 3 and len(server.store) == 3


def test_it_passes_an_honest_chain():
    server = FakeFHIR()
    for i in range(3):
        sync_event(i)
    anchor_heads(server)
    sync_event(4)  # appends after the anchor do not disturb it
    assert verify_anchors(server) == []


def test_it_catches_a_consistently_rewritten_table(behind_the_back):
    server = FakeFHIR()
    events = [sync_event(i) for i in range(4)]
    anchor_heads(server)
    rewrite_history(behind_the_back, events, 1, outcome="forged")
    assert verify_partition("site:site1").broken is None  # the chain alone is fooled
    [problem] = verify_anchors(server)
    assert (problem.partition, problem.seq) == ("site:site1", 4)
    assert "local chain rewritten" in problem.problem
    assert AuditEvent.objects.get(pk=events[1].pk).outcome == "forged"


def test_it_reports_an_anchor_gone_from_the_server():
    server = FakeFHIR()
    sync_event(1)
    [anchor] = anchor_heads(server)
    del server.store[anchor.fhir_id]
    [problem] = verify_anchors(server)
    assert "gone from the server" in problem.problem


def test_it_anchors_and_verifies_from_the_command(monkeypatch, behind_the_back, capsys):
    server = FakeFHIR()
    monkeypatch.setattr("audit.management.commands.audit_anchor.FHIRClient", lambda url, **kw: server)
    events = [sync_event(i) for i in range(2)]
    call_command("audit_anchor")
    assert "anchored site:site1#2 as AuditEvent/1" in capsys.readouterr().out
    call_command("audit_anchor", "--verify")
    rewrite_history(behind_the_back, events, 0, record_key="elsewhere")
    with pytest.raises(CommandError, match="1 audit anchors do not match"):
        call_command("audit_anchor", "--verify")
    assert "BROKEN site:site1#2 (AuditEvent/1): local chain rewritten" in capsys.readouterr().err


@pytest.mark.integration
def test_it_anchors_on_the_central_server(fhir_base_url, behind_the_back):
    from sync.clients.fhir import FHIRClient

    events = [sync_event(i, partition="site:anchor-it") for i in range(3)]
    with FHIRClient(fhir_base_url) as client:
        [anchor] = anchor_heads(client)
        stored = client.read("AuditEvent", anchor.fhir_id)
        R4AuditEvent.model_validate(stored)
        assert anchor.fhir_version == "1"
        assert verify_anchors(client) == []
        rewrite_history(behind_the_back, events, 0, source_version="forged")
        [problem] = verify_anchors(client)
    assert problem.seq == 3 and "local chain rewritten" in problem.problem


def _owner_sql(sql, params=()):
    """As the table owner covering tracks: the append-only triggers switched off around one statement."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER USER")
        cursor.execute("ALTER TABLE audit_auditanchor DISABLE TRIGGER USER")
        cursor.execute(sql, params)
        cursor.execute("ALTER TABLE audit_auditanchor ENABLE TRIGGER USER")
        cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER USER")


def test_it_catches_a_cut_tail_even_with_the_head_rewound_and_the_anchor_rows_deleted():
    """Finding 6: the anchors are listed from the server, so deleting the local anchor rows hides nothing."""
    server = FakeFHIR()
    events = [sync_event(i) for i in range(4)]
    anchor_heads(server)
    _owner_sql("DELETE FROM audit_auditevent WHERE id = %s", [events[-1].pk])
    _owner_sql("UPDATE audit_audithead SET seq = 3, hash = %s WHERE partition = 'site:site1'", [events[2].hash])
    _owner_sql("DELETE FROM audit_auditanchor")
    assert verify_partition("site:site1").broken is None  # the shortened chain is consistent
    [problem] = verify_anchors(server)
    assert (problem.partition, problem.seq) == ("site:site1", 4)


def test_it_checks_the_anchored_version_not_what_the_server_holds_now(behind_the_back):
    """Finding 6: an anchor edited on the server to match a rewrite is caught (vread of the anchored version)."""
    from audit.fhir import anchor_resource

    server = FakeFHIR()
    events = [sync_event(i) for i in range(3)]
    [anchor] = anchor_heads(server)
    rewrite_history(behind_the_back, events, 0, outcome="forged")
    rewritten = AuditEvent.objects.get(pk=events[-1].pk).hash
    forged = anchor_resource(anchor.partition, anchor.seq, rewritten, T0, "worker@test:1")
    server.update({**server.store[anchor.fhir_id], "entity": forged["entity"]})
    problems = verify_anchors(server)
    assert problems and {p.seq for p in problems} == {3}


def test_anchors_of_another_installation_on_the_same_server_are_not_ours():
    server = FakeFHIR()
    sync_event(1)
    [anchor] = anchor_heads(server)
    server.store[anchor.fhir_id]["source"]["site"] = "another-installation"
    server.create({**server.store[anchor.fhir_id], "entity": [{**server.store[anchor.fhir_id]["entity"][0]}]})
    assert [p for p in verify_anchors(server) if "another" in p.problem] == []

