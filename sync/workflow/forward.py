"""Steps of a site -> central run (one composition version -> FHIR resources + Provenance).

Each step reads the run's typed checkpoint (``ForwardCheckpoint``) and this
pass's memory, may call the outside world, and returns a StepResult; none
writes the database itself (``effects`` do, inside the commit). The pure
results (resources, Provenance, clinical content) live in memory only: a step
that needs them after a crash replays the transform from the stored source
(``_mapped``), and the replay must hash to the plan's ``written_hash``.
Every step can run twice: reads are reads, and the write is conditional
(If-None-Exist / If-Match, the Provenance a PUT to an id fixed by the source
version, recorded at the run's creation).
"""
from __future__ import annotations

from datetime import timezone as tz

from django.conf import settings
from django.db import connection
from django.utils import timezone

from sync.clients.errors import NotFound
from sync.identity import CENTRAL, site_source
from sync.mapping.errors import UnmappedTemplate
from sync.models import ChangeEvent, Conflict, EngineWrite, PatientLink, RecordLink, Step, SyncRun

from . import commits, deletion, guard
from .born import with_central_identity
from .bundle import build_transaction, central_write_audit, written_entries
from .content import record_content, refs_of, resource_key
from .echoes import central_writes, is_own_write, recording
from .patients import ensure_central_patient, registration_step
from .payload import check_rm, check_storable, pure_transform, well_formed
from .result import StepResult, ValidationFailed
from .shared import check_fhir, open_conflict, sampled, stored_view, template_id


class ReplayDiverged(ValidationFailed):
    """A replayed transform produced other bytes than the plan recorded (the mapping changed in between)."""


def detect(ctx) -> StepResult:
    """Read the source version (unless it is our own echo) and the patient's link, if it has one."""
    event, site = ctx.event, ctx.run.site
    if is_own_write(site_source(site.name), event.source_object_id, event.source_version):
        return StepResult(terminal=SyncRun.Status.DONE, event_status=ChangeEvent.Status.ECHO, outcome="echo")
    composition = None
    if event.change_type != "deleted":
        with well_formed("composition"):
            composition = ctx.services.openehr(site).get_composition(event.ehr_id, event.source_version).content
        check_storable(composition)
    link = PatientLink.objects.filter(site=site, ehr_id=event.ehr_id).first()
    source_hash = ctx.services.audit.payload_hash(composition) if composition is not None else ""
    return StepResult(
        next_step=Step.VALIDATE_SOURCE,
        checkpoint={
            "source_payload": composition,
            "vo_uid": event.source_object_id,
            "version_uid": event.source_version,
            "ehr_id": event.ehr_id,
            "patient_ref": f"Patient/{link.fhir_patient_id}" if link else None,
            "patient_link_id": link.pk if link else None,
            "source_hash": source_hash,
        },
        audit={"source_hash": source_hash, **({"detail": {"deleted": True}} if composition is None else {})},
    )


def validate_source(ctx) -> StepResult:
    """A composition we can map at all: canonical, with the template it was committed against.

    Only then is a new patient's central Patient found or created: invalid data leaves
    nothing on the central server, not even the fact that the patient exists.
    """
    cp, site = ctx.cp, ctx.run.site
    composition = cp.source_payload
    if composition is not None:
        if composition.get("_type", "COMPOSITION") != "COMPOSITION" or "archetype_node_id" not in composition:
            raise ValidationFailed("not a canonical COMPOSITION", rule="composition.canonical", path="/")
        if not template_id(composition):
            raise ValidationFailed("composition names no template", rule="composition.template", path="/archetype_details/template_id")
        check_rm(composition)
    if composition is None:  # a deletion never creates a Patient
        return StepResult(next_step=Step.TRANSFORM)
    if site.demographics_source != site.Demographics.NONE:
        registered = registration_step(ctx, site)
        if registered is not None:
            return registered
    if cp.patient_ref:
        return StepResult(next_step=Step.TRANSFORM)
    patient = ensure_central_patient(ctx.services.fhir, ctx.services.openehr(site), site.name, cp.ehr_id)

    def effects(run):
        link_id, fhir_patient_id = link_patient(site, cp.ehr_id, patient)
        if f"Patient/{fhir_patient_id}" != cp.patient_ref:  # another run linked the EHR to another Patient
            raise RuntimeError("the EHR was linked to another central Patient meanwhile; replayed with it")
        cp.patient_link_id = link_id

    return StepResult(next_step=Step.TRANSFORM, effects=effects,
                      checkpoint={"patient_ref": f"Patient/{patient['fhir_patient_id']}"})


def transform(ctx) -> StepResult:
    """Map to FHIR (pure), check the round trip, build the Provenance; declared losses are kept on the run."""
    cp = ctx.cp
    if cp.source_payload is not None and not cp.patient_ref:  # validate_source links every composition's EHR
        raise RuntimeError("no central Patient for the EHR: nothing is mapped without a subject")
    guarded = None

    def check(result):  # the guard, on the first pass only: its verdict is committed with the plan
        nonlocal guarded
        guarded = guard.check_forward_step(ctx, cp.source_payload, result)  # before any write; may stop the run

    mapped = _map(ctx, check=check)
    losses = guarded.losses if guarded else []

    def effects(run):
        run.losses = losses
        commits.buffer_guard(run, guarded)

    return StepResult(
        next_step=Step.VALIDATE_TARGET,
        effects=effects,
        checkpoint={
            "fidelity": (guarded.checkpoint.get("fidelity") if guarded else None),
            "content_hash": ctx.services.audit.payload_hash(mapped["content"]),
            "written_hash": mapped["written_hash"],
        },
        audit={"detail": {"resources": len(mapped["resources"]), "losses": len(losses)}},
    )


def validate_target(ctx) -> StepResult:
    """Every resource must be valid R4 before anything is sent."""
    mapped = _mapped(ctx)
    server = ctx.services.fhir if settings.CONFLICTDESK_HAPI_VALIDATE else None
    for resource in [*mapped["resources"], *([mapped["provenance"]] if mapped["provenance"] else [])]:
        check_fhir(ctx.services.mapping, resource, server=server)
    return StepResult(next_step=Step.CHECK_CONFLICT)


def check_conflict(ctx) -> StepResult:
    """Three-way: base (RecordLink) vs new source content vs the central resources now."""
    run, cp, services = ctx.run, ctx.cp, ctx.services
    content = _mapped(ctx)["content"]
    link = RecordLink.objects.filter(site=run.site, versioned_object_uid=cp.vo_uid).first()
    if link is None or not link.fhir_resources:
        return _plan("write" if cp.source_payload is not None else "noop", expected={})  # a deletion of nothing synced
    expected = {r["key"]: r for r in link.fhir_resources}
    current, versions = read_current(services.fhir, link.fhir_resources)
    # A resource marked entered-in-error centrally is gone from the record, as if deleted there.
    now_content = record_content([r for r in current if not deletion.is_retired(r)], services.mapping.clinical_content)
    moved = versions != {r["key"]: r["version"] for r in link.fhir_resources}
    ctx.memory["current"] = current  # what the centre holds: the read-back of a write we skip
    if content == now_content:
        plan = "noop" if not moved else "adopt"  # both sides already agree
        return _plan(plan, expected=_with_versions(expected, versions))
    if not moved or now_content == link.base_content:
        return _plan("write", expected=_with_versions(expected, versions))
    if content == link.base_content:
        return _plan("noop", expected=_with_versions(expected, versions))  # only the centre changed
    return _conflict(ctx, link, current, versions)


def write(ctx) -> StepResult:
    """One FHIR transaction; EngineWrite rows commit with the step so the echo is known.

    A linked resource the source no longer produces (the composition deleted, or
    its new version without the entry) is marked entered-in-error in the same
    transaction, with If-Match and a DELETE Provenance (``deletion``), never deleted.
    """
    cp = ctx.cp
    if cp.plan != "write":
        return StepResult(next_step=Step.AUDIT, outcome=f"skipped_{cp.plan}", checkpoint={"written": _as_written(cp)})
    mapped = _mapped(ctx)
    kept = {resource_key(r) for r in mapped["resources"]}
    live = {k: v for k, v in cp.expected.items() if k in kept}
    bundle, keys = build_transaction(mapped["resources"], mapped["provenance"], live, cp.version_uid)
    retire, retire_keys = deletion.retire_entries(
        ctx.services.fhir, {k: v for k, v in cp.expected.items() if k not in kept})
    first_retired = len(keys)
    if retire:
        targets = [e["request"]["url"] for e in retire]
        provenance = deletion.deletion_provenance(mapped["provenance"] or _provenance(ctx, []), targets, cp.version_uid,
                                                  site_audit=_site_deletion(ctx), site=ctx.run.site.name)
        bundle["entry"] += [*retire, deletion.provenance_entry(provenance)]
        keys += [None] * (len(retire) + 1)
    ctx.memory["bundle"] = bundle
    if not bundle["entry"]:
        return StepResult(next_step=Step.AUDIT, outcome="skipped_nothing", checkpoint={"written": [], "retired": []})
    answer = ctx.services.fhir.transaction(bundle, representation=True)
    written = written_entries(keys, answer)
    retired = [{"key": key, "type": e.resource_type, "id": e.id, "version": e.version_id}
               for key, e in zip(retire_keys, answer.entries[first_retired:])]
    # The resources as the server says it stored them: the audit's read-back, without a round trip.
    ctx.memory["stored"] = [e.resource for k, e in zip(keys, answer.entries) if k is not None]
    provenance_ref = next(
        (f"Provenance/{e.id}" for k, e in zip(keys, answer.entries) if k is None and e.resource_type == "Provenance"), None
    )
    audit = central_write_audit(ctx.services.audit, written, mapped["resources"], bundle)
    if retired:
        audit["detail"]["entered_in_error"] = refs_of(retired)
    return StepResult(
        next_step=Step.AUDIT,
        effects=recording(CENTRAL, central_writes(written + retired)),
        checkpoint={"written": written, "retired": retired, "provenance_ref": provenance_ref},
        audit=audit,
    )


def audit(ctx) -> StepResult:
    """The three hashes: as read, as written, as stored (the write's answer; a vread when sampled or missing)."""
    cp, services = ctx.cp, ctx.services
    refs = [(w["type"], w["id"], w["version"]) for w in cp.written]
    stored, how, agrees = _answered(ctx), "answer", True
    if stored is None:  # resumed after the write's pass, or the server answered without resources
        stored, how = services.fhir.vread_many(refs), "vread"
    elif refs and sampled(cp.version_uid):
        # Independent check: a server that answers one thing and stores another is caught here.
        again = services.fhir.vread_many(refs)
        agrees, how = [stored_view(r) for r in again] == [stored_view(r) for r in stored], "answer+vread"
    same = record_content(stored, services.mapping.clinical_content) == _mapped(ctx)["content"]
    readback_hash = services.audit.payload_hash([stored_view(r) for r in stored])
    return StepResult(
        next_step=Step.ACKNOWLEDGE,
        outcome="ok" if same and agrees else "readback_differs",
        checkpoint={"readback_hash": readback_hash},
        audit={
            "destination": CENTRAL,
            "destination_object": ",".join(refs_of(cp.written))[:250],
            "destination_version": ",".join(str(w["version"]) for w in cp.written)[:200],
            "source_hash": cp.source_hash,
            "written_hash": cp.written_hash or services.audit.payload_hash(_mapped(ctx)["resources"]),
            "readback_hash": readback_hash,
            "detail": {"readback": how, **({} if agrees else {"vread_differs": True}),
                       **({"entered_in_error": refs_of(cp.retired)} if cp.retired else {})},
        },
    )


def acknowledge(ctx) -> StepResult:
    """The new base: both versions and the content now on both sides."""
    cp = ctx.cp
    content = _mapped(ctx)["content"]
    if cp.source_payload is None:
        return StepResult(terminal=SyncRun.Status.DONE, effects=_deleted_link(cp, content),
                          audit={"source_hash": cp.source_hash})

    def effects(run):
        # One statement: insert the link, or move the existing one to the new base.
        values = {
            "patient_link_id": cp.patient_link_id,
            "template_id": template_id(cp.source_payload),
            "openehr_version_uid": cp.version_uid,
            "fhir_resources": cp.written,
            "canonical_hash": cp.content_hash,
            "base_content": content,
            "deleted": False,
            "last_synced_at": timezone.now(),
        }
        RecordLink.objects.bulk_create(
            [RecordLink(site=run.site, versioned_object_uid=cp.vo_uid, **values)],
            update_conflicts=True, unique_fields=["site", "versioned_object_uid"], update_fields=list(values),
        )

    return StepResult(terminal=SyncRun.Status.DONE, effects=effects, audit={"source_hash": cp.source_hash})


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


_LINK_PATIENT = (
    f"INSERT INTO {PatientLink._meta.db_table} (site_id, ehr_id, subject_id, subject_namespace, fhir_patient_id, "
    "created_at, family_name, given_names, sex, demographics_version) "  # the demographics cache starts empty
    "VALUES (%s, %s, %s, %s, %s, %s, '', '', '', '') "
    "ON CONFLICT (site_id, ehr_id) DO UPDATE SET ehr_id = EXCLUDED.ehr_id "
    "RETURNING id, fhir_patient_id"
)


def link_patient(site, ehr_id: str, patient: dict) -> tuple[int, str]:
    """The EHR's PatientLink, made if missing, in one statement: (its id, the Patient it names)."""
    with connection.cursor() as cursor:
        cursor.execute(_LINK_PATIENT, [site.pk, ehr_id, patient["subject_id"], patient["subject_namespace"],
                                       patient["fhir_patient_id"], timezone.now()])
        return cursor.fetchone()


def _deleted_link(cp, content):
    """The link of a deleted composition (if it was ever synced): deleted, pointing at what was retired."""
    def effects(run):
        RecordLink.objects.filter(site=run.site, versioned_object_uid=cp.vo_uid).update(
            openehr_version_uid=cp.version_uid, fhir_resources=(cp.written or []) + (cp.retired or []),
            canonical_hash=cp.content_hash, base_content=content, deleted=True, last_synced_at=timezone.now())

    return effects


def _site_deletion(ctx):
    """The site's revision of a deleted composition version (who deleted it, when), None for any other version."""
    cp = ctx.cp
    if cp.source_payload is not None:
        return None
    revisions = ctx.services.openehr(ctx.run.site).revision_history(cp.ehr_id, cp.vo_uid)
    return next((r for r in revisions if r.version_uid == cp.version_uid), None)


def _provenance(ctx, resources: list[dict]) -> dict:
    """The mapping's Provenance of the source version; Provenance.recorded is when the run was created."""
    cp, site = ctx.cp, ctx.run.site
    recorded = ctx.run.created_at.astimezone(tz.utc).isoformat(timespec="seconds")
    with pure_transform("mapping.build_provenance"):
        return ctx.services.mapping.build_provenance(resources, site.name, cp.ehr_id, cp.version_uid, recorded=recorded)


def _map(ctx, *, check=None) -> dict:
    """The pure transform of the stored source: resources, Provenance, clinical content (kept in memory).

    A function of the checkpoint and the run alone: Provenance.recorded is the moment the
    run was created (when the change was detected), not the moment of this pass.
    """
    cp, mapping, site = ctx.cp, ctx.services.mapping, ctx.run.site
    resources, provenance = [], None
    if cp.source_payload is not None:
        with pure_transform("mapping.to_fhir"):
            result = mapping.to_fhir(cp.source_payload, site=site.name, ehr_id=cp.ehr_id, patient_ref=cp.patient_ref)
        resources = list(result.resources)
        if not resources:
            raise UnmappedTemplate(
                "no entry of the composition has a mapping", composition_uid=cp.version_uid, path="/content", rule="registry"
            )
        if check:
            check(result)
        resources = with_central_identity(cp.source_payload, resources)  # a centrally born record stays the centre's
        provenance = _provenance(ctx, resources)
    mapped = {
        "resources": resources,
        "provenance": provenance,
        "content": record_content(resources, mapping.clinical_content),
        "written_hash": ctx.services.audit.payload_hash(resources),
    }
    ctx.memory["mapped"] = mapped
    return mapped


def _mapped(ctx) -> dict:
    """This pass's transform, or its replay from the stored source, which must give the planned bytes."""
    if "mapped" in ctx.memory:
        return ctx.memory["mapped"]
    cp = ctx.cp
    mapped = _map(ctx)
    if cp.written_hash and mapped["written_hash"] != cp.written_hash:
        raise ReplayDiverged("the replayed transform differs from the plan (did the mapping change?)",
                             rule="replay.deterministic", path="/")
    return mapped


def _answered(ctx) -> list[dict] | None:
    """What the centre holds at the written versions, as this pass already has it (None: read it)."""
    if ctx.cp.plan == "write":
        stored = ctx.memory.get("stored")
    else:
        current = ctx.memory.get("current")  # the conflict check read them: nothing was written since
        stored = current if current is not None and len(current) == len(ctx.cp.written) else None
    if stored is None or any(r is None for r in stored):
        return None
    return stored


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
    return list(cp.expected.values())


def _conflict(ctx, link, current, versions) -> StepResult:
    run, cp = ctx.run, ctx.cp
    central_refs = [f"{r['type']}/{r['id']}@{versions.get(r['key'])}" for r in link.fhir_resources]
    kind = Conflict.Kind.SITE_VS_CENTRAL
    if EngineWrite.objects.filter(destination=CENTRAL, run__site__isnull=False).exclude(run__site=run.site).filter(
        object_id__in=refs_of(link.fhir_resources), version__in=[v for v in versions.values() if v]
    ).exists():
        kind = Conflict.Kind.SITE_VS_SITE  # another site's edit reached the centre first

    # A deletion on one side while the other edited: "deleted at X / changed at Y".
    deleted = {}
    changed = [r["meta"]["lastUpdated"] for r in current if (r.get("meta") or {}).get("lastUpdated")]
    if cp.source_payload is None:
        deleted = {"deleted_on": Conflict.Deleted.SITE}
    elif all(deletion.is_retired(r) for r in current):  # every resource deleted or entered-in-error centrally
        deleted = {"deleted_on": Conflict.Deleted.CENTRAL}
    # Each side's commit time, which the desk shows beside its author ("Dr. X at site1, 10:42").
    deleted.update(openehr_changed_at=ctx.event.committed_at, fhir_changed_at=max(changed) if changed else None)

    def effects(run):
        open_conflict(
            run, link,
            kind=kind,
            resource_type=(current[0]["resourceType"] if current else ""),
            openehr_version_uid=cp.version_uid,
            openehr_composition=cp.source_payload or {},
            fhir_versions=[{**r, "version": versions.get(r["key"])} for r in link.fhir_resources],
            fhir_resources=current,
            **deleted,
        )

    return StepResult(
        terminal=SyncRun.Status.CONFLICT,
        outcome="conflict",
        effects=effects,
        audit={"destination": CENTRAL, "destination_object": ",".join(central_refs)[:250],
               "detail": {"kind": kind, **({"deleted_on": deleted["deleted_on"]} if "deleted_on" in deleted else {})}},
    )
