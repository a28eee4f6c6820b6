"""Bulk re-drive in the desk: the list's filter (site, rule, cause, time) is what goes back, as one audited action."""
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from sync.models import DeadLetter, SyncRun

from . import factories as f


@pytest.fixture
def no_celery(monkeypatch):
    sent = []
    monkeypatch.setattr("sync.workflow.dispatch.send", lambda run_id, countdown: sent.append(run_id))
    return sent


@pytest.fixture
def outage(db):
    """Three letters of a weekend outage at site1, one old unit error at site2."""
    site1, site2 = f.make_site("site1"), f.make_site("site2")
    letters = [f.make_dead_letter(site1, cause=DeadLetter.Cause.TRANSIENT_EXHAUSTED) for _ in range(3)]
    DeadLetter.objects.filter(pk__in=[d.pk for d in letters]).update(rule="", path="")
    unit = f.make_dead_letter(site2)
    DeadLetter.objects.filter(pk=unit.pk).update(rule="rm.dv_quantity.units.ucum",
                                                 created_at=timezone.now() - timedelta(days=2))
    return letters, unit


def test_it_shows_how_many_letters_the_filter_would_re_drive(login, people, outage):
    response = login(people.steward).get(reverse("desk:deadletters"), {"site": "site1"})
    assert response.status_code == 200
    assert "Re-drive 3 dead letters" in response.content.decode()


def test_the_auditor_sees_the_list_but_no_bulk_button(login, people, outage):
    body = login(people.auditor).get(reverse("desk:deadletters")).content.decode()
    assert "Re-drive 4" not in body and "bulk-redrive" not in body


def test_it_re_drives_what_the_filter_shows_as_one_audited_action(login, people, outage, no_celery,
                                                                    django_capture_on_commit_callbacks):
    letters, unit = outage
    with django_capture_on_commit_callbacks(execute=True):
        response = login(people.steward).post(reverse("desk:deadletters_redrive"), {"site": "site1"})
    assert response.status_code == 302 and "site=site1" in response["Location"]
    runs = [d.run_id for d in letters]
    assert sorted(no_celery) == sorted(runs)
    assert set(SyncRun.objects.filter(pk__in=runs).values_list("status", flat=True)) == {SyncRun.Status.PENDING}
    assert DeadLetter.objects.get(pk=unit.pk).status == DeadLetter.Status.OPEN
    event = AuditEvent.objects.get(action="sync.redrive.bulk")
    assert event.actor == people.steward.email and event.detail["filter"] == {"site": "site1"}
    assert sorted(event.detail["run_ids"]) == sorted(runs) and event.detail["count"] == 3
    assert not AuditEvent.objects.filter(action="sync.redrive").exists()  # one action, not three


def test_it_filters_by_rule_and_time(login, people, outage, no_celery):
    letters, unit = outage
    client = login(people.steward)
    since = (timezone.now() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    client.post(reverse("desk:deadletters_redrive"), {"rule": "rm.dv_quantity", "since": since})
    assert not AuditEvent.objects.filter(action="sync.redrive.bulk").exists()  # the unit letter is older
    client.post(reverse("desk:deadletters_redrive"), {"rule": "rm.dv_quantity"})
    assert DeadLetter.objects.get(pk=unit.pk).status == DeadLetter.Status.REDRIVEN
    assert DeadLetter.objects.filter(status=DeadLetter.Status.OPEN).count() == 3


def test_nothing_matching_is_said_and_changes_nothing(login, people, outage):
    response = login(people.steward).post(reverse("desk:deadletters_redrive"), {"site": "site9"}, follow=True)
    assert "Not re-driven: no open dead letter matches this filter" in response.content.decode()
    assert DeadLetter.objects.filter(status=DeadLetter.Status.OPEN).count() == 4


def test_a_backwards_time_range_is_refused(login, people, outage):
    response = login(people.steward).post(reverse("desk:deadletters_redrive"),
                                          {"since": "2026-12-06T10:00", "until": "2026-12-06T09:00"}, follow=True)
    assert "Not re-driven: the time range ends before it starts" in response.content.decode()
    assert DeadLetter.objects.filter(status=DeadLetter.Status.OPEN).count() == 4


@pytest.mark.parametrize("who", ["clinician", "auditor", "admin"])
def test_no_one_else_may_bulk_re_drive(login, people, outage, who):
    assert login(getattr(people, who)).post(reverse("desk:deadletters_redrive"), {}).status_code == 403
    assert DeadLetter.objects.filter(status=DeadLetter.Status.OPEN).count() == 4


def test_the_cause_tabs_keep_the_other_filters(login, people, outage):
    body = login(people.steward).get(reverse("desk:deadletters"), {"site": "site1", "rule": "rm."}).content.decode()
    assert 'href="?site=site1&amp;rule=rm.&amp;cause=transient_exhausted"' in body
