"""Appending: chained per partition, in the caller's transaction."""
import os
import socket

import pytest
from django.db import transaction

from audit.chain import GENESIS, event_hash
from audit.models import AuditEvent, AuditHead
from audit.record import record_event, record_events, system_actor
from audit.verify import verify_partition

from conftest import sync_event

pytestmark = pytest.mark.django_db


def test_it_chains_events_within_a_partition():
    first, second = sync_event(1), sync_event(2)
    assert (first.partition_seq, first.prev_hash) == (1, GENESIS)
    assert (second.partition_seq, second.prev_hash) == (2, first.hash)
    stored = AuditEvent.objects.get(pk=second.pk)
    assert stored.hash == second.hash == event_hash(vars(stored))
    assert AuditHead.objects.get(partition="site:site1").seq == 2


def test_it_keeps_partitions_apart():
    sync_event(1, partition="site:site1")
    other = sync_event(2, partition="site:site2")
    assert (other.partition_seq, other.prev_hash) == (1, GENESIS)


def test_it_stores_microseconds_in_utc():
    event = sync_event(1)
    assert AuditEvent.objects.get(pk=event.pk).occurred_at == event.occurred_at
    assert event.occurred_at.microsecond == 123456


def test_it_rolls_back_with_the_callers_transaction():
    sync_event(1)
    with pytest.raises(RuntimeError), transaction.atomic():
        sync_event(2)
        raise RuntimeError("the state change failed")
    after = sync_event(3)
    assert after.partition_seq == 2
    assert list(AuditEvent.objects.values_list("partition_seq", flat=True)) == [1, 2]


def test_it_defaults_time_and_blank_fields():
    event = record_event(action="desk.login", outcome="refused", actor="alice")
    assert event.actor_kind == "user" and record_event(action="a", outcome="ok", actor=system_actor()).actor_kind == "system"
    assert event.partition == "desk" and event.detail == {} and event.patient_link_id is None
    assert event.occurred_at.tzinfo is not None
    assert AuditEvent.objects.get(pk=event.pk).hash == event_hash(vars(event))


def test_it_refuses_unknown_fields_and_floats():
    with pytest.raises(TypeError, match="patient_name"):
        record_event(action="a", outcome="ok", actor="x", patient_name="Jane Doe")
    with pytest.raises(TypeError, match=r"detail\.ms"):
        record_event(action="a", outcome="ok", actor="x", detail={"ms": 1.5})
    assert not AuditEvent.objects.exists()


def test_it_names_the_worker_host_and_pid():
    assert system_actor() == f"worker@{socket.gethostname()}:{os.getpid()}"


def test_it_appends_a_batch_in_order_onto_the_head():
    first = sync_event(1, partition="central")
    batch = record_events(
        [{"action": "sync.write", "outcome": "ok", "actor": "w", "detail": {"entry": i}} for i in range(3)],
        partition="central",
    )
    assert [e.partition_seq for e in batch] == [2, 3, 4]
    assert [e.prev_hash for e in batch] == [first.hash, batch[0].hash, batch[1].hash]
    stored = {e.pk: e for e in AuditEvent.objects.filter(partition="central")}
    assert [stored[e.pk].detail for e in batch] == [{"entry": 0}, {"entry": 1}, {"entry": 2}]
    assert all(stored[e.pk].hash == event_hash(vars(stored[e.pk])) for e in batch)
    assert record_events([], partition="central") == []
    assert AuditHead.objects.get(partition="central").hash == batch[-1].hash


def test_it_splits_a_large_batch_and_refuses_incomplete_events():
    batch = record_events([{"action": "a", "outcome": "ok", "actor": "w"}] * 2500, partition="central")
    assert [e.partition_seq for e in batch] == list(range(1, 2501))
    assert batch[1000].prev_hash == batch[999].hash
    assert AuditEvent.objects.filter(partition="central").count() == 2500
    assert verify_partition("central").broken is None
    with pytest.raises(TypeError, match="needs actor"):
        record_events([{"action": "a", "outcome": "ok"}], partition="central")
