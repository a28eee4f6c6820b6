"""The health page shows a site that does not answer: unreachable, its failed polls, when the next is tried."""
from datetime import timedelta

from django.urls import reverse
from django.utils import timezone

from conflictdesk.desk import health
from sync.models import Cursor

from . import factories as f


def test_a_site_whose_polls_fail_is_unreachable_with_its_error_class_and_next_try(db, login, people):
    f.make_site()
    Cursor.objects.create(source="site:site1", last_polled_at=timezone.now(), poll_failures=3,
                          poll_error="TransientError", poll_retry_at=timezone.now() + timedelta(seconds=4))
    row = next(r for r in health.dashboard() if r.name == "site:site1")
    assert (row.status, row.poll_failures, row.poll_error) == ("unreachable", 3, "TransientError")
    page = login(people.clinician).get(reverse("desk:health_panel")).content.decode()
    assert "unreachable" in page and "3 failed polls (TransientError)" in page


def test_a_site_that_answers_again_is_not_unreachable(db):
    f.make_site()
    Cursor.objects.create(source="site:site1", last_polled_at=timezone.now(), poll_failures=0)
    row = next(r for r in health.dashboard() if r.name == "site:site1")
    assert row.status == "ok" and row.poll_failures == 0
