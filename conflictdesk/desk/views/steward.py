"""The data steward's page: HAPI's possible matches and duplicates, and the steward's answer."""
from __future__ import annotations

from django import forms
from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from sync.actions import (MatchRefused, do_confirm_match, do_keep_golden_apart, do_merge_golden, do_reject_match,
                          do_view_patients)
from sync.clients.errors import TransientError
from sync.clients.mdm import POSSIBLE_DUPLICATE, POSSIBLE_MATCH
from sync.workflow.services import get_services

from .. import steward
from ..access import require

PATIENT_REF = r"^Patient/[A-Za-z0-9\-.]{1,64}$"


class MatchAnswerForm(forms.Form):
    kind = forms.ChoiceField(choices=[(POSSIBLE_MATCH, "possible match"), (POSSIBLE_DUPLICATE, "possible duplicate")])
    golden = forms.RegexField(regex=PATIENT_REF)
    other = forms.RegexField(regex=PATIENT_REF)
    answer = forms.ChoiceField(choices=[("same", "same person"), ("different", "different people")])


# (kind, answer) -> the action that carries the steward's answer to HAPI
ANSWERS = {
    (POSSIBLE_MATCH, "same"): lambda golden, other, user: do_confirm_match(golden, other, acting_user=user),
    (POSSIBLE_MATCH, "different"): lambda golden, other, user: do_reject_match(golden, other, acting_user=user),
    (POSSIBLE_DUPLICATE, "same"): lambda golden, other, user: do_merge_golden(other, golden, acting_user=user),
    (POSSIBLE_DUPLICATE, "different"): lambda golden, other, user: do_keep_golden_apart(golden, other, acting_user=user),
}


@require("match_patients")
def index(request):
    try:
        questions, unavailable = steward.open_questions(get_services().fhir), False
    except TransientError:
        questions, unavailable = [], True
    # Showing demographics is an access to them: one audit event naming every registration on the page.
    do_view_patients([link for q in questions for link in q.links], acting_user=request.user, where="matching")
    return render(request, "desk/matching.html", {"questions": questions, "unavailable": unavailable})


@require_POST
@require("match_patients")
def decide(request):
    form = MatchAnswerForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Nothing decided: " + "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items()))
        return redirect("desk:matching")
    data = form.cleaned_data
    try:
        ANSWERS[data["kind"], data["answer"]](data["golden"], data["other"], request.user)
    except MatchRefused as exc:
        messages.error(request, f"Nothing decided: {exc}.")
        return redirect("desk:matching")
    messages.success(request, f"{data['other']} and {data['golden']}: recorded as "
                              f"{'the same person' if data['answer'] == 'same' else 'different people'}.")
    return redirect("desk:matching")
