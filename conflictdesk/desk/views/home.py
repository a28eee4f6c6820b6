from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render

from ..access import can

# Where each role starts: the first page its permissions open.
_LANDING = [("view_conflicts", "desk:conflicts"), ("view_deadletters", "desk:deadletters"),
            ("view_audit", "desk:audit"), ("manage_users", "desk:people"), ("view_health", "desk:health")]


@login_required
def home(request):
    for permission, url_name in _LANDING:
        if can(request.user, permission):
            return redirect(url_name)
    return render(request, "desk/home.html", status=200)
