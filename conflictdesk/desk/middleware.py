"""TOTP is mandatory: a signed-in user without an active TOTP authenticator only reaches MFA setup.

Demo accounts (the ``demo`` group) are exempt so a demo can be shown without
a phone. Account pages stay reachable so the user can enrol, log out, or reset.
"""
from __future__ import annotations

from allauth.mfa.models import Authenticator
from django.conf import settings
from django.shortcuts import redirect

from .roles import is_demo

_OPEN_PREFIXES = ("/accounts/", "/static/")


class RequireTOTPMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and not self._exempt(request.path):
            if not has_totp(user) and not is_demo(user):
                return redirect("mfa_activate_totp")
        return self.get_response(request)

    @staticmethod
    def _exempt(path: str) -> bool:
        return path.startswith(_OPEN_PREFIXES) or path.startswith(settings.STATIC_URL if settings.STATIC_URL.startswith("/") else "/" + settings.STATIC_URL)


def has_totp(user) -> bool:
    return Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).exists()
