"""Steps of a resolution run: a clinician's chosen content, written to the site and centrally.

The desk stores a Resolution whose ``content`` holds the chosen FHIR
resources, their clinical record (keyed like ``record_content``) and the
versions the clinician decided on (``expected``: the site composition version
and each central ``Type/id`` version). The run writes with If-Match on both
sides, exactly those versions: if either side moved since the conflict was
captured to content other than the chosen one, the run opens a new Conflict
and writes nothing more. A side that already holds the chosen content is not
written (keep-site leaves the site alone, keep-central the centre).

The site is written first, as its own pass of the write step, then the centre;
both passes, the read-back and the acknowledgement commit together, so a run
commits three times like any other (claim, plan, after the writes). A failed
central write commits the site's pass first (the runner commits what finished
before a failure), so its retry resumes at the centre. A crash after the site
accepted the write but before that commit is recognised by the conflict check:
the site holds exactly the composition this run meant to write, and that
version is recorded as the engine's own (echo suppression) in the plan's commit.
"""
from __future__ import annotations

from dataclasses import dataclass

from django.utils import timezone

from sync.clients.errors import NotFound
from sync.identity import CENTRAL, site_source
from sync.models import RecordLink, Resolution, Step, SyncRun

from . import deletion, removal
from .born import with_central_identity
from .bundle import build_transaction, central_write_audit, written_entries
from .content import record_content, refs_of, resource_key
from .echoes import central_writes, recording
from .forward import read_current
from .payload import check_required
from .result import StepResult, ValidationFailed
from .shared import check_fhir, check_template_claim, open_conflict
from .template_check import check_composition_paths


def detect(ctx) -> StepResult:
    """Load the decision: the record, the chosen content and the versions it was decided on."""
    resolution = Resolution.objects.select_related("conflict__record_link__patient_link").get(pk=ctx.run.resolution_id)
    link = resolution.conflict.record_link
    content = resolution.content or {}
    if not isinstance(content.get("resources"), list) or not isinstance(content.get("expected"), dict):
        raise ValidationFailed("resolution content lacks resources or expected versions", rule="resolution.content", path="/")
    return StepResult(
        next_step=Step.VALIDATE_SOURCE,
        checkpoint={
            "resolution_id": resolution.pk,
            "choice": resolution.choice,
            "link_id": link.pk,
            "patient_link_id": link.patient_link_id,
            "ehr_id": link.patient_link.ehr_id,
            "vo_uid": link.versioned_object_uid,
            "template_id": link.template_id,
            "patient_ref": f"Patient/{link.patient_link.fhir_patient_id}",
            "resources": content["resources"],
            "site_composition": content.get("openehr_composition"),
            "expected": content["expected"],
            "source_hash": ctx.services.audit.payload_hash(content["resources"]),
        },
        audit={"detail": {"resolution_id": resolution.pk, "choice": resolution.choice}},
    )


def validate_source(ctx) -> StepResult:
    """The chosen resources are valid R4 (a merge can combine elements badly)."""
    for resource in ctx.checkpoint["resources"]:
        check_fhir(ctx.services.mapping, resource, what="chosen ")
    return StepResult(next_step=Step.TRANSFORM)


def transform(ctx) -> StepResult:
    """The composition the site gets: the site's own (keep-site) or one rebuilt from the chosen resources.

    Rebuilt on the site's composition without the entries the decision leaves out
    (a deletion kept); None when no clinical entry is left: the site's composition
    is deleted (or stays deleted). A composition deleted at the site is rebuilt
    from the chosen resources on its last version before the deletion (an edit
    kept over the deletion).
    """
    cp, services = ctx.checkpoint, ctx.services
    record = record_content(cp["resources"], services.mapping.clinical_content)
    if cp["site_composition"]:
        composition = {k: v for k, v in cp["site_composition"].items() if k != "uid"}
    elif removal.nothing_left(cp["resources"]):
        composition = None
    else:
        openehr = services.openehr(ctx.run.site)
        base = _site_content(openehr, cp["ehr_id"], cp["expected"]["openehr"])
        if base is None:  # deleted at the site: restored on the version before its deletion (its structure)
            live = [r for r in openehr.revision_history(cp["ehr_id"], cp["vo_uid"])
                    if (r.change_type or "") != "deleted"]
            base = _site_content(openehr, cp["ehr_id"], live[-1].version_uid) if live else None
        if base is not None:
            dropped = set(RecordLink.objects.get(pk=cp["link_id"]).base_content or {}) - set(record)
            base = removal.without_keys(base, sorted(dropped))
        composition = services.mapping.to_openehr(cp["resources"], template_id=cp["template_id"], base_composition=base)
    return StepResult(
        next_step=Step.VALIDATE_TARGET,
        checkpoint={"composition": composition, "record": record, "record_hash": services.audit.payload_hash(record)},
    )


def validate_target(ctx) -> StepResult:
    cp = ctx.checkpoint
    if cp["composition"] is None:
        return StepResult(next_step=Step.CHECK_CONFLICT)  # the site's composition is deleted: nothing to check
    claimed = check_template_claim(cp["composition"], cp["template_id"])
    site = ctx.run.site
    check_composition_paths(site, ctx.services.openehr(site), claimed or cp["template_id"], cp["composition"])
    check_required(cp["composition"])
    return StepResult(next_step=Step.CHECK_CONFLICT)


def check_conflict(ctx) -> StepResult:
    """Both sides still at the decided versions (or already holding the chosen content)?"""
    cp, services, site = ctx.checkpoint, ctx.services, ctx.run.site
    link = RecordLink.objects.get(pk=cp["link_id"])
    site_now = _site_now(services.openehr(site), cp["ehr_id"], cp["vo_uid"])
    central_now, versions = read_current(services.fhir, link.fhir_resources)
    site_record = _site_record(ctx, site_now.content) if site_now.content else {}
    # A resource marked entered-in-error centrally is not part of the record there.
    central_record = record_content([r for r in central_now if not deletion.is_retired(r)],
                                    services.mapping.clinical_content)
    expected_site = cp.get("site_written") or cp["expected"]["openehr"]
    expected_fhir = cp["expected"].get("fhir") or {}
    site_moved = site_now.version_uid != expected_site
    central_moved = any(
        _str(versions.get(r["key"])) != _str(expected_fhir.get(f"{r['type']}/{r['id']}")) for r in link.fhir_resources
    )
    ours_at_site = (site_now.content is None if cp["composition"] is None
                    else site_now.content is not None and _same(services, site_now.content, cp["composition"]))
    if (site_moved and site_record != cp["record"] and not ours_at_site) or (central_moved and central_record != cp["record"]):
        return _conflict(ctx, link, site_now, central_now, versions)
    site_plan = "noop" if site_record == cp["record"] or ours_at_site else "write"
    if cp["composition"] is None and site_now.content is not None:
        site_plan = "delete"
    central_plan = "noop" if central_record == cp["record"] else "write"
    central_expected = {r["key"]: {**r, "version": versions.get(r["key"]) or r["version"]} for r in link.fhir_resources}
    central_expected.update(deletion.gone_versions(services.fhir, link.fhir_resources, versions))
    # Our own write whose commit was lost (a crash after the site accepted it): the engine's version all the same.
    ours = site_moved and ours_at_site and not cp.get("site_written")
    return StepResult(
        next_step=Step.WRITE,
        outcome=f"site_{site_plan}_central_{central_plan}",
        effects=recording(site_source(site.name), [(cp["vo_uid"], site_now.version_uid)]) if ours else None,
        checkpoint={
            "site_plan": "done" if cp.get("site_written") else site_plan,
            "site_expected": site_now.version_uid,
            "central_plan": central_plan,
            "central_expected": central_expected,
        },
    )


def write(ctx) -> StepResult:
    """Site first (its own pass of this step), then the centre in one FHIR transaction; committed together."""
    cp, services, site = ctx.checkpoint, ctx.services, ctx.run.site
    if cp["site_plan"] == "delete":
        openehr = services.openehr(site)
        openehr.delete_composition(cp["ehr_id"], cp["site_expected"])
        ref = openehr.revision_history(cp["ehr_id"], cp["vo_uid"])[-1]
        return StepResult(
            next_step=Step.WRITE, outcome="site_deleted",
            effects=recording(site_source(site.name), [(cp["vo_uid"], ref.version_uid)]),
            checkpoint={"site_plan": "done", "site_written": ref.version_uid},
            audit={"destination": site_source(site.name), "destination_object": cp["vo_uid"],
                   "destination_version": ref.version_uid, "detail": {"deleted": True}},
        )
    if cp["site_plan"] == "write":
        ref = services.openehr(site).update_composition(cp["ehr_id"], cp["site_expected"], cp["composition"])
        return StepResult(
            next_step=Step.WRITE,
            outcome="site_written",
            effects=recording(site_source(site.name), [(cp["vo_uid"], ref.version_uid)]),
            checkpoint={"site_plan": "done", "site_written": ref.version_uid},
            audit={"destination": site_source(site.name), "destination_object": cp["vo_uid"],
                   "destination_version": ref.version_uid, "written_hash": services.audit.payload_hash(cp["composition"])},
        )
    site_version = cp.get("site_written") or cp["site_expected"]
    if cp["central_plan"] != "write":
        written = list(cp["central_expected"].values())
        return StepResult(next_step=Step.AUDIT, outcome="central_noop", checkpoint={"written": written, "site_version": site_version})
    provenance = services.mapping.build_provenance(cp["resources"], site.name, cp["ehr_id"], site_version)
    kept = {resource_key(r) for r in cp["resources"]}
    expected = cp["central_expected"]
    bundle, keys = build_transaction(cp["resources"], provenance, {k: v for k, v in expected.items() if k in kept},
                                     site_version)
    # What the decision leaves out is marked entered-in-error (a deletion kept), never deleted.
    retire, retire_keys = deletion.retire_entries(services.fhir, {k: v for k, v in expected.items() if k not in kept})
    first_retired = len(keys)
    if retire:
        targets = [e["request"]["url"] for e in retire]
        # A site deletion kept: who deleted the composition there and when, from the site's audit of it.
        site_audit = next((r for r in services.openehr(site).revision_history(cp["ehr_id"], cp["vo_uid"])
                           if r.version_uid == site_version and (r.change_type or "") == "deleted"), None)
        retired_by = deletion.deletion_provenance(provenance, targets, site_version, site_audit=site_audit,
                                                  site=site.name)
        bundle["entry"] += [*retire, deletion.provenance_entry(retired_by)]
        keys += [None] * (len(retire) + 1)
    answer = services.fhir.transaction(bundle)
    written = written_entries(keys, answer)
    retired = [{"key": key, "type": e.resource_type, "id": e.id, "version": e.version_id}
               for key, e in zip(retire_keys, answer.entries[first_retired:])]
    audit = central_write_audit(services.audit, written, cp["resources"], bundle)
    if retired:
        audit["detail"]["entered_in_error"] = refs_of(retired)
    return StepResult(
        next_step=Step.AUDIT,
        effects=recording(CENTRAL, central_writes(written + retired)),
        checkpoint={"written": written, "site_version": site_version},
        audit=audit,
    )


def audit(ctx) -> StepResult:
    """Read both sides back and hash what they hold now."""
    cp, services = ctx.checkpoint, ctx.services
    site_now = _site_content(services.openehr(ctx.run.site), cp["ehr_id"], cp["site_version"])
    central = services.fhir.vread_many([(w["type"], w["id"], w["version"]) for w in cp["written"]])
    same = record_content(central, services.mapping.clinical_content) == cp["record"]
    readback_hash = services.audit.payload_hash({"site": site_now, "central": central})
    return StepResult(
        next_step=Step.ACKNOWLEDGE,
        outcome="ok" if same else "readback_differs",
        checkpoint={"readback_hash": readback_hash},
        audit={
            "destination": f"{site_source(ctx.run.site.name)},{CENTRAL}",
            "destination_version": ",".join([cp["site_version"], *(str(w["version"]) for w in cp["written"])])[:200],
            "source_hash": cp["source_hash"],
            "readback_hash": readback_hash,
            "detail": {"resolution_id": cp["resolution_id"]},
        },
    )


def acknowledge(ctx) -> StepResult:
    """The chosen content is the new base, at the versions both sides now hold."""
    cp = ctx.checkpoint

    def effects(run):
        RecordLink.objects.filter(pk=cp["link_id"]).update(
            openehr_version_uid=cp["site_version"],
            fhir_resources=cp["written"],
            canonical_hash=cp["record_hash"],
            base_content=cp["record"],
            deleted=cp["composition"] is None,
            last_synced_at=timezone.now(),
        )

    return StepResult(terminal=SyncRun.Status.DONE, effects=effects, audit={"detail": {"resolution_id": cp["resolution_id"]}})


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


def _site_content(openehr, ehr_id: str, uid: str) -> dict | None:
    """A site composition version's content; None for a deletion (EHRbase answers 204)."""
    try:
        return openehr.get_composition(ehr_id, uid).content
    except NotFound:
        return None


def _site_now(openehr, ehr_id: str, vo_uid: str):
    """The site's composition now; a deleted one: its deletion version, no content."""
    try:
        now = openehr.get_composition(ehr_id, vo_uid)
    except NotFound:
        return SiteNow(openehr.revision_history(ehr_id, vo_uid)[-1].version_uid, None)
    return SiteNow(now.ref.version_uid, now.content)


@dataclass(frozen=True)
class SiteNow:
    version_uid: str
    content: dict | None  # None: deleted at the site


def _site_record(ctx, composition: dict) -> dict:
    cp, mapping = ctx.checkpoint, ctx.services.mapping
    mapped = mapping.to_fhir(composition, site=ctx.run.site.name, ehr_id=cp["ehr_id"], patient_ref=cp["patient_ref"])
    return record_content(with_central_identity(composition, mapped.resources), mapping.clinical_content)


def _same(services, composition: dict, meant: dict) -> bool:
    """The site holds exactly the composition this run meant to write (a write whose checkpoint was lost)."""
    strip = lambda c: {k: v for k, v in c.items() if k not in ("uid", "_vo")}  # noqa: E731
    try:
        return services.mapping.clinical_content(strip(composition)) == services.mapping.clinical_content(strip(meant))
    except Exception:  # a normaliser that cannot read one side: not provably ours
        return False


def _str(value) -> str | None:
    return None if value is None else str(value)


def _conflict(ctx, link, site_now, central_now, versions) -> StepResult:
    """A side moved since the decision: a new conflict with both sides as they are now."""
    previous = Resolution.objects.select_related("conflict").get(pk=ctx.checkpoint["resolution_id"]).conflict

    def effects(run):
        open_conflict(
            run, link,
            kind=previous.kind,
            resource_type=(central_now[0]["resourceType"] if central_now else previous.resource_type),
            openehr_version_uid=site_now.version_uid,
            openehr_composition=site_now.content or {},
            deleted_on=previous.deleted_on,
            fhir_versions=[{**r, "version": versions.get(r["key"])} for r in link.fhir_resources],
            fhir_resources=central_now,
        )

    return StepResult(
        terminal=SyncRun.Status.CONFLICT,
        outcome="conflict",
        effects=effects,
        audit={"detail": {"resolution_id": ctx.checkpoint["resolution_id"], "previous_conflict_id": previous.pk}},
    )
