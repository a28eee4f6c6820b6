"""`sync_redrive`: one letter by id, or every open one a filter matches as one audited action."""
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.models import AuditEvent
from sync.models import DeadLetter
from tests.desk import factories as f


@pytest.fixture(autouse=True)
def no_celery(monkeypatch):
    monkeypatch.setattr("sync.workflow.dispatch.send", lambda run_id, countdown: None)


def test_it_re_drives_by_filter_as_one_action(db):
    letters = [f.make_dead_letter(cause=DeadLetter.Cause.TRANSIENT_EXHAUSTED) for _ in range(3)]
    other = f.make_dead_letter(f.make_site("site2"))
    out = StringIO()
    call_command("sync_redrive", "--site", "site1", "--cause", "transient_exhausted", stdout=out)
    assert out.getvalue().startswith("3 dead letter(s) re-driven: runs ")
    event = AuditEvent.objects.get(action="sync.redrive.bulk")
    assert event.actor.startswith("cli:") and sorted(event.detail["run_ids"]) == sorted(d.run_id for d in letters)
    assert DeadLetter.objects.get(pk=other.pk).status == DeadLetter.Status.OPEN


def test_it_wants_an_id_a_filter_or_all(db):
    f.make_dead_letter()
    with pytest.raises(CommandError, match="give a dead letter id, a filter, or --all"):
        call_command("sync_redrive")
    with pytest.raises(CommandError, match="no open dead letter matches"):
        call_command("sync_redrive", "--site", "site9")
    call_command("sync_redrive", "--all", stdout=StringIO())
    assert not DeadLetter.objects.filter(status=DeadLetter.Status.OPEN).exists()
