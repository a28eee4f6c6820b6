"""Steps of a central -> site run: one central resource version -> a composition at each site.

A resource that belongs to a RecordLink rebuilds that record's composition
(all its current resources, on top of the site's current composition) and
commits it as a new version with If-Match. A resource born centrally goes to
every site where its Patient has an EHR, as a new composition whose uid the
engine derives from the resource, so a retried create finds the first one
(EHRbase refuses a second composition with the same uid) instead of making a
twin. Targets live in the checkpoint; each step handles all of them.
"""
from __future__ import annotations

import re
from datetime import datetime

from django.utils import timezone

from sync.clients.errors import InvalidRequest, NotFound, PreconditionFailed
from sync.identity import BACKFILL_PREFIX, CENTRAL, composition_uid_for, site_source
from sync.mapping.from_fhir import PART_ONLY
from sync.models import Conflict, PatientLink, RecordLink, Site, Step, SyncRun
from sync.patients.routing import links_for, newly_linked, still_routed

from . import commits, guard, removal
from .born import with_central_identity
from .central_author import central_change
from .content import record_content, refs_of, resource_key
from .echoes import central_writes, is_own_write, recording
from .payload import check_required, check_storable, pure_transform, well_formed
from .result import StepResult, ValidationFailed
from .shared import check_fhir, open_conflict, template_id
from .template_check import allowed_paths, check_composition_paths, template_root


_ARCHETYPE_ID = re.compile(r"openEHR-EHR-[A-Z_]+\.[A-Za-z0-9_-]+\.v\d+")


def detect(ctx) -> StepResult:
    """Read the central version (unless it is our echo) and find the sites it goes to."""
    event = ctx.event
    rtype, rid = event.source_object_id.split("/", 1)
    backfill = event.source.startswith(BACKFILL_PREFIX)  # an existing version for a late link: even our own
    if not backfill and is_own_write(CENTRAL, event.source_object_id, event.source_version):
        return StepResult(terminal=SyncRun.Status.DONE, event_status="echo", outcome="echo")
    with well_formed("resource"):
        resource, removed = removal.removed_resource(ctx.services.fhir, event)
    if resource is not None:
        check_storable(resource)
    links = list(RecordLink.objects.filter(fhir_resources__contains=[{"type": rtype, "id": rid}], deleted=False))
    if not removed:  # a registration split from the golden record keeps its copy, gets no later version
        links = still_routed(ctx.services.fhir, _subject_id(resource), links)
    if removed:  # deleted or entered-in-error centrally: out of the records it is in, nowhere else
        targets = [_linked_target(link) for link in links]
    elif links:
        targets = [_linked_target(link) for link in links]
        if rtype not in PART_ONLY and not plan_of(resource) and not report_of(ctx.services.fhir, resource):
            # a record's head: also the sites linked since
            held = {link.patient_link_id for link in links}
            targets += [_new_target(pl, event.source_object_id)
                        for pl in newly_linked(ctx.services.fhir, _subject_id(resource), held)]
    elif rtype in PART_ONLY:
        targets = []  # a Specimen is part of a lab result, no record of its own: only a synced record's goes back
    elif plan_of(resource):
        targets = []  # a request made for a care plan goes to the sites with its plan (transform), not alone
    elif report_of(ctx.services.fhir, resource):
        targets = []  # a lab report's result goes to the sites with its report (transform), not alone
    else:
        targets = [_new_target(pl, event.source_object_id) for pl in links_for(ctx.services.fhir, _subject_id(resource))]
    source_hash = ctx.services.audit.payload_hash(resource if resource is not None else removed)
    return StepResult(
        next_step=Step.VALIDATE_SOURCE,
        checkpoint={"source_payload": resource, "removed": removed or None, "targets": targets,
                    "source_hash": source_hash},
        audit={"source_hash": source_hash,
               "detail": {"targets": len(targets), **({"removal": event.change_type} if removed else {})}},
    )


def validate_source(ctx) -> StepResult:
    if ctx.checkpoint["source_payload"] is not None:  # a deleted version has no body to validate
        check_fhir(ctx.services.mapping, ctx.checkpoint["source_payload"], name_type=False)
    return StepResult(next_step=Step.TRANSFORM)


def transform(ctx) -> StepResult:
    """Rebuild each target's composition from the record's resources as they are now."""
    cp, services = ctx.checkpoint, ctx.services
    source, removed = cp["source_payload"], cp.get("removed")
    targets, checks = [], []
    for target in cp["targets"]:
        site = _site(ctx, target["site_id"])
        openehr = services.openehr(site)
        if removed:  # the record without the removed resource, on the site's composition without its entry
            resources = removal.remaining(_record_resources(services.fhir, target["resources"], removed), removed)
            base = _composition_or_none(openehr, target)
            if base is None or removal.nothing_left(resources):
                targets.append({**target, "composition": None, "delete": True, "record": _refs(resources),
                                "content": record_content(resources, services.mapping.clinical_content)})
                continue
            base = removal.without_entry(base, removed)
        elif target["vo_uid"]:
            resources = _record_resources(services.fhir, target["resources"], source)
            resources += _new_members(services.fhir, source, resources)  # a result added to the report since
            target = {**target, "absorbs": _standalone_results(site, target, source, resources)}
            base = _composition_or_none(openehr, target)
            if base is None:  # deleted at the site meanwhile: the conflict check makes it a conflict
                targets.append({**target, "composition": None, "record": _refs(resources),
                                "content": record_content(resources, services.mapping.clinical_content)})
                continue
        else:
            resources = [source, *_plan_members(services.fhir, source), *_report_members(services.fhir, source)]
            base = None
            target = {**target, "absorbs": _standalone_results(site, target, source, resources)}
        with pure_transform("mapping.to_openehr"):
            out = guard.map_reverse(services.mapping, resources, template_id=target["template_id"], base_composition=base,
                                    archetypes=_archetypes(site, openehr, target["template_id"], resources),
                                    root=template_root(site, openehr, target["template_id"]))
        checks.append(guard.check_reverse_target(services.mapping, site, resources, out))
        composition = out.composition
        if removed:
            composition = {**composition,
                           "feeder_audit": removal.feeder_audit(ctx.event.source_object_id, ctx.event.source_version)}
        content = record_content(resources, services.mapping.clinical_content)
        targets.append({**target, "composition": composition, "content": content, "record": _refs(resources)})
    guarded = guard.enforce(checks)  # before any write; may stop the run

    def effects(run):
        run.losses = guarded.losses
        commits.buffer_guard(run, guarded)

    return StepResult(next_step=Step.VALIDATE_TARGET, effects=effects, checkpoint={"targets": targets, **guarded.checkpoint})


def validate_target(ctx) -> StepResult:
    """The composition claims the target's template, every node it has, that template has, and it holds what the RM
    requires (an event's time)."""
    for target in ctx.checkpoint["targets"]:
        site = _site(ctx, target["site_id"])
        if target["composition"] is None:
            continue  # a deletion: nothing to check
        if template_id(target["composition"]) != target["template_id"]:
            raise ValidationFailed("composition names another template", rule="composition.template", path="/archetype_details/template_id")
        check_composition_paths(site, ctx.services.openehr(site), target["template_id"], target["composition"])
        check_required(target["composition"])
    return StepResult(next_step=Step.CHECK_CONFLICT)


def check_conflict(ctx) -> StepResult:
    """Per linked site: base vs the site's composition now vs the new central content."""
    targets = []
    for target in ctx.checkpoint["targets"]:
        if not target["vo_uid"]:
            targets.append({**target, "plan": "write", **_unedited(ctx, target)})
            continue
        link = RecordLink.objects.get(pk=target["link_id"])
        site = _site(ctx, target["site_id"])
        now = _composition_or_none(ctx.services.openehr(site), target, whole=True)
        if now is None and target.get("delete"):  # deleted at the site too: both sides agree
            targets.append({**target, "plan": "noop", "expected": link.openehr_version_uid})
            continue
        if now is None:
            return _deleted_at_site(ctx, link, target)
        plan = "write"
        if now.ref.version_uid != link.openehr_version_uid:
            patient_ref = f"Patient/{link.patient_link.fhir_patient_id}"
            mapped = ctx.services.mapping.to_fhir(now.content, site=site.name, ehr_id=target["ehr_id"], patient_ref=patient_ref)
            site_content = record_content(with_central_identity(now.content, mapped.resources),  # keyed as the centre's
                                          ctx.services.mapping.clinical_content)
            if site_content == target["content"]:
                plan = "adopt"
            elif target["content"] == link.base_content:
                plan = "noop"
            elif site_content != link.base_content:
                removed = ctx.checkpoint.get("removed")
                changed = ctx.checkpoint["source_payload"] or removed
                central = _record_resources(ctx.services.fhir, target["resources"], changed)
                return _conflict(ctx, link, now, target, removal.remaining(central, removed) if removed else central)
        elif target["content"] == link.base_content and not target.get("delete"):
            plan = "noop"  # the centre holds what was synced (a plan's order, created with it, read after it)
        targets.append({**target, "plan": plan, "expected": now.ref.version_uid, **_unedited(ctx, target)})
    return StepResult(next_step=Step.WRITE, checkpoint={"targets": targets})


def write(ctx) -> StepResult:
    """Commit at each site; EngineWrite rows make the echo recognisable."""
    targets = []
    for target in ctx.checkpoint["targets"]:
        site = _site(ctx, target["site_id"])
        openehr = ctx.services.openehr(site)
        if target["plan"] != "write":
            targets.append({**target, "written": target["expected"]})
            continue
        if target.get("delete"):
            openehr.delete_composition(target["ehr_id"], target["expected"])
            deleted = openehr.revision_history(target["ehr_id"], target["vo_uid"])[-1]
            retired = removal.retire_leftovers(ctx.services.fhir, ctx.services.mapping, target["record"], site=site.name,
                                               ehr_id=target["ehr_id"], deleted_version=deleted.version_uid)
            # No FEEDER_AUDIT on a DELETE (EHRbase takes no body): the site's own audit of it goes in ours.
            site_audit = {"version_uid": deleted.version_uid, "change_type": deleted.change_type,
                          "time_committed": deleted.committed_at, "committer": getattr(deleted, "committer", None),
                          "system_id": getattr(deleted, "system_id", None)}
            targets.append({**target, "written": deleted.version_uid, "retired": retired, "site_audit": site_audit})
            continue
        if target["vo_uid"]:
            ref = openehr.update_composition(target["ehr_id"], target["expected"], target["composition"])
        else:
            ref = _create_once(openehr, target)
        absorbed = [{**a, "deleted": _delete_once(openehr, target["ehr_id"], a)} for a in target.get("absorbs", [])]
        targets.append({**target, "written": ref.version_uid, "vo_uid": ref.uid, "absorbed": absorbed})

    def effects(run):
        for t in targets:
            source = site_source(_site(ctx, t["site_id"]).name)
            recording(source, [(t["vo_uid"], t["written"])])(run)
            recording(source, [(a["vo_uid"], a["deleted"]) for a in t.get("absorbed", [])])(run)  # echoes too
            recording(CENTRAL, central_writes(t.get("retired", [])))(run)  # the leftovers retired: echoes

    deleted = [t for t in targets if t.get("delete") and t["plan"] == "write"]
    audit = {"destination": ",".join(sorted({site_source(_site(ctx, t["site_id"]).name) for t in deleted}))[:120],
             "destination_version": ",".join(t["written"] for t in deleted)[:200],
             "detail": {"deleted": [t["vo_uid"] for t in deleted],
                        "site_audit": [t["site_audit"] for t in deleted if t.get("site_audit")],
                        "entered_in_error": refs_of([r for t in deleted for r in t.get("retired", [])])}} if deleted else {}
    absorbed = [a["vo_uid"] for t in targets for a in t.get("absorbed", [])]
    kept = [a["vo_uid"] for t in targets for a in t.get("kept", [])]
    if absorbed or kept:  # a report's results that were records of their own: now in the report's record
        audit = {**audit, "detail": {**audit.get("detail", {}), "absorbed": absorbed, "kept_edited_at_site": kept}}
    return StepResult(next_step=Step.AUDIT, effects=effects, checkpoint={"targets": targets}, audit=audit)


def audit(ctx) -> StepResult:
    hashes = []
    for target in ctx.checkpoint["targets"]:
        openehr = ctx.services.openehr(_site(ctx, target["site_id"]))
        if target.get("delete"):  # a deletion version has no content: its revision is the read-back
            last = openehr.revision_history(target["ehr_id"], target["vo_uid"])[-1]
            hashes.append(ctx.services.audit.payload_hash({"version_uid": last.version_uid,
                                                           "change_type": last.change_type}))
            continue
        hashes.append(ctx.services.audit.payload_hash(openehr.get_composition(target["ehr_id"], target["written"]).content))
    payload_hash = ctx.services.audit.payload_hash
    return StepResult(
        next_step=Step.ACKNOWLEDGE,
        checkpoint={"readback_hash": payload_hash(hashes)},
        audit={
            "destination": ",".join(sorted({f"site:{t['site_id']}" for t in ctx.checkpoint["targets"]}))[:120],
            "destination_version": ",".join(t["written"] for t in ctx.checkpoint["targets"])[:200],
            "source_hash": ctx.checkpoint["source_hash"],
            "written_hash": payload_hash([t["composition"] for t in ctx.checkpoint["targets"]]),
            "readback_hash": payload_hash(hashes),
        },
    )


def acknowledge(ctx) -> StepResult:
    targets = ctx.checkpoint["targets"]

    def effects(run):
        for t in targets:
            RecordLink.objects.update_or_create(
                site_id=t["site_id"],
                versioned_object_uid=t["vo_uid"],
                defaults={
                    "patient_link_id": t["patient_link_id"],
                    "template_id": t["template_id"],
                    "openehr_version_uid": t["written"],
                    "fhir_resources": t["record"],
                    "canonical_hash": ctx.services.audit.payload_hash(t["content"]),
                    "base_content": t["content"],
                    "deleted": bool(t.get("delete")),
                    "last_synced_at": timezone.now(),
                },
            )
            for a in t.get("absorbed", []):  # its composition deleted: later versions go to the report's record
                RecordLink.objects.filter(pk=a["link_id"]).update(
                    deleted=True, openehr_version_uid=a["deleted"], last_synced_at=timezone.now())

    return StepResult(terminal=SyncRun.Status.DONE, effects=effects)


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


def _site(ctx, site_id: int) -> Site:
    """A target's site, read once per pass."""
    sites = ctx.memory.values.setdefault("sites", {})
    if site_id not in sites:
        sites[site_id] = Site.objects.get(pk=site_id)
    return sites[site_id]


def _composition_or_none(openehr, target: dict, *, whole: bool = False):
    """The site's composition now (its content, or ``whole``: with its version), None if deleted there."""
    try:
        now = openehr.get_composition(target["ehr_id"], target["vo_uid"])
    except NotFound:
        return None
    return now if whole else now.content


def _archetypes(site: Site, openehr, template_id: str, resources: list[dict]) -> frozenset[str] | None:
    """The archetypes the site's template holds (from its web template, as validate_target checks) when the
    record has a part-only resource: the mapping keeps one with no node there (a specimen, no
    CLUSTER.specimen) in the feeder audit instead.  None (the mapping's default) otherwise."""
    if not any(r.get("resourceType") in PART_ONLY for r in resources):
        return None
    return frozenset(m.group(0) for path in allowed_paths(site, openehr, template_id)
                     for m in _ARCHETYPE_ID.finditer(path))


def _subject_id(resource: dict) -> str:
    """The id of the Patient the resource is about ("" when it names none)."""
    subject = resource.get("subject") or resource.get("patient")
    reference = subject.get("reference") if isinstance(subject, dict) else None
    return reference.split("/")[-1] if isinstance(reference, str) else ""


def _linked_target(link: RecordLink) -> dict:
    return {
        "site_id": link.site_id,
        "link_id": link.pk,
        "patient_link_id": link.patient_link_id,
        "ehr_id": link.patient_link.ehr_id,
        "vo_uid": link.versioned_object_uid,
        "template_id": link.template_id,
        "resources": link.fhir_resources,
    }


def _new_target(patient_link: PatientLink, resource_ref: str) -> dict:
    templates = patient_link.site.template_ids
    if not templates:
        raise ValidationFailed("the site accepts no template for central writes", rule="site.template_ids", path=patient_link.site.name)
    return {
        "site_id": patient_link.site_id,
        "link_id": None,
        "patient_link_id": patient_link.pk,
        "ehr_id": patient_link.ehr_id,
        "vo_uid": "",
        "new_uid": composition_uid_for(resource_ref, patient_link.site.name),
        "template_id": templates[0],
        "resources": [],
    }


def _record_resources(fhir, link_resources: list[dict], changed: dict) -> list[dict]:
    """The record's resources now, with the changed one at the version being synced."""
    out = []
    for r in link_resources:
        if (r["type"], r["id"]) == (changed["resourceType"], changed["id"]):
            out.append(changed)
        else:
            try:
                out.append(fhir.read(r["type"], r["id"]))
            except NotFound:
                continue
    return out


def plan_of(resource: dict) -> str | None:
    """The CarePlan a request is based on (``basedOn``: "a plan ... fulfilled in whole or in part by this
    request"), if any: such a request is one of the plan's activities and travels with the plan."""
    for ref in resource.get("basedOn") or []:
        reference = ref.get("reference") if isinstance(ref, dict) else None
        if isinstance(reference, str) and reference.startswith("CarePlan/"):
            return reference
    return None


def _plan_members(fhir, source: dict) -> list[dict]:
    """A new central CarePlan's activities (MedicationRequest, ServiceRequest...) and goals as they are
    now, in the plan's order: the site records a plan together with what it plans (the mapping's
    care plan row), so they are one composition.  A member that is gone is left out."""
    if source.get("resourceType") != "CarePlan":
        return []
    refs = [a["reference"].get("reference") for a in source.get("activity") or []
            if isinstance(a, dict) and isinstance(a.get("reference"), dict)]
    refs += [g.get("reference") for g in source.get("goal") or [] if isinstance(g, dict)]
    return _read_all(fhir, refs)


def report_of(fhir, resource: dict) -> str | None:
    """The DiagnosticReport an Observation is a result of (``DiagnosticReport.result``: "Observations that
    are part of this diagnostic report"), if any: such a result travels with its report, one record."""
    if resource.get("resourceType") != "Observation" or not resource.get("id"):
        return None
    found = next(fhir.search("DiagnosticReport", {"result": f"Observation/{resource['id']}", "_count": "1"}), None)
    return f"DiagnosticReport/{found['id']}" if found else None


def _report_members(fhir, source: dict) -> list[dict]:
    """A new central DiagnosticReport's results as they are now, in the report's order, then the Specimens
    the report or its results name: a lab report is one entry at the site (the mapping's laboratory row),
    results and specimen inside it, and its feeder audit names each, so a site edit gives each its central
    id back (``born.with_central_identity``).  A member that is gone is left out."""
    if source.get("resourceType") != "DiagnosticReport":
        return []
    results = _read_all(fhir, [r.get("reference") for r in source.get("result") or [] if isinstance(r, dict)])
    specimens = [s.get("reference") for r in [source, *results] for s in _as_list(r.get("specimen"))
                 if isinstance(s, dict)]
    return results + _read_all(fhir, list(dict.fromkeys(specimens)))


def _standalone_results(site: Site, target: dict, source: dict, resources: list[dict]) -> list[dict]:
    """The records of their own a new central report's results already have at the target's site: an
    Observation posted centrally before the report that names it went to the site alone (``report_of`` found no
    report yet).  Such a record is absorbed (``write``): the report's composition holds the result, and the
    stand-alone composition is deleted, so the site holds each result once, in its report, as the lab sent it.
    Only a record the engine created for that Observation alone (its composition uid is the one
    ``composition_uid_for`` gives it) and holding nothing but the report's members: a site's own record,
    or one holding anything else, is never taken."""
    if source.get("resourceType") != "DiagnosticReport":
        return []
    members = {(r["resourceType"], r["id"]) for r in resources}
    out: dict[int, dict] = {}
    for r in resources:
        if r["resourceType"] != "Observation":
            continue
        for link in RecordLink.objects.filter(site_id=target["site_id"], patient_link_id=target["patient_link_id"],
                                              deleted=False,
                                              fhir_resources__contains=[{"type": "Observation", "id": r["id"]}]):
            own = link.versioned_object_uid == composition_uid_for(f"Observation/{r['id']}", site.name)
            if own and all((x["type"], x["id"]) in members for x in link.fhir_resources):
                out[link.pk] = {"link_id": link.pk, "vo_uid": link.versioned_object_uid,
                                "expected": link.openehr_version_uid}
    return list(out.values())


def _unedited(ctx, target: dict) -> dict:
    """The records to absorb split by what the site did with them since they were written: one still as
    written is absorbed; one edited at the site is kept as the site's record (an edit at the site is never
    thrown away: it comes to the centre as any site edit does), one deleted there is left alone."""
    absorbs, kept = [], []
    for a in target.get("absorbs", []):
        now = _composition_or_none(ctx.services.openehr(_site(ctx, target["site_id"])),
                                   {**target, "vo_uid": a["vo_uid"]}, whole=True)
        if now is None:
            continue
        (absorbs if now.ref.version_uid == a["expected"] else kept).append(a)
    return {"absorbs": absorbs, "kept": kept}


def _delete_once(openehr, ehr_id: str, absorbed: dict) -> str:
    """Delete an absorbed composition with If-Match; a retry that finds it deleted after that version takes
    that deletion.  The deletion's version uid."""
    try:
        openehr.delete_composition(ehr_id, absorbed["expected"])
    except PreconditionFailed:
        pass
    history = openehr.revision_history(ehr_id, absorbed["vo_uid"])
    last, before = history[-1], [h.version_uid for h in history[:-1]]
    if (last.change_type or "").lower() != "deleted" or not before or before[-1] != absorbed["expected"]:
        raise PreconditionFailed(method="DELETE", path=f"/composition/{absorbed['vo_uid']}", status=412)
    return last.version_uid


def _new_members(fhir, source: dict, held: list[dict]) -> list[dict]:
    """The members of a linked plan or report (the changed ``source``) its record does not hold yet: a result
    added to a central report after it was synced (or an activity to a plan) joins the report's record; alone
    it goes to no site (``report_of``), so without this it would never arrive."""
    have = {(r.get("resourceType"), r.get("id")) for r in held}
    members = [*_plan_members(fhir, source), *_report_members(fhir, source)]
    return [m for m in members if (m.get("resourceType"), m.get("id")) not in have]


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value] if value else []


def _read_all(fhir, refs: list) -> list[dict]:
    """The resources of ``Type/id`` references, as they are now; gone or non-local ones left out."""
    out = []
    for ref in refs:
        if not isinstance(ref, str) or ref.count("/") != 1:
            continue
        try:
            out.append(fhir.read(*ref.split("/")))
        except NotFound:
            continue
    return out


def _refs(resources: list[dict]) -> list[dict]:
    return [
        {"key": resource_key(r), "type": r["resourceType"], "id": r["id"], "version": r["meta"]["versionId"]}
        for r in resources
    ]


def _create_once(openehr, target):
    """Create under the engine-chosen uid; if a retry finds it already there, that one is ours."""
    system_id = openehr.get_ehr(target["ehr_id"]).system_id
    version_uid = f"{target['new_uid']}::{system_id}::1"
    composition = {**target["composition"], "uid": {"_type": "OBJECT_VERSION_ID", "value": version_uid}}
    try:
        return openehr.create_composition(target["ehr_id"], composition)
    except InvalidRequest as exc:
        if "already exists" not in str(exc.detail):
            raise
        return openehr.get_composition(target["ehr_id"], version_uid).ref


def _conflict(ctx, link, now, target, central) -> StepResult:
    removed = ctx.checkpoint.get("removed")
    fhir_versions = target["record"]
    # Each side's who and when, as the desk shows them ("Dr. X at central, 10:42"): the site's commit of
    # the composition now, the centre's change from its meta and Provenance (``central_author``).
    revisions = ctx.services.openehr(_site(ctx, target["site_id"])).revision_history(target["ehr_id"], target["vo_uid"])
    sides = {"openehr_changed_at": next((_committed(r) for r in reversed(revisions)
                                         if r.version_uid == now.ref.version_uid), None)}
    if not removed:
        sides |= central_change(ctx.services.fhir, ctx.checkpoint["source_payload"])
    else:  # deleted (or entered-in-error) centrally while the site edited: "deleted at X / changed at Y"
        sides = {"deleted_on": Conflict.Deleted.CENTRAL, "fhir_changed_at": ctx.event.committed_at,
                 "openehr_changed_at": _committed(revisions[-1])}
        # The whole record at the versions now, the removed resource at its deletion (None) or retirement.
        versions = {(r["type"], r["id"]): r["version"] for r in target["record"]}
        versions[tuple(ctx.event.source_object_id.split("/", 1))] = (
            None if ctx.event.change_type == "deleted" else ctx.event.source_version)
        fhir_versions = [{**r, "version": versions.get((r["type"], r["id"]))} for r in target["resources"]]

    def effects(run):
        open_conflict(
            run, link,
            resource_type=(ctx.checkpoint["source_payload"] or removed)["resourceType"],
            openehr_version_uid=now.ref.version_uid,
            openehr_composition=now.content,
            fhir_versions=fhir_versions,
            fhir_resources=central,
            **sides,
        )

    return StepResult(terminal=SyncRun.Status.CONFLICT, outcome="conflict", effects=effects,
                      audit={"detail": {"deleted_on": "central"}} if removed else {})


def _deleted_at_site(ctx, link, target) -> StepResult:
    """The site deleted the composition while the centre changed the record: a conflict, nothing written."""
    site = ctx.services.openehr(_site(ctx, target["site_id"]))
    deleted = site.revision_history(target["ehr_id"], target["vo_uid"])[-1]
    source = ctx.checkpoint["source_payload"]
    central = _record_resources(ctx.services.fhir, target["resources"], source)

    def effects(run):
        open_conflict(
            run, link,
            resource_type=source["resourceType"],
            openehr_version_uid=deleted.version_uid,
            openehr_composition={},
            openehr_changed_at=_committed(deleted),
            fhir_versions=target["record"],
            fhir_resources=central,
            **{**central_change(ctx.services.fhir, source),
               **({"fhir_changed_at": ctx.event.committed_at} if ctx.event.committed_at else {})},
            deleted_on=Conflict.Deleted.SITE,
        )

    return StepResult(terminal=SyncRun.Status.CONFLICT, outcome="conflict", effects=effects,
                      audit={"detail": {"deleted_on": "site"}})


def _committed(revision):
    return datetime.fromisoformat(revision.committed_at) if revision.committed_at else None
