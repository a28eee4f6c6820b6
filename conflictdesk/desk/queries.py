"""Read-only queries behind the lists: filters, sort orders and counts. No writes here."""
from __future__ import annotations

from datetime import date, timedelta

from django.contrib.auth import get_user_model
from django.db.models import Count, F, Max, Q, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone

from audit.models import AuditEvent
from sync.models import Conflict, DeadLetter, PatientLink, Site

AGES = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7), "older": None}
CONFLICT_SORTS = {
    "oldest": "opened_at", "newest": "-opened_at", "site": "record_link__site__name", "type": "resource_type",
}


def conflicts(params) -> "QuerySet[Conflict]":
    """Open conflicts by default; ``params`` is request.GET (site, patient, type, age, status, sort)."""
    qs = Conflict.objects.select_related("record_link__site", "record_link__patient_link", "run")
    status = params.get("status") or Conflict.Status.OPEN
    if status != "all":
        qs = qs.filter(status=status)
    if params.get("site"):
        qs = qs.filter(record_link__site__name=params["site"])
    if params.get("patient"):
        qs = qs.filter(record_link__patient_link_id__in=patient_links(str(params["patient"])))
    if params.get("type"):
        qs = qs.filter(resource_type=params["type"])
    age = params.get("age")
    if age in AGES:
        now = timezone.now()
        qs = qs.filter(opened_at__lt=now - timedelta(days=7)) if age == "older" else qs.filter(opened_at__gte=now - AGES[age])
    return qs.order_by(CONFLICT_SORTS.get(params.get("sort"), "opened_at"), "pk")


def conflict_counts() -> dict:
    now = timezone.now()
    open_ = Conflict.objects.filter(status=Conflict.Status.OPEN)
    return {
        "open": open_.count(),
        "older_24h": open_.filter(opened_at__lt=now - timedelta(hours=24)).count(),
        "dead_letters": DeadLetter.objects.filter(status=DeadLetter.Status.OPEN).count(),
        "by_site": list(open_.values("record_link__site__name").annotate(n=Count("pk")).order_by("record_link__site__name")),
    }


def resource_types() -> list[str]:
    return list(Conflict.objects.exclude(resource_type="").values_list("resource_type", flat=True).distinct().order_by("resource_type"))


def site_names() -> list[str]:
    return list(Site.objects.order_by("name").values_list("name", flat=True))


def dead_letters(criteria, status: str = DeadLetter.Status.OPEN) -> "QuerySet[DeadLetter]":
    """Newest first; ``criteria`` is a ``RedriveFilter``, so the list shows what a bulk re-drive would take."""
    return criteria.matching(status).select_related("run__site").order_by("-created_at", "-pk")


def patient_of(letter: DeadLetter) -> PatientLink | None:
    """The site patient a dead letter's run was about (a site's run: its EHR there), or None."""
    run = letter.run
    event = run.change_event  # a resolution's run has none
    if run.site_id is None or event is None or not event.ehr_id:
        return None
    return PatientLink.objects.select_related("site").filter(site_id=run.site_id, ehr_id=event.ehr_id).first()


def patients_of(events) -> list[PatientLink]:
    """The patients a list of audit events is about (a record's chain of custody names one)."""
    ids = {e.patient_link_id for e in events if e.patient_link_id}
    return list(PatientLink.objects.select_related("site").filter(pk__in=ids).order_by("pk"))


def dead_letter_causes(status: str = DeadLetter.Status.OPEN) -> list[dict]:
    """Every cause with its count (zero included), for the tabs above the list."""
    counts = dict(DeadLetter.objects.filter(status=status).values_list("cause").annotate(n=Count("pk")))
    return [{"value": v, "label": label, "n": counts.get(v, 0)} for v, label in DeadLetter.Cause.choices]


def audit_events(params) -> "QuerySet[AuditEvent]":
    """``params``: patient (link id, or the patient's identifier at a site or centrally), record, site,
    actor (login or a person's name), action (prefix), since, until."""
    qs = AuditEvent.objects.all()
    if params.get("patient"):
        qs = qs.filter(patient_link_id__in=patient_links(str(params["patient"])))
    if params.get("record"):
        qs = qs.filter(record_key__icontains=params["record"].strip())
    if params.get("site"):
        label = f"site:{params['site']}"
        qs = qs.filter(Q(partition=label) | Q(source=label) | Q(destination=label) | Q(record_key__startswith=label + ":"))
    if params.get("actor"):
        who = params["actor"].strip()
        qs = qs.filter(Q(actor__icontains=who) | Q(actor__in=_actors(who)))
    if params.get("action"):
        qs = qs.filter(action__startswith=params["action"].strip())
    if params.get("since"):
        qs = qs.filter(occurred_at__gte=params["since"])
    if params.get("until"):
        qs = qs.filter(occurred_at__lt=params["until"])
    return qs.order_by("-occurred_at", "-pk")


def audit_groups(events: "QuerySet[AuditEvent]"):
    """The filtered events by group, newest first: one group per run (its sync, or a decision and the run
    writing it), an event of no run on its own (key: minus its id). Rows: grp, last, n."""
    return (events.order_by().annotate(grp=Coalesce("run_id", -F("id")))
            .values("grp").annotate(last=Max("occurred_at"), n=Count("id")).order_by("-last", "-grp"))


def audit_events_of(events: "QuerySet[AuditEvent]", keys: list[int]) -> "QuerySet[AuditEvent]":
    runs, singles = [k for k in keys if k > 0], [-k for k in keys if k <= 0]
    return events.filter(Q(run_id__in=runs) | Q(pk__in=singles)).order_by("occurred_at", "pk")


def patient_links(text: str) -> list[int]:
    """A link id (``#12``), or every link whose site MRN (subject id), EHR id or central Patient id is
    ``text``, whose birth date it is (``YYYY-MM-DD``), or whose name holds each of its words."""
    text = text.strip()
    if text.startswith("#") and text[1:].isdigit():
        return [int(text[1:])]
    match = Q(subject_id=text) | Q(ehr_id=text) | Q(fhir_patient_id=text.removeprefix("Patient/"))
    if text.isdigit():  # a bare number: a link id (events outlive their links) or an all-digit MRN
        return [int(text), *PatientLink.objects.filter(match).values_list("pk", flat=True)]
    birth = _date(text)
    if birth:
        match |= Q(birth_date=birth)
    words = text.replace(",", " ").split()
    if words and not birth:
        named = Q()
        for word in words:
            named &= Q(family_name__icontains=word) | Q(given_names__icontains=word)
        match |= named
    return list(PatientLink.objects.filter(match).values_list("pk", flat=True))


def _date(text: str):
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def _actors(text: str) -> list[str]:
    """The logins of the desk's people whose name matches ``text``."""
    users = get_user_model().objects.all()
    for word in text.split():
        users = users.filter(Q(first_name__icontains=word) | Q(last_name__icontains=word))
    return list(users.values_list("email", flat=True))


def audit_actions() -> list[str]:
    return list(AuditEvent.objects.order_by().values_list("action", flat=True).distinct().order_by("action"))

