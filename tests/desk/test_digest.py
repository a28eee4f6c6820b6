"""Staff hear of dead letters in one digest per interval, never one mail per letter."""
from django.core import mail
from django.test import override_settings

from conflictdesk.desk.digest import send_digest
from conflictdesk.desk.tasks import send_digest_task
from sync.models import DeadLetter

from . import factories as f


def test_an_outage_of_26_letters_is_one_mail_that_counts_them(db, settings):
    settings.CONFLICTDESK_STAFF_EMAILS = ["oncall@desk.test"]
    site = f.make_site()
    for _ in range(26):
        f.make_dead_letter(site, cause=DeadLetter.Cause.TRANSIENT_EXHAUSTED)
    f.make_dead_letter(f.make_site("site2"))
    assert send_digest_task() == 27
    assert len(mail.outbox) == 1
    body = mail.outbox[0].body
    assert "26 x site1: transient faults exhausted" in body and "1 x site2: Validation" in body
    assert "/dead-letters/" in body and "site:site1:" not in body  # links and counts, no record keys
    assert send_digest() == 0 and len(mail.outbox) == 1  # nothing new, nothing sent


@override_settings(CONFLICTDESK_STAFF_EMAILS=[])
def test_no_staff_no_mail(db):
    f.make_dead_letter()
    assert send_digest() == 1 and mail.outbox == []


def test_beat_sends_the_digest_every_interval(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["desk-send-digest"]
    assert entry["task"] == "desk.send_digest" and entry["schedule"] == 60.0 * settings.CONFLICTDESK_DIGEST_MINUTES


def test_a_letter_reopened_after_a_re_drive_is_in_the_next_digest(db, settings):
    from datetime import timedelta

    from django.utils import timezone

    from sync.models import SyncRun

    settings.CONFLICTDESK_STAFF_EMAILS = ["oncall@desk.test"]
    letter = f.make_dead_letter()
    send_digest()
    DeadLetter.objects.filter(pk=letter.pk).update(created_at=timezone.now() - timedelta(days=1))
    SyncRun.objects.filter(pk=letter.run_id).update(finished_at=timezone.now())  # failed again just now
    assert send_digest() == 1 and len(mail.outbox) == 2 and f"#{letter.pk}" in mail.outbox[1].body
