"""Finding 1: Django's admin has no login of its own; staff sign in through allauth (password, rate limit, TOTP).

Each test performs the attack as an outsider would and asserts it fails to get in.
"""
from django.urls import reverse

from audit.models import AuditEvent
from conflictdesk.desk import roles

from . import factories as f


def _staff(email="root@desk.test"):
    user = f.make_user(email, roles.ADMIN)
    user.is_staff = user.is_superuser = True
    user.save()
    return user


def test_it_never_signs_in_through_the_admin_login_form(client, db):
    user = _staff()
    response = client.post(reverse("admin:login"), {"username": user.username, "password": f.PASSWORD,
                                                    "next": "/admin/"})
    assert "_auth_user_id" not in client.session  # password alone: no session, TOTP still pending
    assert client.get(reverse("admin:index")).status_code == 302
    assert response.status_code == 302 and response["Location"].startswith(reverse("account_login"))


def test_it_does_not_let_the_admin_form_guess_passwords_unthrottled(client, db):
    user = _staff()
    for _ in range(30):
        client.post(reverse("admin:login"), {"username": user.username, "password": "guess", "next": "/admin/"})
    client.post(reverse("admin:login"), {"username": user.username, "password": f.PASSWORD, "next": "/admin/"})
    assert "_auth_user_id" not in client.session
    # Guessing never even reached a password check through this door.
    assert not AuditEvent.objects.filter(action="desk.login", outcome="failed").exists()


def test_it_keeps_attacker_chosen_text_out_of_the_audit_actor(client, db):
    chosen = "auditor@desk.test\n<script>forged</script>"
    client.post(reverse("account_login"), {"login": chosen, "password": "wrong password"})
    client.post(reverse("account_login"), {"login": "nobody-" + "x" * 150 + "@desk.test", "password": "wrong"})
    events = AuditEvent.objects.filter(action="desk.login", outcome="failed")
    assert events.exists()
    assert {e.actor for e in events} == {"anonymous"}


def test_it_names_a_known_account_by_id_when_its_password_fails(client, db):
    user = f.make_user("clara9@desk.test", roles.CLINICIAN)
    client.post(reverse("account_login"), {"login": user.email, "password": "wrong password"})
    event = AuditEvent.objects.get(action="desk.login", outcome="failed")
    assert event.actor == "anonymous" and event.detail["user_id"] == user.pk
