"""`audit_verify` passes an honest chain and points at the first row that lies."""
import pytest
from django.core.management import CommandError, call_command

from audit.verify import verify_all, verify_partition

from conftest import sync_event

pytestmark = pytest.mark.django_db


@pytest.fixture
def chain():
    events = [sync_event(i) for i in range(1, 6)]
    sync_event(1, partition="central")
    return events


def _verify(*args):
    try:
        call_command("audit_verify", *args)
    except CommandError as exc:
        return False, str(exc)
    return True, ""


def test_it_passes_an_honest_chain(chain, capsys):
    assert _verify() == (True, "")
    out = capsys.readouterr().out
    assert "ok 'site:site1': 5 events" in out and "ok 'central': 1 events" in out
    assert [r.broken for r in verify_all()] == [None, None]


def test_it_pinpoints_a_changed_row(chain, behind_the_back, capsys):
    target = chain[2]
    behind_the_back("UPDATE audit_auditevent SET destination_version = '999' WHERE id = %s", [target.pk])
    ok, message = _verify()
    assert not ok and "1 of 2 audit chains broken" in message
    err = capsys.readouterr().err
    assert f"broken at seq 3 (event id {target.pk}): content" in err and "content ALTERED, link ok" in err
    assert f"stored {target.hash}" in err
    assert _verify("--partition", "central") == (True, "")


def test_it_pinpoints_a_rehashed_row_by_its_successor(chain, behind_the_back):
    target = chain[1]
    behind_the_back(
        "UPDATE audit_auditevent SET outcome = 'forged', hash = %s WHERE id = %s",
        [_rehash(target, outcome="forged"), target.pk],
    )
    broken = verify_partition("site:site1").broken
    assert (broken.seq, broken.event_id, broken.kind) == (3, chain[2].pk, "linkage")
    assert (broken.expected, broken.stored) == (_rehash(target, outcome="forged"), target.hash)


def test_it_pinpoints_a_deleted_row(chain, behind_the_back):
    behind_the_back("DELETE FROM audit_auditevent WHERE id = %s", [chain[1].pk])
    broken = verify_partition("site:site1").broken
    assert (broken.seq, broken.event_id, broken.kind, broken.link_ok) == (2, chain[2].pk, "gap", False)


def test_it_pinpoints_reordered_links(chain, behind_the_back):
    a, b = chain[1], chain[2]
    for pk, seq in ((a.pk, -1), (b.pk, 2), (a.pk, 3)):  # swap seqs 2 and 3 past the unique constraint
        behind_the_back("UPDATE audit_auditevent SET partition_seq = %s WHERE id = %s", [seq, pk])
    broken = verify_partition("site:site1").broken
    assert (broken.seq, broken.event_id, broken.kind, broken.content_ok, broken.link_ok) == (2, b.pk, "content", False, False)


def test_it_notices_a_cut_tail(chain, behind_the_back):
    behind_the_back("DELETE FROM audit_auditevent WHERE id = %s", [chain[-1].pk])
    broken = verify_partition("site:site1").broken
    assert (broken.seq, broken.kind, broken.expected, broken.stored) == (5, "head", chain[-1].hash, chain[-2].hash)


def test_it_fails_for_an_unknown_partition(chain):
    ok, message = _verify("--partition", "site:nowhere")
    assert not ok and "no audit events" in message


def _rehash(event, **changes):
    from audit.chain import event_hash

    return event_hash({**vars(event), **changes})


def test_it_notices_a_row_appended_behind_the_head(chain, behind_the_back):
    last = chain[-1]
    behind_the_back(
        "INSERT INTO audit_auditevent (partition, partition_seq, occurred_at, actor, actor_kind, action, outcome,"
        " source, source_object, source_version, destination, destination_object, destination_version,"
        " record_key, source_hash, written_hash, readback_hash, detail, prev_hash, hash)"
        " SELECT partition, partition_seq + 1, occurred_at, actor, actor_kind, 'forged', outcome, source,"
        " source_object, source_version, destination, destination_object, destination_version, record_key,"
        " source_hash, written_hash, readback_hash, detail, hash, repeat('f', 64) FROM audit_auditevent WHERE id = %s",
        [last.pk],
    )
    broken = verify_partition("site:site1").broken
    assert (broken.seq, broken.kind, broken.stored) == (6, "head", "f" * 64)


def test_an_append_that_lands_while_verifying_is_not_a_break(chain, monkeypatch):
    """The walk is bounded by the head it read; a later append is not a broken chain."""
    import audit.verify as verify

    real_first_break = verify.first_break

    def append_meanwhile(partition, rows, head):
        sync_event(6)  # lands after the head was read, before the (lazy) rows are
        return real_first_break(partition, rows, head)

    monkeypatch.setattr(verify, "first_break", append_meanwhile)
    assert verify_partition("site:site1").broken is None
