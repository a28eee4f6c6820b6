"""`reconcile` says "clean" only when nothing is dead-lettered (and open) or in flight; else it lists what is."""
from collections import defaultdict
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from sync.models import ChangeEvent, DeadLetter, Direction, Site, SyncRun
from sync.workflow.reconcile import Report


@pytest.fixture
def site(db):
    return Site.objects.create(name="site1", openehr_base_url="http://site1.test/v1", local_demo=True)


def _version(site, n: int, status: str, run_status: str | None = None) -> str:
    uid = f"vo-{n}::site1::1"
    event = ChangeEvent.objects.create(direction=Direction.TO_FHIR, source="site:site1", site=site,
                                       source_object_id=f"vo-{n}", source_version=uid, version_number=1, status=status)
    if run_status:
        SyncRun.objects.create(change_event=event, direction=Direction.TO_FHIR, site=site, record_key=f"k{n}",
                               status=run_status, step="write")
    return uid


def _report(monkeypatch, **by_state):
    report = Report(by_state=defaultdict(list, by_state))
    monkeypatch.setattr("sync.management.commands.reconcile.reconcile_site", lambda *a, **k: report)


def _run() -> tuple[str, int]:
    out = StringIO()
    try:
        call_command("reconcile", "--site", "site1", "--since", "2026-12-06T00:00", "--until", "2026-12-06T09:00",
                     stdout=out)
    except CommandError as exc:
        return out.getvalue() + str(exc), exc.returncode
    return out.getvalue(), 0


def test_all_synced_is_clean(site, monkeypatch):
    _report(monkeypatch, synced=[_version(site, 1, "synced", "done")])
    out, code = _run()
    assert code == 0 and out.strip().endswith("clean")


def test_an_open_dead_letter_and_a_run_in_flight_are_listed_not_clean(site, monkeypatch):
    dead = _version(site, 1, "dead_letter", "dead_letter")
    letter = DeadLetter.objects.create(run=SyncRun.objects.get(change_event__source_version=dead), cause="validation",
                                       step="validate_source", error="x", rule="rm.dv_quantity.units.ucum")
    flying = _version(site, 2, "pending", "retry_wait")
    _report(monkeypatch, synced=[_version(site, 3, "synced", "done")], dead_letter=[dead], pending=[flying])
    out, code = _run()
    assert code == 2 and "clean" not in out.replace("not clean", "")
    assert f"PENDING {dead} dead letter #{letter.pk} (validation, rule rm.dv_quantity.units.ucum)" in out
    assert f"PENDING {flying} in flight: run #" in out and "retry_wait" in out
    assert "not clean: 2 source version(s)" in out


def test_a_discarded_letter_is_accounted_for(site, monkeypatch):
    dead = _version(site, 1, "dead_letter", "dead_letter")
    DeadLetter.objects.create(run=SyncRun.objects.get(change_event__source_version=dead), cause="validation",
                              step="validate_source", error="x", status=DeadLetter.Status.DISCARDED)
    _report(monkeypatch, dead_letter=[dead])
    out, code = _run()
    assert code == 0 and out.strip().endswith("clean")
