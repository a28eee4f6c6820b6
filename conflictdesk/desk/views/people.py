"""Users for the admin role, with the sites listed; a site itself changes in Django's admin or the API."""
from __future__ import annotations

from allauth.mfa.models import Authenticator
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from sync.actions import InviteRefused, do_invite_user
from sync.models import Site

from ..access import require
from ..forms import InviteForm


@require("manage_users")
def index(request, form=None, status=200):
    users = get_user_model().objects.prefetch_related("groups").order_by("email")
    with_totp = set(Authenticator.objects.filter(type=Authenticator.Type.TOTP).values_list("user_id", flat=True))
    return render(request, "desk/people.html", {
        "users": [{"user": u, "roles": [g.name for g in u.groups.all()], "totp": u.pk in with_totp} for u in users],
        "sites": Site.objects.order_by("name"), "form": form or InviteForm(),
    }, status=status)


@require_POST
@require("manage_users")
def invite(request):
    form = InviteForm(request.POST)
    if not form.is_valid():
        return index(request, form=form, status=400)
    try:
        user, _ = do_invite_user(form.cleaned_data["email"], form.cleaned_data["role"], acting_user=request.user,
                                 demo=form.cleaned_data.get("demo", False))
    except InviteRefused.Invalid as refused:
        form.add_error(refused.field if refused.field in form.fields else None, str(refused))
        return index(request, form=form, status=400)
    messages.success(request, f"Invitation sent to {user.email}.")
    return redirect("desk:people")
