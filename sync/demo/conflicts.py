"""Stage genuine sync conflicts: the same record edited at a site and centrally, after a first sync.

Needs the engine running (worker + beat): each attempt commits a fresh vitals composition for a
synthetic patient, waits until the engine has written its blood-pressure Observation to the
central FHIR server (found by the ``urn:conflictdesk:source`` identifier
``{site}|{vo_uid}|{node path}``, see sync/mapping/README.md "Identity"), then edits it centrally
(If-Match on the FHIR version) and, right after, at the site (If-Match on the composition
version). The engine then finds both sides moved since the base and opens a conflict. The
attempts take turns over three kinds (``KINDS``): the systolic pressure changed to different
values on each side; the diastolic changed centrally and the systolic at the site; the blood
pressure changed centrally and the temperature at the site.

Waiting is on the records, not on a clock: an attempt waits as long as the engine still has
work (``engine_busy``: a seeding backlog ahead of it), and gives up only once the engine has
been idle for ``idle_s`` without syncing it. Only ``OpenEHRClient`` and ``FHIRClient`` are used.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Mapping

from sync.clients.errors import PreconditionFailed
from sync.clients.fhir import FHIRClient
from sync.clients.openehr import OpenEHRClient, VersionRef
from sync.mapping.identifiers import build_source_identifier

from .flat import ROOT, TEMPLATE_ID
from .generator import vital_signs_composition
from .seed import synthetic_ehrs

BP_PATH = "/content[openEHR-EHR-OBSERVATION.blood_pressure.v2]/data[at0001]/events[at0006]"
SYSTOLIC_LOINC = "8480-6"
SYSTOLIC_KEY = f"{ROOT}/blood_pressure:0/any_event:0/systolic|magnitude"
DIASTOLIC_LOINC = "8462-4"
KINDS = ("same_value", "different_fields", "different_entries")


@dataclass
class ConflictAttempt:
    site: str
    ehr_id: str
    first: VersionRef
    kind: str = KINDS[0]
    status: str = "pending"  # pending | not_synced | staged | lost_race
    fhir_id: str | None = None
    central_systolic: float | None = None
    site_systolic: float | None = None
    site_version_uid: str | None = None


def find_central(fhir: FHIRClient, site: str, vo_uid: str, path: str = BP_PATH) -> dict | None:
    """The central resource the engine made from one site node, or None (yet)."""
    ident = build_source_identifier(site, vo_uid, path)
    value = ident["value"].replace("|", "\\|")  # FHIR token escaping
    return next(fhir.search("Observation", {"identifier": f"{ident['system']}|{value}"}), None)


def make_conflicts(fhir: FHIRClient, sites: Mapping[str, OpenEHRClient], count: int, *, seed: int = 0,
                   engine_busy: Callable[[], bool] = lambda: False, idle_s: float = 120.0, poll_s: float = 1.0,
                   progress=None) -> list[ConflictAttempt]:
    """Stage ``count`` conflicts across ``sites`` (engine site name -> client); see module doc.

    Attempts whose first version does not reach the centre while the engine has been idle
    (``engine_busy`` false) for ``idle_s`` end as ``not_synced`` (engine not running?); a stale
    If-Match on either side (someone else edited first) ends as ``lost_race``. Neither raises.
    """
    rng = random.Random(f"conflicts|{seed}")
    names = [n for n in sites if synthetic_ehrs(sites[n])]
    if not names:
        raise ValueError("no synthetic EHRs at any site: seed first")
    ehrs = {n: [r["ehr_id"] for r in synthetic_ehrs(sites[n])] for n in names}
    attempts = []
    for i in range(count):
        name = names[i % len(names)]
        ehr_id = rng.choice(ehrs[name])
        flat = vital_signs_composition(rng, datetime.now(timezone.utc))
        ref = sites[name].create_composition(ehr_id, flat, template_id=TEMPLATE_ID)
        attempts.append(ConflictAttempt(name, ehr_id, ref, kind=KINDS[i % len(KINDS)]))
    deadline = time.monotonic() + idle_s
    pending = list(attempts)
    while pending and time.monotonic() < deadline:
        if engine_busy():  # the engine works through what came before ours: wait on it, not on a clock
            deadline = time.monotonic() + idle_s
        for attempt in list(pending):
            resource = find_central(fhir, attempt.site, attempt.first.uid)
            if resource is not None:
                pending.remove(attempt)
                _double_edit(fhir, sites[attempt.site], attempt, resource, rng)
                if progress:
                    progress(f"conflict {attempts.index(attempt) + 1}/{count} at {attempt.site}: {attempt.status}")
        if pending:
            time.sleep(poll_s)
    for attempt in pending:
        attempt.status = "not_synced"
    return attempts


def _double_edit(fhir: FHIRClient, site: OpenEHRClient, attempt: ConflictAttempt, resource: dict,
                 rng: random.Random) -> None:
    component = _component(resource, SYSTOLIC_LOINC)
    if component is None:
        attempt.status = "lost_race"
        return
    old = component["valueQuantity"]["value"]
    central, at_site = old + rng.choice([12, 16, 20]), old - rng.choice([8, 10, 14])
    flat = site.get_composition(attempt.ehr_id, attempt.first.uid, flat=True).content
    flat = {k: v for k, v in flat.items() if not k.endswith("/_uid")}
    temperature = next((k for k in flat if k.endswith("/temperature|magnitude")), None)
    if attempt.kind == "different_fields":  # central: the diastolic; site: the systolic
        component = _component(resource, DIASTOLIC_LOINC) or component
        central = component["valueQuantity"]["value"] + rng.choice([6, 8])
        flat[SYSTOLIC_KEY] = float(at_site)
    elif attempt.kind == "different_entries" and temperature:  # central: the pressure; site: the temperature
        at_site = round(flat[temperature] + 0.8, 1)
        flat[temperature] = at_site
    else:
        flat[SYSTOLIC_KEY] = float(at_site)
    component["valueQuantity"]["value"] = central
    try:
        # Central first, the site right after: the engine then sees a site change while the
        # centre has moved since the base, which is exactly a conflict.
        fhir.update(resource, if_match_version=resource["meta"]["versionId"])
        ref = site.update_composition(attempt.ehr_id, attempt.first.version_uid, flat, template_id=TEMPLATE_ID)
    except PreconditionFailed:
        attempt.status = "lost_race"
        return
    attempt.status, attempt.fhir_id = "staged", resource["id"]
    attempt.central_systolic, attempt.site_systolic, attempt.site_version_uid = central, at_site, ref.version_uid


def _component(resource: dict, loinc: str) -> dict | None:
    return next((c for c in resource.get("component", [])
                 if any(cd.get("code") == loinc for cd in c["code"].get("coding", []))), None)
