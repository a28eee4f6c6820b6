"""Audit browser: the trail grouped per run in sentences (or event by event), one record's chain of custody,
chain verification (a page of its own, or its result inside the trail's page), and export of what is shown."""
from __future__ import annotations

from django.core.paginator import Paginator
from django.http import HttpResponseBadRequest, StreamingHttpResponse
from django.shortcuts import render

from audit.export import CONTENT_TYPES, SUFFIX, chain_of_custody, stream
from audit.verify import verify_all

from sync.actions import do_view_patients

from .. import narrate, queries
from ..access import require
from .util import page_of, query_without_page

EXPORTS = ("csv", "fhir")  # the page's download links; the API has JSON Lines too


@require("view_audit")
def index(request):
    events = queries.audit_events(request.GET)
    context = {"query": query_without_page(request), "params": request.GET, "sites": queries.site_names(),
               "actions": queries.audit_actions(), "grouped": request.GET.get("view") != "events"}
    if context["grouped"]:
        page = Paginator(queries.audit_groups(events), 20).get_page(request.GET.get("page"))
        shown = list(queries.audit_events_of(events, [g["grp"] for g in page.object_list]))
        names = narrate.people(shown)
        context.update(page=page, groups=narrate.grouped(shown, names), names=names)
    else:
        page = page_of(request, events, size=50)
        names = narrate.people(page.object_list)
        context.update(page=page, rows=[{"e": e, "who": narrate.actor(e, names), "says": narrate.sentence(e, names)}
                                        for e in page.object_list])
    return render(request, "desk/audit.html", context)


@require("view_audit")
def export(request):
    """What the trail shows with these filters, oldest first, as CSV or FHIR AuditEvent ndjson (hashes included)."""
    fmt = request.GET.get("format")
    if fmt not in EXPORTS:
        return HttpResponseBadRequest("format: csv or fhir")
    events = queries.audit_events(request.GET).order_by("occurred_at", "pk")
    response = StreamingHttpResponse(stream(events, fmt), content_type=CONTENT_TYPES[fmt])
    response["Content-Disposition"] = f'attachment; filename="audit-events.{SUFFIX[fmt]}"'
    return response


@require("view_audit")
def record(request):
    key = (request.GET.get("key") or "").strip()
    events = chain_of_custody(key) if key else []
    names = narrate.people(events)
    patients = queries.patients_of(events)
    do_view_patients(patients, acting_user=request.user, where="chain of custody")
    return render(request, "desk/audit_record.html", {
        "key": key, "patients": patients,
        "events": [{"e": e, "who": narrate.actor(e, names), "says": narrate.sentence(e, names)} for e in events]})


@require("view_audit")
def verify(request):
    """Recomputes every hash: on demand, not on every page view. From the trail's button (htmx) only the
    result is sent, into its place below the page's head; opened directly, it is a page of its own."""
    reports = verify_all()
    context = {"reports": reports, "ok": all(r.broken is None for r in reports),
               "events": sum(r.events for r in reports)}
    template = "desk/_verify_result.html" if request.htmx else "desk/audit_verify.html"
    return render(request, template, context)
