"""Concurrent writers, across partitions and within one, leave every chain whole: no gaps, no forks."""
import multiprocessing
import threading
import time

import pytest
from django.db import connection, connections, transaction

from audit.models import AuditEvent
from audit.record import record_event, record_events
from audit.verify import verify_all

import spawned_writer  # beside this module (tests/audit is on sys.path, as for every test module here)

pytestmark = pytest.mark.django_db(transaction=True)

PER_WRITER = 40


def _write(partition: str, writer: int, slow: bool = False, batch: int = 1) -> None:
    try:
        for i in range(0, PER_WRITER, batch):
            with transaction.atomic():
                if batch == 1:
                    record_event(action="sync.step", outcome="ok", actor=f"w{writer}", partition=partition,
                                 run_id=writer, detail={"i": i})
                else:
                    record_events([{"action": "sync.step", "outcome": "ok", "actor": f"w{writer}",
                                    "detail": {"i": i + j}} for j in range(batch)], partition=partition)
                if slow and i % 10 == 0:
                    time.sleep(0.005)  # hold the head lock so others queue behind it
    finally:
        connection.close()


def _assert_whole(expected: dict[str, int]) -> None:
    assert [r.broken for r in verify_all()] == [None] * len(expected)
    for partition, count in expected.items():
        seqs = list(AuditEvent.objects.filter(partition=partition).order_by("partition_seq")
                    .values_list("partition_seq", flat=True))
        assert seqs == list(range(1, count + 1))
        prevs = AuditEvent.objects.filter(partition=partition).values_list("prev_hash", flat=True)
        assert len(set(prevs)) == count  # no two events claim the same predecessor: no fork


def test_it_keeps_chains_whole_under_threads():
    plan = [("site:hot", w, w % 2 == 0, 1 + 4 * (w == 3)) for w in range(4)]
    plan += [(f"site:s{w}", w) for w in range(4, 7)]
    threads = [threading.Thread(target=_write, args=p) for p in plan]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    _assert_whole({"site:hot": 4 * PER_WRITER, **{f"site:s{w}": PER_WRITER for w in range(4, 7)}})
    assert AuditEvent.objects.filter(partition="site:hot").values("actor").distinct().count() == 4


def test_it_keeps_one_chain_whole_under_processes():
    """Four processes (spawned: see spawned_writer) append to one partition at once."""
    context = multiprocessing.get_context("spawn")
    db_name = connections["default"].settings_dict["NAME"]
    workers = [context.Process(target=spawned_writer.write, args=(db_name, "central", w, PER_WRITER)) for w in range(4)]
    for p in workers:
        p.start()
    for p in workers:
        p.join()
    assert [p.exitcode for p in workers] == [0] * 4
    _assert_whole({"central": 4 * PER_WRITER})
