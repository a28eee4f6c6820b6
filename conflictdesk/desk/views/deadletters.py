"""Dead letters: list by cause, site, rule and time, detail (what to fix), re-drive (one or all listed) and discard."""
from __future__ import annotations

import json
from urllib.parse import urlencode

from django.contrib import messages
from django.shortcuts import redirect, render
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.views.decorators.http import require_POST

from sync.actions import (DeadLetterRefused, do_discard_dead_letter, do_redrive_dead_letter, do_redrive_dead_letters,
                          do_view_patients)
from sync.models import DeadLetter

from .. import fixes, queries
from ..access import can, get_dead_letter_for_user, require
from ..forms import CAUSES, DeadLetterFilterForm, DiscardForm
from .util import page_of, query_without_page


@require("view_deadletters")
def index(request):
    form = DeadLetterFilterForm(request.GET)
    criteria, status = form.criteria(), form.chosen_status()
    page = page_of(request, queries.dead_letters(criteria, status))
    return render(request, "desk/deadletters.html", {
        "page": page, "query": query_without_page(request), "form": form,
        "causes": queries.dead_letter_causes(status if status != "all" else DeadLetter.Status.OPEN),
        "cause_choices": CAUSES, "statuses": DeadLetter.Status.choices, "sites": queries.site_names(),
        "params": request.GET, "tab_query": _filter_query(form, ("status", "site", "rule", "since", "until")),
        # The bulk re-drive takes exactly the open letters this filter lists.
        "bulk": (criteria.matching().count() if form.is_valid() and status == DeadLetter.Status.OPEN
                 and can(request.user, "work_deadletters") else 0),
    })


@require_POST
@require("work_deadletters")
def redrive_matching(request):
    """Every open dead letter the list's filter shows, back in the workflow: one action, one audit event."""
    form = DeadLetterFilterForm(request.POST)
    back = f"{reverse('desk:deadletters')}?{_filter_query(form)}"
    if not form.is_valid():
        messages.error(request, "Not re-driven: " + "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items()))
        return redirect(back)
    try:
        runs = do_redrive_dead_letters(form.criteria(), acting_user=request.user)
    except DeadLetterRefused as exc:
        messages.error(request, f"Not re-driven: {exc}.")
        return redirect(back)
    messages.success(request, f"{len(runs)} dead letter{pluralize(len(runs))} re-driven: "
                              f"run{pluralize(len(runs))} {', '.join(str(r.pk) for r in runs[:20])}"
                              f"{' …' if len(runs) > 20 else ''} back in the workflow.")
    return redirect(back)


def _filter_query(form, names=("cause", "site", "rule", "since", "until")) -> str:
    """The list's filter again (for the page the steward comes back to, or the cause tabs)."""
    return urlencode({k: form.data.get(k) for k in names if form.data.get(k)})


@require("view_deadletters")
def detail(request, pk: int):
    return _page(request, get_dead_letter_for_user(request.user, pk))


def _page(request, letter, discard_form=None, status=200):
    patient = queries.patient_of(letter)
    if patient is not None:
        do_view_patients([patient], acting_user=request.user, where="dead letter")
    detail = letter.detail or {}
    error_detail = detail.get("error_detail")
    fidelity = error_detail if letter.cause == DeadLetter.Cause.FIDELITY and isinstance(error_detail, dict) else None
    return render(request, "desk/deadletter.html", {
        "letter": letter, "attempts": detail.get("attempts") or [],
        # Shown only on this page (the roles that may see the payload): never logged, never mailed.
        "explanation": fixes.explain(letter), "offending": fixes.offending(letter),
        "run_attempts": letter.run.attempts.all(),
        "fidelity": {k: json.dumps(v, indent=2, ensure_ascii=False) for k, v in (fidelity or {}).items()},
        "error_detail": json.dumps(error_detail, indent=2, ensure_ascii=False) if error_detail not in (None, "") else "",
        "payload": json.dumps(letter.payload, indent=2, ensure_ascii=False) if letter.payload is not None else "",
        "can_work": can(request.user, "work_deadletters") and letter.status == DeadLetter.Status.OPEN,
        "patient": patient,
        "discard_form": discard_form or DiscardForm(),
    }, status=status)


@require_POST
@require("work_deadletters")
def redrive(request, pk: int):
    letter = get_dead_letter_for_user(request.user, pk)
    try:
        run = do_redrive_dead_letter(letter, acting_user=request.user)
    except DeadLetterRefused as exc:
        messages.error(request, f"Not re-driven: {exc}.")
        return redirect("desk:deadletter", pk)
    messages.success(request, f"Dead letter #{pk} re-driven: run {run.pk} is back in the workflow.")
    return redirect("desk:deadletters")


@require_POST
@require("work_deadletters")
def discard(request, pk: int):
    letter = get_dead_letter_for_user(request.user, pk)
    form = DiscardForm(request.POST)
    if not form.is_valid():
        return _page(request, letter, discard_form=form, status=400)
    try:
        do_discard_dead_letter(letter, acting_user=request.user, reason=form.cleaned_data["reason"])
    except DeadLetterRefused as exc:
        messages.error(request, f"Not discarded: {exc}.")
        return redirect("desk:deadletter", pk)
    messages.success(request, f"Dead letter #{pk} discarded.")
    return redirect("desk:deadletters")
