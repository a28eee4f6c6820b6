"""Steps of a resolution run: a clinician's chosen content, written to the site and centrally.

The desk stores a Resolution whose ``content`` holds the chosen FHIR
resources, their clinical record (keyed like ``record_content``) and the
versions the clinician decided on (``expected``: the site composition version
and each central ``Type/id`` version). The run writes with If-Match on both
sides, exactly those versions: if either side moved since the conflict was
captured to content other than the chosen one, the run opens a new Conflict
and writes nothing more. A side that already holds the chosen content is not
written (keep-site leaves the site alone, keep-central the centre).

The site is written first, as its own pass of the write step (the checkpoint
records it), then the centre; a crash between the two resumes at the centre.
A crash after the site accepted the write but before the checkpoint committed
is recognised by the site holding exactly the composition this run meant to
write.
"""
from __future__ import annotations

from django.utils import timezone

from sync.identity import CENTRAL, site_source
from sync.models import RecordLink, Resolution, Step, SyncRun

from .bundle import build_transaction, central_write_audit, written_entries
from .content import record_content
from .echoes import central_writes, recording
from .forward import read_current
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
    """The composition the site gets: the site's own (keep-site) or one rebuilt from the chosen resources."""
    cp, services = ctx.checkpoint, ctx.services
    if cp["site_composition"]:
        composition = {k: v for k, v in cp["site_composition"].items() if k != "uid"}
    else:
        base = services.openehr(ctx.run.site).get_composition(cp["ehr_id"], cp["expected"]["openehr"]).content
        composition = services.mapping.to_openehr(cp["resources"], template_id=cp["template_id"], base_composition=base)
    record = record_content(cp["resources"], services.mapping.clinical_content)
    return StepResult(
        next_step=Step.VALIDATE_TARGET,
        checkpoint={"composition": composition, "record": record, "record_hash": services.audit.payload_hash(record)},
    )


def validate_target(ctx) -> StepResult:
    cp = ctx.checkpoint
    claimed = check_template_claim(cp["composition"], cp["template_id"])
    site = ctx.run.site
    check_composition_paths(site, ctx.services.openehr(site), claimed or cp["template_id"], cp["composition"])
    return StepResult(next_step=Step.CHECK_CONFLICT)


def check_conflict(ctx) -> StepResult:
    """Both sides still at the decided versions (or already holding the chosen content)?"""
    cp, services, site = ctx.checkpoint, ctx.services, ctx.run.site
    link = RecordLink.objects.get(pk=cp["link_id"])
    site_now = services.openehr(site).get_composition(cp["ehr_id"], cp["vo_uid"])
    central_now, versions = read_current(services.fhir, link.fhir_resources)
    site_record = _site_record(ctx, site_now.content)
    central_record = record_content(central_now, services.mapping.clinical_content)
    expected_site = cp.get("site_written") or cp["expected"]["openehr"]
    expected_fhir = cp["expected"].get("fhir") or {}
    site_moved = site_now.ref.version_uid != expected_site
    central_moved = any(
        _str(versions.get(r["key"])) != _str(expected_fhir.get(f"{r['type']}/{r['id']}")) for r in link.fhir_resources
    )
    ours_at_site = _same(services, site_now.content, cp["composition"])
    if (site_moved and site_record != cp["record"] and not ours_at_site) or (central_moved and central_record != cp["record"]):
        return _conflict(ctx, link, site_now, central_now, versions)
    site_plan = "noop" if site_record == cp["record"] or ours_at_site else "write"
    central_plan = "noop" if central_record == cp["record"] else "write"
    central_expected = {r["key"]: {**r, "version": versions.get(r["key"]) or r["version"]} for r in link.fhir_resources}
    return StepResult(
        next_step=Step.WRITE,
        outcome=f"site_{site_plan}_central_{central_plan}",
        checkpoint={
            "site_plan": "done" if cp.get("site_written") else site_plan,
            "site_expected": site_now.ref.version_uid,
            "central_plan": central_plan,
            "central_expected": central_expected,
        },
    )


def write(ctx) -> StepResult:
    """Site first (its own pass, checkpointed), then the centre in one FHIR transaction."""
    cp, services, site = ctx.checkpoint, ctx.services, ctx.run.site
    if cp["site_plan"] == "write":
        ref = services.openehr(site).update_composition(cp["ehr_id"], cp["site_expected"], cp["composition"])

        return StepResult(
            next_step=Step.WRITE,
            commit=True,  # the site's write is checkpointed before the centre's
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
    bundle, keys = build_transaction(cp["resources"], provenance, cp["central_expected"], site_version)
    written = written_entries(keys, services.fhir.transaction(bundle))
    return StepResult(
        next_step=Step.AUDIT,
        effects=recording(CENTRAL, central_writes(written)),
        checkpoint={"written": written, "site_version": site_version},
        audit=central_write_audit(services.audit, written, cp["resources"], bundle),
    )


def audit(ctx) -> StepResult:
    """Read both sides back and hash what they hold now."""
    cp, services = ctx.checkpoint, ctx.services
    site_now = services.openehr(ctx.run.site).get_composition(cp["ehr_id"], cp["site_version"]).content
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


def _site_record(ctx, composition: dict) -> dict:
    cp, mapping = ctx.checkpoint, ctx.services.mapping
    mapped = mapping.to_fhir(composition, site=ctx.run.site.name, ehr_id=cp["ehr_id"], patient_ref=cp["patient_ref"])
    return record_content(mapped.resources, mapping.clinical_content)


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
            openehr_version_uid=site_now.ref.version_uid,
            openehr_composition=site_now.content,
            fhir_versions=[{**r, "version": versions.get(r["key"])} for r in link.fhir_resources],
            fhir_resources=central_now,
        )

    return StepResult(
        terminal=SyncRun.Status.CONFLICT,
        outcome="conflict",
        effects=effects,
        audit={"detail": {"resolution_id": ctx.checkpoint["resolution_id"], "previous_conflict_id": previous.pk}},
    )
