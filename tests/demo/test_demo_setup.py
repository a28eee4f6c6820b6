"""demo_setup: sites and demo accounts are created once and can log in."""
import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.management import CommandError, call_command

from sync.models import Site


@pytest.mark.django_db
def test_demo_setup_creates_sites_and_role_accounts(settings):
    settings.CONFLICTDESK_DEMO_PASSWORD = "a-long-demo-password-2026"
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    call_command("demo_setup", "--sites", "3", "--poll-interval", "2")
    invitations = len(mail.outbox)
    call_command("demo_setup", "--sites", "3", "--poll-interval", "2")  # idempotent
    assert invitations == 4 and len(mail.outbox) == invitations  # a re-run invites nobody again

    sites = list(Site.objects.order_by("name"))
    assert [s.name for s in sites] == ["site1", "site2", "site3"]
    assert sites[2].openehr_base_url == "http://127.0.0.1:8103/ehrbase/rest/openehr/v1"
    assert all(s.local_demo and s.poll_interval_seconds == 2 for s in sites)
    assert sites[0].template_ids == ["ConflictDesk Oncology Encounter.v2"]

    users = get_user_model().objects.filter(email__endswith="@demo.conflictdesk.local")
    assert users.count() == 4
    clinician = users.get(email="clinician@demo.conflictdesk.local")
    assert clinician.check_password("a-long-demo-password-2026")
    assert clinician.has_perm("desk.decide_conflict")
    assert not clinician.has_perm("desk.work_deadletters")
    assert set(clinician.groups.values_list("name", flat=True)) == {"clinician reviewer", "demo"}


@pytest.mark.django_db
def test_demo_setup_refuses_without_a_password(settings):
    settings.CONFLICTDESK_DEMO_PASSWORD = None
    with pytest.raises(CommandError, match="CONFLICTDESK_DEMO_PASSWORD"):
        call_command("demo_setup")


@pytest.mark.django_db
def test_demo_sites_name_the_credentials_the_demo_gave_their_cdrs(settings, monkeypatch):
    """deploy/demo.sh runs the CDRs behind basic auth and exports each site's credentials: the rows name them."""
    settings.CONFLICTDESK_DEMO_PASSWORD = "a-long-demo-password-2026"
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    monkeypatch.setenv("CONFLICTDESK_SITE_CREDENTIALS_SITE1", "conflictdesk:generated")
    monkeypatch.delenv("CONFLICTDESK_SITE_CREDENTIALS_SITE2", raising=False)
    call_command("demo_setup", "--sites", "2")
    refs = dict(Site.objects.values_list("name", "credentials_ref"))
    assert refs == {"site1": "CONFLICTDESK_SITE_CREDENTIALS_SITE1", "site2": ""}  # site2's CDR runs open
