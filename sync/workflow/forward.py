"""Steps of a site -> central run (one composition version -> FHIR resources + Provenance).

Each step reads what earlier steps left in the checkpoint, may call the
outside world, and returns a StepResult; none writes the database itself
(``effects`` do, inside the runner's transaction). Every step can run twice:
reads are reads, and the write is conditional (If-None-Exist / If-Match).
"""
from __future__ import annotations

from django.conf import settings
from django.utils import timezone

from sync.clients.errors import NotFound
from sync.mapping.errors import UnmappedTemplate
from sync.identity import CENTRAL, site_source
from sync.models import ChangeEvent, Conflict, EngineWrite, PatientLink, RecordLink, Step, SyncRun

from . import guard
from .bundle import build_transaction, central_write_audit, written_entries
from .content import record_content, refs_of
from .echoes import central_writes, is_own_write, recording
from .patients import ensure_central_patient
from .payload import check_rm, check_storable, pure_transform, well_formed
from .result import StepResult, ValidationFailed


def detect(ctx) -> StepResult:
    """Read the source version (unless it is our own echo) and the patient's link, if it has one."""
    event, site = ctx.event, ctx.run.site
    vo_uid = event.source_object_id
    if is_own_write(site_source(site.name), vo_uid, event.source_version):
        return StepResult(terminal=SyncRun.Status.DONE, event_status=ChangeEvent.Status.ECHO, outcome="echo")
    composition = None
    if event.change_type != "deleted":
        with well_formed("composition"):
            composition = ctx.services.openehr(site).get_composition(event.ehr_id, event.source_version).content
        check_storable(composition)
    link = PatientLink.objects.filter(site=site, ehr_id=event.ehr_id).first()
    payload_hash = ctx.services.audit.payload_hash
    return StepResult(
        next_step=Step.VALIDATE_SOURCE,
        checkpoint={
            "source_payload": composition,
            "vo_uid": vo_uid,
            "version_uid": event.source_version,
            "ehr_id": event.ehr_id,
            "patient_ref": f"Patient/{link.fhir_patient_id}" if link else None,
            **({"patient_link_id": link.pk} if link else {}),
            "source_hash": payload_hash(composition) if composition is not None else "",
        },
        audit={"source_hash": payload_hash(composition) if composition is not None else ""},
    )


def validate_source(ctx) -> StepResult:
    """A composition we can map at all: canonical, with the template it was committed against.

    Only then is a new patient's central Patient found or created: invalid data leaves
    nothing on the central server, not even the fact that the patient exists.
    """
    cp, site = ctx.checkpoint, ctx.run.site
    composition = cp["source_payload"]
    if composition is not None:
        if composition.get("_type", "COMPOSITION") != "COMPOSITION" or "archetype_node_id" not in composition:
            raise ValidationFailed("not a canonical COMPOSITION", rule="composition.canonical", path="/")
        template_id = ((composition.get("archetype_details") or {}).get("template_id") or {}).get("value")
        if not template_id:
            raise ValidationFailed("composition names no template", rule="composition.template", path="/archetype_details/template_id")
        check_rm(composition)
    if cp.get("patient_ref"):
        return StepResult(next_step=Step.TRANSFORM)
    patient = ensure_central_patient(ctx.services.fhir, ctx.services.openehr(site), site.name, cp["ehr_id"])

    def effects(run):
        patient_link, _ = PatientLink.objects.get_or_create(site=site, ehr_id=cp["ehr_id"], defaults=patient)
        run.checkpoint["patient_link_id"] = patient_link.pk
        run.checkpoint["patient_ref"] = f"Patient/{patient_link.fhir_patient_id}"

    return StepResult(next_step=Step.TRANSFORM, effects=effects)


def transform(ctx) -> StepResult:
    """Map to FHIR (pure) and build the Provenance; declared losses are kept on the run."""
    cp, mapping, site = ctx.checkpoint, ctx.services.mapping, ctx.run.site
    resources, losses, provenance, guarded = [], [], None, None
    if cp["source_payload"] is not None:
        with pure_transform("mapping.to_fhir"):
            result = mapping.to_fhir(cp["source_payload"], site=site.name, ehr_id=cp["ehr_id"], patient_ref=cp["patient_ref"])
        resources, losses = list(result.resources), [_loss(x) for x in result.losses]
        if not resources:
            raise UnmappedTemplate(
                "no entry of the composition has a mapping", composition_uid=cp["version_uid"], path="/content", rule="registry"
            )
        guarded = guard.check_forward_step(ctx, cp["source_payload"], result)  # before any write; may stop the run
        losses = guarded.losses
        with pure_transform("mapping.build_provenance"):
            provenance = mapping.build_provenance(resources, site.name, cp["ehr_id"], cp["version_uid"])
    content = record_content(resources, mapping.clinical_content)

    def effects(run):
        run.losses = losses
        if guarded:
            guarded.audit(run)

    return StepResult(
        next_step=Step.VALIDATE_TARGET,
        effects=effects,
        checkpoint={
            **(guarded.checkpoint if guarded else {}),
            "resources": resources,
            "provenance": provenance,
            "content": content,
            "content_hash": ctx.services.audit.payload_hash(content),
        },
        audit={"detail": {"resources": len(resources), "losses": len(losses)}},
    )


def validate_target(ctx) -> StepResult:
    """Every resource must be valid R4 before anything is sent."""
    cp = ctx.checkpoint
    for resource in [*cp["resources"], *([cp["provenance"]] if cp["provenance"] else [])]:
        issues = ctx.services.mapping.validate_fhir(resource)
        if settings.CONFLICTDESK_HAPI_VALIDATE and not issues:
            issues = _server_issues(ctx.services.fhir.validate(resource))
        if issues:
            raise ValidationFailed(
                f"{resource['resourceType']} fails R4 validation ({len(issues)} issue(s))",
                rule=f"fhir.r4.{resource['resourceType']}",
                path=_issue_path(issues[0]),
                detail={"issues": [str(i) for i in issues]},
            )
    return StepResult(next_step=Step.CHECK_CONFLICT)


def check_conflict(ctx) -> StepResult:
    """Three-way: base (RecordLink) vs new source content vs the central resources now."""
    run, cp, services = ctx.run, ctx.checkpoint, ctx.services
    link = RecordLink.objects.filter(site=run.site, versioned_object_uid=cp["vo_uid"]).first()
    if link is None or not link.fhir_resources:
        return _plan("write", expected={})
    expected = {r["key"]: r for r in link.fhir_resources}
    current, versions = read_current(services.fhir, link.fhir_resources)
    now_content = record_content(current, services.mapping.clinical_content)
    moved = versions != {r["key"]: r["version"] for r in link.fhir_resources}
    if cp["content"] == now_content:
        plan = "noop" if not moved else "adopt"  # both sides already agree
        return _plan(plan, expected=_with_versions(expected, versions))
    if not moved or now_content == link.base_content:
        return _plan("write", expected=_with_versions(expected, versions))
    if cp["content"] == link.base_content:
        return _plan("noop", expected=_with_versions(expected, versions))  # only the centre changed
    return _conflict(ctx, link, current, versions)


def write(ctx) -> StepResult:
    """One FHIR transaction; EngineWrite rows commit with the step so the echo is known."""
    cp = ctx.checkpoint
    if cp["plan"] != "write":
        return StepResult(next_step=Step.AUDIT, outcome=f"skipped_{cp['plan']}", checkpoint={"written": _as_written(cp)})
    bundle, keys = build_transaction(cp["resources"], cp["provenance"], cp["expected"], cp["version_uid"])
    answer = ctx.services.fhir.transaction(bundle)
    written = written_entries(keys, answer)
    provenance_ref = next(
        (f"Provenance/{e.id}" for k, e in zip(keys, answer.entries) if k is None and e.resource_type == "Provenance"), None
    )
    return StepResult(
        next_step=Step.AUDIT,
        effects=recording(CENTRAL, central_writes(written)),
        checkpoint={"written": written, "provenance_ref": provenance_ref},
        audit=central_write_audit(ctx.services.audit, written, cp["resources"], bundle),
    )


def audit(ctx) -> StepResult:
    """Read back what is now central and record the three hashes."""
    cp, services = ctx.checkpoint, ctx.services
    readback = services.fhir.vread_many([(w["type"], w["id"], w["version"]) for w in cp["written"]])
    same = record_content(readback, services.mapping.clinical_content) == cp["content"]
    readback_hash = services.audit.payload_hash(readback)
    return StepResult(
        next_step=Step.ACKNOWLEDGE,
        outcome="ok" if same else "readback_differs",
        checkpoint={"readback_hash": readback_hash},
        audit={
            "destination": CENTRAL,
            "destination_object": ",".join(refs_of(cp["written"]))[:250],
            "destination_version": ",".join(str(w["version"]) for w in cp["written"])[:200],
            "source_hash": cp["source_hash"],
            "written_hash": services.audit.payload_hash(cp["resources"]),
            "readback_hash": readback_hash,
        },
    )


def acknowledge(ctx) -> StepResult:
    """The new base: both versions and the content now on both sides."""
    cp = ctx.checkpoint
    content_hash = cp["content_hash"]

    def effects(run):
        RecordLink.objects.update_or_create(
            site=run.site,
            versioned_object_uid=cp["vo_uid"],
            defaults={
                "patient_link_id": run.checkpoint["patient_link_id"],
                "template_id": _template_id(cp["source_payload"]),
                "openehr_version_uid": cp["version_uid"],
                "fhir_resources": cp["written"],
                "canonical_hash": content_hash,
                "base_content": cp["content"],
                "deleted": cp["source_payload"] is None,
                "last_synced_at": timezone.now(),
            },
        )

    return StepResult(terminal=SyncRun.Status.DONE, effects=effects, audit={"source_hash": cp["source_hash"]})


STEPS = {
    Step.DETECT: detect,
    Step.VALIDATE_SOURCE: validate_source,
    Step.TRANSFORM: transform,
    Step.VALIDATE_TARGET: validate_target,
    Step.CHECK_CONFLICT: check_conflict,
    Step.WRITE: write,
    Step.AUDIT: audit,
    Step.ACKNOWLEDGE: acknowledge,
}


def _plan(plan: str, *, expected: dict) -> StepResult:
    return StepResult(next_step=Step.WRITE, outcome=plan, checkpoint={"plan": plan, "expected": expected})


def read_current(fhir, link_resources):
    """The linked resources as they are centrally now, and their versions (None if deleted)."""
    current, versions = [], {}
    for r in link_resources:
        try:
            resource = fhir.read(r["type"], r["id"])
        except NotFound:
            versions[r["key"]] = None
            continue
        current.append(resource)
        versions[r["key"]] = resource["meta"]["versionId"]
    return current, versions


def _with_versions(expected: dict, versions: dict) -> dict:
    return {k: {**v, "version": versions.get(k) or v["version"]} for k, v in expected.items()}


def _as_written(cp) -> list[dict]:
    return list(cp["expected"].values())


def _conflict(ctx, link, current, versions) -> StepResult:
    run, cp = ctx.run, ctx.checkpoint
    central_refs = [f"{r['type']}/{r['id']}@{versions.get(r['key'])}" for r in link.fhir_resources]
    kind = Conflict.Kind.SITE_VS_CENTRAL
    if EngineWrite.objects.filter(destination=CENTRAL, run__site__isnull=False).exclude(run__site=run.site).filter(
        object_id__in=refs_of(link.fhir_resources), version__in=[v for v in versions.values() if v]
    ).exists():
        kind = Conflict.Kind.SITE_VS_SITE  # another site's edit reached the centre first

    def effects(run):
        Conflict.objects.filter(record_link=link, status=Conflict.Status.OPEN).update(
            status=Conflict.Status.SUPERSEDED, closed_at=timezone.now()
        )
        Conflict.objects.create(
            run=run,
            record_link=link,
            kind=kind,
            resource_type=(current[0]["resourceType"] if current else ""),
            openehr_version_uid=cp["version_uid"],
            openehr_composition=cp["source_payload"] or {},
            fhir_versions=[{**r, "version": versions.get(r["key"])} for r in link.fhir_resources],
            fhir_resources=current,
            base_content=link.base_content,
            base_hash=link.canonical_hash,
        )

    return StepResult(
        terminal=SyncRun.Status.CONFLICT,
        outcome="conflict",
        effects=effects,
        audit={"destination": CENTRAL, "destination_object": ",".join(central_refs)[:250], "detail": {"kind": kind}},
    )


def _server_issues(outcome: dict) -> list[str]:
    return [
        f"{i.get('code')}@{','.join(i.get('expression') or i.get('location') or [])}"
        for i in outcome.get("issue", [])
        if i.get("severity") in ("error", "fatal")
    ]


def _issue_path(issue) -> str:
    """Where the first issue is, without its message (which may quote values)."""
    if isinstance(issue, dict):
        return str(issue.get("path") or issue.get("loc") or "")[:500]
    return str(issue).split(":", 1)[0][:500]


def _template_id(composition) -> str:
    if not composition:
        return ""
    return ((composition.get("archetype_details") or {}).get("template_id") or {}).get("value", "")


def _loss(loss) -> dict:
    return loss if isinstance(loss, dict) else {"path": getattr(loss, "path", ""), "reason": str(loss)}

