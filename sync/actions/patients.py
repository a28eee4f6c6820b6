"""A data steward's say on HAPI's patient matching, and who looked at whose demographics.

HAPI's MDM links a site registration to a golden Patient by itself only at MATCH; below that it
asks (POSSIBLE_MATCH, POSSIBLE_DUPLICATE) and a steward answers here. The audit event is appended
first and the MDM operation sent inside the same transaction: a failing append sends nothing, a
refused operation rolls the event back. Events carry Patient ids and PatientLink ids only.
"""
from __future__ import annotations

from django.db import transaction

from audit.record import record_event
from sync.clients.errors import InvalidRequest, NotFound, PreconditionFailed, TransientError
from sync.clients.mdm import MATCH, NO_MATCH, MdmClient
from sync.models import PatientLink
from sync.workflow.services import get_services

from .actor import actor_of
from .errors import MatchRefused


def mdm_client() -> MdmClient:
    return MdmClient(get_services().fhir)


def do_confirm_match(golden: str, source: str, *, acting_user) -> None:
    """The source registration is the golden record's person (its POSSIBLE_MATCH becomes MATCH)."""
    _decide("mdm.match.confirmed", acting_user, golden, source,
            lambda mdm: mdm.update_link(golden, source, MATCH))


def do_reject_match(golden: str, source: str, *, acting_user) -> None:
    """The source registration is someone else (NO_MATCH: HAPI never links the two again by itself)."""
    _decide("mdm.match.rejected", acting_user, golden, source,
            lambda mdm: mdm.update_link(golden, source, NO_MATCH))


def do_merge_golden(from_golden: str, to_golden: str, *, acting_user) -> None:
    """Two golden records are one person: ``from`` retires into ``to``, its registrations move along."""
    _decide("mdm.golden.merged", acting_user, to_golden, from_golden,
            lambda mdm: mdm.merge_golden(from_golden, to_golden))


def do_keep_golden_apart(golden: str, other: str, *, acting_user) -> None:
    """Two golden records HAPI suspected to be one person are two people."""
    _decide("mdm.golden.kept_apart", acting_user, golden, other, lambda mdm: mdm.not_duplicate(golden, other))


def do_view_patients(links, *, acting_user, where: str) -> None:
    """Demographics of these PatientLinks were shown to ``acting_user`` on page ``where`` (the auditor's
    "who looked at whom"). One event per page view, naming the links, never the values shown."""
    ids = sorted({link.pk for link in links})
    if not ids:
        return
    with transaction.atomic():
        record_event(action="patient.viewed", outcome="ok", actor=actor_of(acting_user),
                     patient_link_id=ids[0] if len(ids) == 1 else None,
                     detail={"page": where, "patient_links": ids})


def _decide(action: str, acting_user, golden: str, source: str, operation) -> None:
    patients = [ref.split("/", 1)[-1] for ref in (golden, source)]
    links = sorted(PatientLink.objects.filter(fhir_patient_id__in=patients).values_list("pk", flat=True))
    with transaction.atomic():
        record_event(action=action, outcome="ok", actor=actor_of(acting_user), destination="central",
                     destination_object=golden, patient_link_id=links[0] if len(links) == 1 else None,
                     detail={"golden": golden, "other": source, "patient_links": links})
        try:
            operation(mdm_client())
        except TransientError as exc:
            raise MatchRefused.Unavailable("the central server did not answer; nothing was decided") from exc
        except (InvalidRequest, NotFound, PreconditionFailed) as exc:  # decided, merged or gone meanwhile
            raise MatchRefused.Stale("the match is not what you saw any more; reload the list") from exc
