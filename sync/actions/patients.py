"""A data steward's say on HAPI's patient matching, and who looked at whose demographics.

HAPI's MDM links a site registration to a golden Patient by itself only at MATCH; below that it
asks (POSSIBLE_MATCH, POSSIBLE_DUPLICATE) and a steward answers here. The audit event is appended
first and the MDM operation sent inside the same transaction: a failing append sends nothing, a
refused operation rolls the event back. Events carry Patient ids and PatientLink ids only.
"""
from __future__ import annotations

import logging

from django.db import transaction

from audit.record import record_event
from sync.clients.errors import ClientError, InvalidRequest, NotFound, PreconditionFailed, TransientError
from sync.clients.mdm import MATCH, NO_MATCH, MdmClient
from sync.models import PatientLink
from sync.patients import backfill
from sync.workflow.services import get_services

from .actor import actor_of
from .errors import MatchRefused

log = logging.getLogger(__name__)


def mdm_client() -> MdmClient:
    return MdmClient(get_services().fhir)


def do_confirm_match(golden: str, source: str, *, acting_user) -> None:
    """The source registration is the golden record's person (its POSSIBLE_MATCH becomes MATCH); the
    golden record's existing central records are delivered to it now (``backfill``), not with their next version."""
    _decide("mdm.match.confirmed", acting_user, golden, source,
            lambda mdm: mdm.update_link(golden, source, MATCH))
    _backfill(golden, acting_user)


def do_reject_match(golden: str, source: str, *, acting_user) -> None:
    """The source registration is someone else (NO_MATCH: HAPI never links the two again by itself).

    Routing stops at once; what was already delivered to the registration stays at its site (never
    silently removed): the event counts it (``delivered_stay``, RecordLink ids) for the desk and the auditor.
    """
    patient = source.split("/", 1)[-1]
    links = list(PatientLink.objects.select_related("site").filter(fhir_patient_id=patient))
    stay = sorted(pk for link in links for pk in backfill.delivered_from_central(link))
    _decide("mdm.match.rejected", acting_user, golden, source,
            lambda mdm: mdm.update_link(golden, source, NO_MATCH), delivered_stay=stay)
    PatientLink.objects.filter(pk__in=[link.pk for link in links]).update(golden_backfilled="")


def do_merge_golden(from_golden: str, to_golden: str, *, acting_user) -> None:
    """Two golden records are one person: ``from`` retires into ``to``, its registrations move along and
    receive ``to``'s existing records (``backfill``)."""
    _decide("mdm.golden.merged", acting_user, to_golden, from_golden,
            lambda mdm: mdm.merge_golden(from_golden, to_golden))
    _backfill(to_golden, acting_user)


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


def _backfill(golden: str, acting_user) -> None:
    """After the decision's commit: a failure here undoes nothing decided; the beat's sweep delivers later."""
    try:
        backfill.backfill_golden(get_services().fhir, golden.split("/", 1)[-1], actor=actor_of(acting_user))
    except (ClientError, OSError) as exc:
        log.warning("backfill after a steward's decision on %s failed (%s); the sweep retries",
                    golden, type(exc).__name__)


def _decide(action: str, acting_user, golden: str, source: str, operation, **extra) -> None:
    patients = [ref.split("/", 1)[-1] for ref in (golden, source)]
    links = sorted(PatientLink.objects.filter(fhir_patient_id__in=patients).values_list("pk", flat=True))
    with transaction.atomic():
        record_event(action=action, outcome="ok", actor=actor_of(acting_user), destination="central",
                     destination_object=golden, patient_link_id=links[0] if len(links) == 1 else None,
                     detail={"golden": golden, "other": source, "patient_links": links, **extra})
        try:
            operation(mdm_client())
        except TransientError as exc:
            raise MatchRefused.Unavailable("the central server did not answer; nothing was decided") from exc
        except (InvalidRequest, NotFound, PreconditionFailed) as exc:  # decided, merged or gone meanwhile
            raise MatchRefused.Stale("the match is not what you saw any more; reload the list") from exc
