"""Conflicts: a clinician's decision, stored and audited, and the run that writes it to both sides."""
from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from audit.chain import payload_hash, sha256_hex
from audit.partitions import record_partition
from audit.record import record_event
from sync.workflow import diff
from sync.clients.errors import ClientError
from sync.mapping import MappingError, clinical_content
from sync.models import Conflict, Direction, Resolution, SyncRun
from sync.workflow import versions
from sync.workflow.content import record_content
from sync.workflow.dispatch import dispatch_run
from sync.workflow.services import SiteConfigError

from .actor import actor_of
from .errors import DecisionRefused


@dataclass
class Decision:
    resolution: Resolution
    run: SyncRun


def do_decide_conflict(conflict: Conflict, *, acting_user, choice: str, reason: str, field_choices: dict[str, str],
                       seen: dict) -> Decision:
    """Store, audit and start a clinician's decision, unless either side moved since ``seen``.

    The reason stays on the Resolution; the audit chain carries its hash,
    never the text, because a reason may quote clinical content.
    """
    reason = reason.strip()
    if not reason:
        raise DecisionRefused.Invalid("a reason is required", field="reason")
    if conflict.deleted_on and choice == Resolution.Choice.MERGE:
        # A deletion against an edit is decided whole, as the desk offers it: the deletion or the edit.
        raise DecisionRefused.Invalid("a deletion conflict keeps the deletion or the edit; it cannot be merged",
                                      field="choice")
    try:
        comparison = diff.compare(conflict)
    except MappingError as exc:
        raise DecisionRefused.Unmapped(f"the site version no longer maps ({type(exc).__name__}, rule "
                                       f"{getattr(exc, 'rule', '') or '-'}); fix the mapping first") from exc
    content, choices = _content_for(conflict, comparison, choice, field_choices)
    try:
        live = versions.current_versions(conflict)  # network reads: before any row lock
    except (ClientError, SiteConfigError, OSError) as exc:  # unreachable server: refuse, never guess
        raise DecisionRefused.Unavailable(f"could not read the current versions ({type(exc).__name__}); "
                                          "try again") from exc
    with transaction.atomic():
        locked = (Conflict.objects.select_for_update(of=("self",)).select_related("run", "record_link")
                  .get(pk=conflict.pk))
        if locked.status != Conflict.Status.OPEN:
            raise DecisionRefused.Stale(f"this conflict is {locked.get_status_display()}",
                                        current=latest_conflict(locked))
        if seen != versions.versions_seen(locked) or live != seen:
            raise DecisionRefused.Stale("the record changed on a server while you were looking",
                                        current=latest_conflict(locked))
        resolution = Resolution.objects.create(conflict=locked, choice=choice, field_choices=choices, reason=reason,
                                               content=content, decided_by=acting_user)
        Conflict.objects.filter(pk=locked.pk).update(status=Conflict.Status.RESOLVED, closed_at=timezone.now())
        run = do_start_resolution_run(resolution, acting_user=acting_user)
        record_event(
            action="desk.conflict.decide", outcome="ok", actor=actor_of(acting_user),
            record_key=locked.run.record_key, run_id=run.pk, patient_link_id=locked.record_link.patient_link_id,
            detail={"conflict_id": locked.pk, "resolution_id": resolution.pk, "choice": choice,
                    "fields": len(comparison.fields), "from_site": sum(1 for v in choices.values() if v == diff.SITE),
                    "reason_sha256": sha256_hex(reason), "content_hash": content["record_hash"],
                    "openehr_version": seen["openehr"],
                    "fhir_versions": sorted(f"{k}@{v}" for k, v in seen["fhir"].items())},
        )
    return Decision(resolution, run)


def do_start_resolution_run(resolution: Resolution, *, acting_user) -> SyncRun:
    """Queue a Resolution as a new SyncRun on its record (one run per resolution, however often asked)."""
    with transaction.atomic():
        resolution = (Resolution.objects.select_related("conflict__run", "conflict__record_link__site")
                      .get(pk=resolution.pk))
        conflict = resolution.conflict
        run, created = SyncRun.objects.get_or_create(
            resolution=resolution,
            defaults={
                "direction": conflict.run.direction or Direction.TO_FHIR,
                "site": conflict.record_link.site,
                # Same key as the conflict's run: serialised with every other change to the record.
                "record_key": conflict.run.record_key,
            },
        )
        if created:
            dispatch_run(run.pk)
            record_event(
                action="sync.resolution.start", outcome="ok", actor=actor_of(acting_user),
                partition=record_partition(f"site:{conflict.record_link.site.name}", run.record_key),
                run_id=run.pk, record_key=run.record_key, patient_link_id=conflict.record_link.patient_link_id,
                detail={"resolution_id": resolution.pk, "conflict_id": conflict.pk, "choice": resolution.choice},
            )
    return run


def latest_conflict(conflict: Conflict) -> Conflict:
    """The newest conflict on the same record (the one that superseded this one, or itself)."""
    return Conflict.objects.filter(record_link_id=conflict.record_link_id).order_by("-opened_at", "-pk").first()


def _content_for(conflict: Conflict, comparison, choice: str, field_choices: dict[str, str]) -> tuple[dict, dict]:
    """The chosen content as the resolution run writes it, and the side chosen for every differing field."""
    if choice == Resolution.Choice.KEEP_SITE:
        resources, choices = comparison.site_resources, {f.id: diff.SITE for f in comparison.fields}
    elif choice == Resolution.Choice.KEEP_CENTRAL:
        resources, choices = comparison.central_resources, {f.id: diff.CENTRAL for f in comparison.fields}
    elif choice == Resolution.Choice.MERGE:
        choices = {f.id: field_choices.get(f.id) for f in comparison.fields}
        missing = [fid for fid, side in choices.items() if side not in (diff.SITE, diff.CENTRAL)]
        if missing:
            raise DecisionRefused.Invalid(f"choose a side for every differing field ({len(missing)} left)",
                                          field="field_choices")
        resources = diff.merged_resources(comparison, choices)
    else:
        raise DecisionRefused.Invalid(f"unknown choice {choice!r}", field="choice")
    record = record_content(resources, clinical_content)
    content = {
        "resources": resources,
        "record": record,
        "record_hash": payload_hash(record),
        # The versions the clinician decided on: the engine writes with If-Match on exactly these.
        "expected": versions.versions_seen(conflict),
    }
    if choice == Resolution.Choice.KEEP_SITE:
        content["openehr_composition"] = conflict.openehr_composition
    return content, choices
