"""Queue filters and counts, audit browser and chain of custody, health figures, the digest."""
from datetime import timedelta

from django.core import mail
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from audit.record import record_event
from conflictdesk.desk import health
from sync.models import ChangeEvent, Conflict, Cursor, Direction, SyncRun

from . import factories as f


def test_the_queue_filters_sorts_and_counts(login, people, conflict):
    other_site = f.make_site("site2")
    older = f.make_conflict(other_site)
    Conflict.objects.filter(pk=older.pk).update(opened_at=timezone.now() - timedelta(days=2), resource_type="Condition")
    client = login(people.clinician)
    page = client.get(reverse("desk:conflicts")).content.decode()
    assert f'href="/conflicts/{conflict.pk}/"' in page and f'href="/conflicts/{older.pk}/"' in page
    only_site2 = client.get(reverse("desk:conflicts") + "?site=site2").content.decode()
    assert f'href="/conflicts/{older.pk}/"' in only_site2 and f'href="/conflicts/{conflict.pk}/"' not in only_site2
    recent = client.get(reverse("desk:conflicts") + "?age=24h&type=Observation").content.decode()
    assert f'href="/conflicts/{conflict.pk}/"' in recent and f'href="/conflicts/{older.pk}/"' not in recent
    newest_first = client.get(reverse("desk:conflicts") + "?sort=newest").content.decode()
    assert newest_first.index(f"/conflicts/{conflict.pk}/") < newest_first.index(f"/conflicts/{older.pk}/")
    counts = client.get(reverse("desk:conflict_counts")).content.decode()
    assert "<strong>2</strong> open conflicts" in counts and "<strong>1</strong> waiting &gt; 24 h" in counts


def test_an_htmx_filter_request_gets_only_the_rows(login, people, conflict):
    response = login(people.clinician).get(reverse("desk:conflicts"), HTTP_HX_REQUEST="true", HTTP_HX_TARGET="queue-rows")
    body = response.content.decode()
    assert "<table" in body and "<html" not in body


def test_the_queue_has_an_empty_state(login, people):
    assert "No conflicts here" in login(people.clinician).get(reverse("desk:conflicts")).content.decode()


def test_the_audit_browser_filters_and_shows_a_chain_of_custody(login, people):
    key = "site:site1:abc"
    record_event(action="sync.detect", outcome="ok", actor="worker@h:1", partition="site:site1", record_key=key, patient_link_id=7)
    record_event(action="sync.write", outcome="ok", actor="worker@h:1", partition="site:site1", record_key=key, patient_link_id=7)
    record_event(action="desk.login", outcome="ok", actor="someone@desk.test")
    client = login(people.auditor)
    by_patient = client.get(reverse("desk:audit") + "?patient=7").content.decode()
    assert "sync.detect" in by_patient and "someone@desk.test" not in by_patient
    by_actor = client.get(reverse("desk:audit") + "?actor=someone").content.decode()
    assert "someone@desk.test" in by_actor and "<td>sync.write</td>" not in by_actor
    timeline = client.get(reverse("desk:audit_record") + f"?key={key}").content.decode()
    assert timeline.index("sync.detect") < timeline.index("sync.write")
    verify = client.get(reverse("desk:audit_verify")).content.decode()
    assert "All 2 chains intact" in verify and "site:site1" in verify and "<nav" in verify  # a page of its own


def test_health_figures(db):
    site = f.make_site()
    now = timezone.now()
    Cursor.objects.create(source="site:site1", last_polled_at=now - timedelta(seconds=20))
    ChangeEvent.objects.create(direction=Direction.TO_FHIR, source="site:site1", site=site, source_object_id="o",
                               source_version="o::s::1", version_number=1)
    for i, (status, secs) in enumerate([("done", 1), ("done", 2), ("done", 3), ("dead_letter", 9)]):
        run = SyncRun.objects.create(direction=Direction.TO_FHIR, site=site, record_key=f"k{i}", status=status)
        SyncRun.objects.filter(pk=run.pk).update(created_at=now - timedelta(seconds=secs + 60),
                                                 finished_at=now - timedelta(seconds=60))
    row = next(r for r in health.dashboard(now) if r.name == "site:site1")
    assert row.backlog == 1 and row.success_rate == 0.75
    assert (row.p50, row.p95) == (2.0, 3.0)
    assert sum(d for d, _ in row.hourly) == 3 and sum(x for _, x in row.hourly) == 1
    assert health.percentile([], 50) is None


def test_the_health_page_and_panel_render_for_every_role(login, people, conflict):
    for who in ("clinician", "steward", "auditor", "admin"):
        client = login(getattr(people, who))
        assert "<svg" in client.get(reverse("desk:health")).content.decode()
        assert client.get(reverse("desk:health_panel")).status_code == 200


def test_the_digest_names_new_items_once(db, settings, conflict):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.CONFLICTDESK_STAFF_EMAILS = ["oncall@desk.test"]
    letter = f.make_dead_letter()
    call_command("send_digest")
    assert len(mail.outbox) == 1
    body = mail.outbox[0].body
    assert f"#{conflict.pk}" in body and f"#{letter.pk}" in body and "1 new conflict(s), 1 new dead letter(s)" in mail.outbox[0].subject
    assert "38.5" not in body  # ids and causes only
    call_command("send_digest")
    assert len(mail.outbox) == 1  # nothing new, nothing sent
