"""Desk test data: people in every role, and a real conflict built through the real mapping.

The conflict starts from a corpus composition (body temperature, two events),
maps it to FHIR for the base, then moves both sides: the site re-measures the
first temperature, the centre amends the status of the first reading and the
second reading's value. So the field diff has a site-only, a central-only and
a both-changed field.
"""
from __future__ import annotations

import copy
import json

from allauth.account.models import EmailAddress
from allauth.mfa.totp.internal.auth import TOTP
from django.contrib.auth.models import Group, User

from audit.chain import payload_hash
from sync.identity import record_key
from sync.mapping import clinical_content, to_fhir
from sync.models import Conflict, DeadLetter, Direction, PatientLink, RecordLink, RunAttempt, Site, SyncRun
from sync.workflow.content import record_content, resource_key
from tests.conftest import CORPUS_DIR

from conflictdesk.desk import roles

TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
PASSWORD = "correct horse battery staple 42"
COMPOSITION = CORPUS_DIR / "openehr/compositions/encounter_body_temperature_multi.composition.json"
EHR_ID = "7d44b88c-4199-4bad-97dc-d78268e01398"

ROLE_USERS = {
    "clinician": roles.CLINICIAN,
    "steward": roles.STEWARD,
    "auditor": roles.AUDITOR,
    "admin": roles.ADMIN,
}


def ensure_roles() -> None:
    """Transactional tests (browser, concurrency) flush the data migration's groups; restore them as it made them."""
    from django.contrib.auth.models import Permission

    for name, codenames in roles.ROLE_PERMISSIONS.items():
        group, created = Group.objects.get_or_create(name=name)
        if created:
            group.permissions.set(Permission.objects.filter(content_type__app_label="desk", codename__in=codenames))
    Group.objects.get_or_create(name=roles.DEMO)


def make_user(email: str, *groups: str, totp: bool = True) -> User:
    ensure_roles()
    user = User.objects.create_user(username=email, email=email, password=PASSWORD)
    EmailAddress.objects.create(user=user, email=email, primary=True, verified=True)
    for name in groups:
        user.groups.add(Group.objects.get(name=name))
    if totp:
        TOTP.activate(user, TOTP_SECRET)
    return user


def make_site(name: str = "site1") -> Site:
    return Site.objects.get_or_create(name=name, defaults={
        "display_name": f"Oncology {name}", "openehr_base_url": f"http://{name}.test/ehrbase/rest/openehr/v1",
        "local_demo": True})[0]


def composition() -> dict:
    # In PostgreSQL's jsonb key order: the mapping's output currently depends on key order
    # (residue value[x] choice), and the desk always maps the composition as stored.
    return as_jsonb(json.loads(COMPOSITION.read_text()))


def as_jsonb(obj):
    """Keys ordered as jsonb returns them: shorter first, then bytewise."""
    if isinstance(obj, dict):
        return {k: as_jsonb(obj[k]) for k in sorted(obj, key=lambda k: (len(k.encode()), k.encode()))}
    if isinstance(obj, list):
        return [as_jsonb(x) for x in obj]
    return obj


def set_temperature(comp: dict, event: int, value: float) -> dict:
    comp = copy.deepcopy(comp)
    observation = comp["content"][0]
    observation["data"]["events"][event]["data"]["items"][0]["value"]["magnitude"] = value
    return comp


def make_conflict(site: Site | None = None, *, vo_suffix: str = "") -> Conflict:
    site = site or make_site()
    base_comp = composition()
    vo_uid = base_comp["uid"]["value"].split("::")[0]
    if vo_suffix:  # a second record: another versioned object uid
        vo_uid = vo_uid[:-len(vo_suffix)] + vo_suffix
        base_comp["uid"]["value"] = f"{vo_uid}::ehrbase.org::1"
    patient, _ = PatientLink.objects.get_or_create(site=site, ehr_id=EHR_ID, defaults={"fhir_patient_id": "p-100"})
    patient_ref = f"Patient/{patient.fhir_patient_id}"
    base_resources = to_fhir(base_comp, site=site.name, ehr_id=EHR_ID, patient_ref=patient_ref).resources
    base = record_content(base_resources, clinical_content)
    link = RecordLink.objects.create(
        site=site, patient_link=patient, versioned_object_uid=vo_uid, template_id="ehrbase_multi_occurrence.de.v1",
        openehr_version_uid=f"{vo_uid}::ehrbase.org::1",
        fhir_resources=[{"type": r["resourceType"], "id": r["id"], "version": "1", "key": resource_key(r)} for r in base_resources],
        canonical_hash=payload_hash(base), base_content=base,
    )
    site_comp = set_temperature(base_comp, 0, 38.5)
    site_comp["uid"]["value"] = f"{vo_uid}::ehrbase.org::2"
    central = copy.deepcopy(base_resources)
    for r in central:
        r["meta"] = {**r.get("meta", {}), "versionId": "2", "lastUpdated": "2026-11-20T10:00:00Z"}
    central[0]["status"] = "amended"
    central[1]["valueQuantity"]["value"] = 36.9
    run = SyncRun.objects.create(direction=Direction.TO_FHIR, site=site, record_key=record_key(site.name, vo_uid),
                                 status=SyncRun.Status.CONFLICT, step="check_conflict")
    made = Conflict.objects.create(
        run=run, record_link=link, resource_type="Observation", openehr_version_uid=site_comp["uid"]["value"],
        openehr_composition=site_comp, openehr_changed_by="Dr. Site", fhir_changed_by="Dr. Central",
        fhir_versions=[{**ref, "version": "2"} for ref in link.fhir_resources], fhir_resources=central,
        base_content=base, base_hash=link.canonical_hash,
    )
    return Conflict.objects.get(pk=made.pk)  # as views see it: JSON as stored


def make_dead_letter(site: Site | None = None, cause: str = DeadLetter.Cause.VALIDATION) -> DeadLetter:
    from django.utils import timezone

    site = site or make_site()
    run = SyncRun.objects.create(direction=Direction.TO_FHIR, site=site, record_key=record_key(site.name, f"dl-{cause}"),
                                 status=SyncRun.Status.DEAD_LETTER, step="validate_target")
    now = timezone.now()
    RunAttempt.objects.create(run=run, step="validate_target", number=1, started_at=now, finished_at=now,
                              outcome="dead_letter", error_class="ValidationFailed", error_detail="Observation fails R4")
    detail = {"attempts": [], "error_detail": {"issues": ["Observation.status: field required"]}}
    if cause == DeadLetter.Cause.FIDELITY:
        detail["error_detail"] = {"source": {"magnitude": 38.5}, "mapped": {"value": 38.5}, "mapped_back": {"magnitude": 38}}
    return DeadLetter.objects.create(
        run=run, cause=cause, step="validate_target", error=f"{run.record_key}: Observation fails R4 validation (1 issue(s))",
        rule="fhir.r4.Observation", path="Observation.status", detail=detail, payload={"_type": "COMPOSITION"},
    )
