"""Finding 2: the admin role manages people but can never promote itself (or anyone) past its role.

The attacker is a signed-in member of the admin role (staff, TOTP done). Each
test tries one road to more power and asserts the database is unchanged.
"""
import pytest
from django.contrib.auth.models import Group, Permission, User
from django.urls import reverse

from conflictdesk.desk import roles
from sync.actions import InviteRefused, do_invite_user

from . import factories as f


@pytest.fixture
def admin_role(people):
    people.admin.is_staff = True
    people.admin.save()
    return people.admin


def _change_form(user, **extra):
    """Everything the stock UserAdmin change form posts, plus the attacker's fields."""
    data = {"username": user.username, "email": user.email, "first_name": "", "last_name": "", "is_active": "on",
            "is_staff": "on", "last_login_0": "", "last_login_1": "", "date_joined_0": "2026-01-01",
            "date_joined_1": "00:00:00"}
    data.update(extra)
    return data


def test_it_does_not_let_the_admin_role_make_itself_superuser(login, admin_role):
    everything = [str(p.pk) for p in Permission.objects.all()]
    groups = [str(g.pk) for g in Group.objects.all()]
    login(admin_role).post(reverse("admin:auth_user_change", args=[admin_role.pk]),
                           _change_form(admin_role, is_superuser="on", groups=groups, user_permissions=everything))
    admin_role.refresh_from_db()
    assert not admin_role.is_superuser
    assert admin_role.user_permissions.count() == 0
    assert set(admin_role.groups.values_list("name", flat=True)) == {roles.ADMIN}


def test_it_does_not_let_the_admin_role_grant_another_account_superuser_or_groups(login, admin_role, people):
    target = people.clinician
    login(admin_role).post(reverse("admin:auth_user_change", args=[target.pk]),
                           _change_form(target, is_superuser="on", groups=[str(g.pk) for g in Group.objects.all()]))
    target.refresh_from_db()
    assert not target.is_superuser and not target.is_staff
    assert set(target.groups.values_list("name", flat=True)) == {roles.CLINICIAN}


def test_it_does_not_let_the_admin_role_add_accounts_or_set_passwords_in_the_admin(login, admin_role, people):
    client = login(admin_role)
    response = client.post(reverse("admin:auth_user_add"),
                           {"username": "mallory", "password1": "a long passphrase 99", "password2": "a long passphrase 99",
                            "usable_password": "true"})
    assert response.status_code == 403 and not User.objects.filter(username="mallory").exists()
    response = client.post(reverse("admin:auth_user_password_change", args=[people.clinician.pk]),
                           {"password1": "a long passphrase 99", "password2": "a long passphrase 99"})
    assert response.status_code == 403
    people.clinician.refresh_from_db()
    assert not people.clinician.check_password("a long passphrase 99")


def test_it_does_not_let_the_admin_role_edit_a_superuser(login, admin_role):
    boss = f.make_user("boss@desk.test")
    boss.is_superuser = boss.is_staff = True
    boss.save()
    login(admin_role).post(reverse("admin:auth_user_change", args=[boss.pk]),
                           _change_form(boss, email="adam@desk.test", is_active=""))
    boss.refresh_from_db()
    assert boss.email == "boss@desk.test" and boss.is_active


def test_it_refuses_an_invitation_of_oneself(admin_role):
    with pytest.raises(InviteRefused.Invalid):
        do_invite_user(admin_role.email, "auditor", acting_user=admin_role)
    assert set(admin_role.groups.values_list("name", flat=True)) == {roles.ADMIN}


def test_it_refuses_a_self_invitation_from_the_people_page(login, admin_role):
    response = login(admin_role).post(reverse("desk:people_invite"),
                                      {"email": admin_role.email.upper(), "role": "steward"})
    assert response.status_code == 400
    assert set(admin_role.groups.values_list("name", flat=True)) == {roles.ADMIN}


def test_it_refuses_an_invitation_that_would_change_a_superuser(admin_role):
    boss = f.make_user("boss2@desk.test")
    boss.is_superuser = True
    boss.save()
    with pytest.raises(InviteRefused.Invalid):
        do_invite_user(boss.email, "auditor", acting_user=admin_role)
    assert not boss.groups.exists()


def test_the_admin_role_cannot_add_users_by_model_permission(admin_role):
    assert not admin_role.has_perm("auth.add_user")
    assert not admin_role.has_perm("auth.delete_user")


def test_the_admin_role_still_deactivates_an_ordinary_account(login, admin_role, people):
    target = people.clinician
    response = login(admin_role).post(reverse("admin:auth_user_change", args=[target.pk]),
                                      {"first_name": "", "last_name": "", "is_active": ""})
    assert response.status_code == 302
    target.refresh_from_db()
    assert not target.is_active
