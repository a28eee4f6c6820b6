"""Audit browser: filtered events, one record's chain of custody, chain verification."""
from __future__ import annotations

from django.shortcuts import render

from audit.export import chain_of_custody
from audit.verify import verify_all

from .. import queries
from ..access import require
from .util import page_of, query_without_page


@require("view_audit")
def index(request):
    return render(request, "desk/audit.html", {
        "page": page_of(request, queries.audit_events(request.GET), size=50), "query": query_without_page(request),
        "params": request.GET, "sites": queries.site_names(), "actions": queries.audit_actions(),
    })


@require("view_audit")
def record(request):
    key = (request.GET.get("key") or "").strip()
    events = chain_of_custody(key) if key else []
    return render(request, "desk/audit_record.html", {"key": key, "events": events})


@require("view_audit")
def verify(request):
    """Recomputes every hash: run on demand (htmx), not on every page view."""
    reports = verify_all()
    return render(request, "desk/audit_verify.html", {"reports": reports, "ok": all(r.broken is None for r in reports)})
