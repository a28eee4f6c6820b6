"""Health dashboard; the panel re-renders itself every 15 s (htmx polling)."""
from django.shortcuts import render

from .. import health, liveness
from ..access import require


def _context():
    rows = health.dashboard()
    return {"rows": [{"h": row, "chart": health.sparkline(row.hourly)} for row in rows], "audit": health.audit_status(),
            "parts": liveness.parts()}


@require("view_health")
def dashboard(request):
    return render(request, "desk/health.html", _context())


@require("view_health")
def panel(request):
    return render(request, "desk/health_panel.html", _context())
