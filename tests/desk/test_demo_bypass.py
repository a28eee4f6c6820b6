"""Finding 5: the demo's TOTP exemption exists only in a demo: DEBUG and CONFLICTDESK_DEMO_MODE both on.

Production (DEBUG off, as pytest runs views) never honours the ``demo`` group,
never offers or grants it, and refuses the demo commands.
"""
import re
from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command
from django.urls import reverse

from conflictdesk.desk import roles
from sync.actions import InviteRefused, do_invite_user
from sync.models import Site

from . import factories as f

DEMO_SH = Path(__file__).resolve().parents[2] / "deploy" / "demo.sh"


@pytest.fixture
def demo_user(db):
    return f.make_user("demo@desk.test", roles.CLINICIAN, roles.DEMO, totp=False)


@pytest.mark.parametrize("debug, demo_mode", [(False, True), (True, False), (False, False)])
def test_it_asks_a_demo_group_member_for_totp_outside_a_demo(client, demo_user, settings, debug, demo_mode):
    settings.DEBUG, settings.CONFLICTDESK_DEMO_MODE = debug, demo_mode
    client.force_login(demo_user)
    response = client.get(reverse("desk:conflicts"))
    assert response.status_code == 302 and response["Location"] == reverse("mfa_activate_totp")


def test_it_exempts_a_demo_account_in_a_demo(client, demo_user, settings):
    settings.DEBUG, settings.CONFLICTDESK_DEMO_MODE = True, True
    client.force_login(demo_user)
    assert client.get(reverse("desk:conflicts")).status_code == 200


def test_it_neither_offers_nor_grants_the_demo_flag_in_production(login, people, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.DEBUG, settings.CONFLICTDESK_DEMO_MODE = False, True
    client = login(people.admin)
    assert b'name="demo"' not in client.get(reverse("desk:people")).content
    client.post(reverse("desk:people_invite"), {"email": "eve@desk.test", "role": "clinician", "demo": "on"})
    assert not Group.objects.get(name=roles.DEMO).user_set.filter(email="eve@desk.test").exists()


def test_the_invite_action_refuses_the_demo_flag_in_production(people, settings):
    settings.DEBUG, settings.CONFLICTDESK_DEMO_MODE = False, True
    with pytest.raises(InviteRefused.Invalid):
        do_invite_user("eve@desk.test", "clinician", acting_user=None, demo=True)
    assert not Group.objects.get(name=roles.DEMO).user_set.exists()


@pytest.mark.parametrize("command", ["demo_setup", "demo_seed"])
def test_the_demo_commands_refuse_outside_a_demo(db, settings, command):
    settings.DEBUG, settings.CONFLICTDESK_DEMO_MODE = False, False
    settings.CONFLICTDESK_DEMO_PASSWORD = "a-long-demo-password-2026"
    with pytest.raises(CommandError):
        call_command(command, "--sites", "1")
    assert not Site.objects.exists()


def test_the_demo_script_has_no_fixed_password_and_turns_demo_mode_on():
    script = DEMO_SH.read_text()
    assert not re.search(r"CONFLICTDESK_DEMO_PASSWORD:-[^$}]", script)
    assert re.search(r"^export CONFLICTDESK_DEMO_MODE=1$", script, re.M)
    assert re.search(r"^export DJANGO_DEBUG=1$", script, re.M)
