"""Forms: the decision on a conflict, the dead-letter discard, filters and the invitation."""
from __future__ import annotations

import hashlib
import json

from django import forms

from sync.actions import RedriveFilter
from sync.models import DeadLetter, Resolution

from sync.workflow.diff import CENTRAL, SITE
from .roles import ROLE_ALIASES, demo_enabled


def field_token(field_id: str) -> str:
    """A form-safe, stable name for one differing field (ids hold '|', '/' and brackets)."""
    return "pick-" + hashlib.sha1(field_id.encode()).hexdigest()[:16]


# A deletion conflict's two decisions, by the side that deleted (the resolution run writes either).
DELETION_CHOICES = {
    "site": [(Resolution.Choice.KEEP_SITE, "keep the deletion (mark the central resources entered-in-error)"),
             (Resolution.Choice.KEEP_CENTRAL, "keep the central edit (restore the composition at the site)")],
    "central": [(Resolution.Choice.KEEP_CENTRAL, "keep the deletion (remove the entry at the site)"),
                (Resolution.Choice.KEEP_SITE, "keep the site's edit (restore it centrally)")],
}


class DecisionForm(forms.Form):
    choice = forms.ChoiceField(choices=Resolution.Choice.choices, widget=forms.RadioSelect, label="Decision")
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), label="Reason (required)",
                             help_text="Why this version is right. Stored with the decision.")
    seen = forms.CharField(widget=forms.HiddenInput)

    def __init__(self, *args, fields=(), deleted_on: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.diff_fields = list(fields)
        if deleted_on:  # a deletion against an edit is decided whole: the deletion or the edit
            self.fields["choice"].choices = DELETION_CHOICES[deleted_on]
        for f in self.diff_fields:
            self.fields[field_token(f.id)] = forms.ChoiceField(
                choices=[(SITE, "site"), (CENTRAL, "central")], required=False, label=f.label,
                # The diff table sits above the side-by-side view, outside the <form>; the attribute joins them.
                widget=forms.RadioSelect(attrs={"form": "decision"}))

    def clean_seen(self):
        try:
            return json.loads(self.cleaned_data["seen"])
        except ValueError as exc:
            raise forms.ValidationError("the page was incomplete; reload it") from exc

    def clean(self):
        data = super().clean()
        if data.get("choice") == Resolution.Choice.MERGE:
            missing = [f.label for f in self.diff_fields if not data.get(field_token(f.id))]
            if missing:
                raise forms.ValidationError(f"Merge: choose site or central for every differing field ({len(missing)} left).")
        return data

    def field_choices(self) -> dict[str, str]:
        return {f.id: self.cleaned_data.get(field_token(f.id)) for f in self.diff_fields if self.cleaned_data.get(field_token(f.id))}


class DiscardForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), label="Reason for discarding (required)")


class InviteForm(forms.Form):
    email = forms.EmailField(label="E-mail")
    role = forms.ChoiceField(choices=[(k, v) for k, v in ROLE_ALIASES.items()], label="Role")
    demo = forms.BooleanField(required=False, label="Demo account (no TOTP required)")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not demo_enabled():  # outside a demo the option does not exist (and would be refused)
            del self.fields["demo"]


CAUSES = [("", "any cause")] + list(DeadLetter.Cause.choices)


class DeadLetterFilterForm(forms.Form):
    """The dead-letter list's filter, and what a bulk re-drive takes (the open letters it shows)."""

    status = forms.ChoiceField(choices=[*DeadLetter.Status.choices, ("all", "all")], required=False)
    cause = forms.ChoiceField(choices=CAUSES, required=False)
    site = forms.SlugField(required=False)
    rule = forms.CharField(required=False, max_length=200, help_text="The rule's start, e.g. rm.dv_quantity")
    since = forms.DateTimeField(required=False, label="From")
    until = forms.DateTimeField(required=False, label="Until")

    def criteria(self) -> RedriveFilter:
        data = self.cleaned_data if self.is_valid() else {}
        return RedriveFilter(site=data.get("site") or "", rule=(data.get("rule") or "").strip(),
                             cause=data.get("cause") or "", since=data.get("since"), until=data.get("until"))

    def chosen_status(self) -> str:
        return (self.cleaned_data.get("status") if self.is_valid() else "") or DeadLetter.Status.OPEN
