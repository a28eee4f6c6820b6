"""Desk views: thin wrappers over domain functions in sync/ and audit/."""
from django.contrib.auth.decorators import login_required
from django.shortcuts import render


@login_required
def home(request):
    return render(request, "desk/home.html")
