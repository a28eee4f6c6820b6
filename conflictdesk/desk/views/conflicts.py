"""Conflict queue, detail (side by side, diff, base) and the clinician's decision."""
from __future__ import annotations

import json

from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from sync.actions import DecisionRefused, do_decide_conflict, do_view_patients, latest_conflict
from sync.mapping import MappingError
from sync.models import Conflict
from sync.workflow import diff
from sync.workflow.versions import versions_seen

from .. import authorship, clinical_diff, queries, render as clinical
from ..access import can, get_conflict_for_user, require
from ..forms import DecisionForm, field_token
from .util import page_of, query_without_page, refusal_status


@require("view_conflicts")
def queue(request):
    page = page_of(request, queries.conflicts(request.GET))
    context = {"page": page, "query": query_without_page(request), "counts": queries.conflict_counts(),
               "sites": queries.site_names(), "types": queries.resource_types(), "ages": queries.AGES,
               "statuses": Conflict.Status.choices, "params": request.GET}
    # The rows show who the patients are: an access to their demographics, audited (ids only).
    do_view_patients([c.record_link.patient_link for c in page.object_list], acting_user=request.user,
                     where="conflict queue")
    for c in page.object_list:
        c.site_author, c.central_author = authorship.site_author(c), authorship.central_author(c)
    if request.htmx and request.htmx.target == "queue-rows":
        return render(request, "desk/conflicts_rows.html", context)
    return render(request, "desk/conflicts.html", context)


@require("view_conflicts")
def counts(request):
    """The badge row the queue polls every few seconds."""
    return render(request, "desk/conflicts_counts.html", {"counts": queries.conflict_counts()})


@require("view_conflicts")
def detail(request, pk: int):
    return _page(request, get_conflict_for_user(request.user, pk))


def _page(request, conflict, form=None, status=200):
    do_view_patients([conflict.record_link.patient_link], acting_user=request.user, where="conflict")
    try:
        comparison, mapping_error = diff.compare(conflict), None
    except MappingError as exc:  # the site version no longer maps: still show both raw
        comparison, mapping_error = None, f"{exc.__class__.__name__}: rule {getattr(exc, 'rule', '') or '-'}"
    seen = versions_seen(conflict)
    fields = comparison.fields if comparison else []
    resolution = getattr(conflict, "resolution", None) if conflict.status == Conflict.Status.RESOLVED else None
    if form is None:
        form = DecisionForm(fields=fields, deleted_on=conflict.deleted_on, initial={"seen": json.dumps(seen)})
    context = {
        "conflict": conflict, "comparison": comparison, "mapping_error": mapping_error,
        "site_rows": clinical.composition_rows(conflict.openehr_composition),
        "central": clinical_diff.central_groups(conflict.fhir_resources or []),
        "raw_site": json.dumps(conflict.openehr_composition, indent=2, ensure_ascii=False),
        "raw_central": json.dumps(conflict.fhir_resources, indent=2, ensure_ascii=False),
        "raw_base": json.dumps(conflict.base_content, indent=2, ensure_ascii=False) if conflict.base_content else "",
        "fields": [{"row": row, "field": row.field, "pick": form[field_token(row.field.id)]}
                   for row in (clinical_diff.rows(comparison, resolution) if comparison else [])],
        "form": form, "can_decide": can(request.user, "decide_conflict") and conflict.status == Conflict.Status.OPEN,
        "newer": latest_conflict(conflict) if conflict.status == Conflict.Status.SUPERSEDED else None,
        "resolution": resolution,
        "site_author": authorship.site_author(conflict), "central_author": authorship.central_author(conflict),
    }
    return render(request, "desk/conflict.html", context, status=status)


@require_POST
@require("decide_conflict")
def decide(request, pk: int):
    conflict = get_conflict_for_user(request.user, pk)
    try:
        fields = diff.compare(conflict).fields
    except MappingError:
        fields = []
    form = DecisionForm(request.POST, fields=fields, deleted_on=conflict.deleted_on)
    if not form.is_valid():
        return _page(request, conflict, form, status=400)
    try:
        decision = do_decide_conflict(
            conflict, acting_user=request.user, choice=form.cleaned_data["choice"],
            reason=form.cleaned_data["reason"], field_choices=form.field_choices(), seen=form.cleaned_data["seen"],
        )
    except DecisionRefused.Stale as moved:
        messages.warning(request, f"Not applied: {moved}. Here is the conflict as it stands now.")
        return redirect("desk:conflict", moved.current.pk)
    except DecisionRefused as refused:
        form.add_error(None, str(refused))
        return _page(request, conflict, form, status=refusal_status(refused))
    messages.success(request, f"Decision #{decision.resolution.pk} recorded; run {decision.run.pk} is writing it to both sides.")
    return redirect("desk:conflicts")
