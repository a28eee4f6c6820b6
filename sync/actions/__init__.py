"""Every state change a person (desk, API, admin, command line) can make, one ``do_*`` function each.

Each takes the acting user keyword-only (``None``: a command run on this
host), runs in one transaction, and writes its audit event in that same
transaction, so the event commits or rolls back with the change it describes.
A refusal changes nothing and raises a typed ``Refused`` (``errors``) that
each door translates by type. Views, viewsets, the admin and commands call
these directly; nothing in the engine (``sync.workflow``, ``sync.detection``)
calls them.
"""
from .conflicts import Decision, do_decide_conflict, do_start_resolution_run, latest_conflict
from .dead_letters import RedriveFilter, do_discard_dead_letter, do_redrive_dead_letter, do_redrive_dead_letters
from .errors import (Blocked, DeadLetterRefused, DecisionRefused, Invalid, InviteRefused, MatchRefused, Refused,
                     SiteRefused, Stale, Unavailable)
from .patients import do_confirm_match, do_keep_golden_apart, do_merge_golden, do_reject_match, do_view_patients
from .people import do_invite_user, do_issue_api_token
from .sites import do_create_site, do_delete_site, do_update_site
from .sources import do_view_source
from .triggers import do_trigger_composition, do_trigger_patient, do_trigger_site

__all__ = [
    "Blocked", "Decision", "DeadLetterRefused", "RedriveFilter", "DecisionRefused", "Invalid", "InviteRefused", "Refused",
    "SiteRefused", "Stale", "Unavailable", "do_create_site", "do_decide_conflict", "do_delete_site",
    "do_discard_dead_letter", "do_invite_user", "do_issue_api_token", "do_redrive_dead_letter", "do_redrive_dead_letters",
    "do_start_resolution_run",
    "do_trigger_composition", "do_trigger_patient", "do_trigger_site", "do_update_site", "do_view_source",
    "latest_conflict",
    "MatchRefused", "do_confirm_match", "do_keep_golden_apart", "do_merge_golden", "do_reject_match", "do_view_patients",
]
