"""People: invitations (the only way an account comes to exist: no self sign-up) and API tokens."""
from __future__ import annotations

from datetime import timedelta

from allauth.account.forms import default_token_generator
from allauth.account.models import EmailAddress
from allauth.account.utils import user_pk_to_url_str
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.mail import send_mail
from django.db import transaction
from django.urls import reverse
from knox.models import AuthToken

from audit.record import record_event
from conflictdesk.desk.roles import ADMIN, DEMO, demo_enabled, role_of

from .actor import actor_of
from .errors import InviteRefused


def do_invite_user(email: str, role: str, *, acting_user, demo: bool = False):
    """Create (or re-invite) an account in ``role`` and e-mail a set-password link; returns (user, link)."""
    try:
        role = role_of(role)
    except ValueError as exc:
        raise InviteRefused.Invalid(str(exc), field="role") from exc
    if demo and not demo_enabled():
        raise InviteRefused.Invalid("demo accounts exist only in a demo (DEBUG and CONFLICTDESK_DEMO_MODE)",
                                    field="demo")
    email = email.strip().lower()
    with transaction.atomic():
        user, created = get_user_model().objects.get_or_create(username=email, defaults={"email": email})
        _check_may_invite(acting_user, user, email)
        if created:
            user.set_unusable_password()
        user.is_staff = user.is_staff or role == ADMIN  # the admin role also uses Django's admin for sites
        user.save()
        EmailAddress.objects.update_or_create(user=user, email=email, defaults={"primary": True, "verified": True})
        user.groups.add(Group.objects.get(name=role))
        if demo:
            user.groups.add(Group.objects.get(name=DEMO))
        path = reverse("account_reset_password_from_key",
                       kwargs={"uidb36": user_pk_to_url_str(user), "key": default_token_generator.make_token(user)})
        link = settings.CONFLICTDESK_BASE_URL.rstrip("/") + path
        record_event(action="desk.invite", outcome="ok", actor=actor_of(acting_user),
                     detail={"user_id": user.pk, "role": role, "demo": demo, "new": created})
    send_mail(
        "[ConflictDesk] your account",
        f"You have been invited to ConflictDesk as {role}.\n\nSet your password here (the link works once):\n{link}\n\n"
        "After that you will be asked to set up an authenticator app (TOTP).\n",
        settings.DEFAULT_FROM_EMAIL, [email],
    )
    return user, link


def _check_may_invite(acting_user, user, email: str) -> None:
    """Nobody gives themselves a role, and only a superuser (or the command line) touches a superuser."""
    if acting_user is None or acting_user.is_superuser:
        return
    if user.pk == acting_user.pk or email == (acting_user.email or "").strip().lower():
        raise InviteRefused.Invalid("you cannot invite yourself; ask another admin", field="email")
    if user.is_superuser:
        raise InviteRefused.Invalid("this account is managed by a superuser", field="email")


def do_issue_api_token(user, *, acting_user, rotate: bool = False) -> str:
    """Issue the user a new REST API token and return it: the only time it exists in clear.

    The database keeps its SHA-512 digest and its expiry (CONFLICTDESK_API_TOKEN_DAYS), so
    a leaked row or backup authenticates nobody and a leaked token stops working on a known
    day. ``rotate`` first revokes every token the user has. Every issue is audited.
    """
    with transaction.atomic():
        revoked = AuthToken.objects.filter(user=user).delete()[0] if rotate else 0
        token, key = AuthToken.objects.create(user, expiry=timedelta(days=settings.CONFLICTDESK_API_TOKEN_DAYS))
        # The key itself never goes into the audit trail.
        record_event(action="api.token.issue", outcome="ok", actor=actor_of(acting_user),
                     detail={"user_id": user.pk, "rotated": rotate, "revoked": revoked,
                             "expiry": token.expiry.isoformat()})
    return key
