"""Fuzz harness: the real runner, real mapping and real PostgreSQL rows; fake servers that speak bytes.

The fakes parse what they hold exactly as the real clients parse a response
(``json.loads`` of the body bytes), so wire-level malformations (invalid
UTF-8, duplicate keys, NaN) reach the engine the way they would in production.
The central fake checks every transaction entry as HAPI would and refuses the
bundle as a whole, so a malformed resource that slipped through could only
show up as an accepted write, never as half a write.

Profiles: ``ci`` (default, bounded: the whole fuzz suite in well under three
minutes) and ``long`` (``HYPOTHESIS_PROFILE=long``). ``FUZZ_EXAMPLES``
overrides the per-category example count of either.
"""
from __future__ import annotations

import copy
import json
import logging
import os
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, settings as hsettings

from audit.chain import payload_hash
from audit.record import record_event, system_actor
from sync import mapping
from sync.clients.errors import InvalidRequest
from sync.identity import central_record_key, record_key
from sync.models import ChangeEvent, Direction, PatientLink, Site, SyncRun
from sync.workflow import dispatch, template_check
from sync.workflow.services import Services, use_services
from tests.engine.fakes import FakeFHIR, FakeOpenEHR

from .mutations import RESOURCE_SEEDS, resource_seed

_SLOW_CHECKS = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large,
                HealthCheck.large_base_example, HealthCheck.filter_too_much]
hsettings.register_profile(
    "ci", max_examples=int(os.environ.get("FUZZ_EXAMPLES", 30)), deadline=None, derandomize=True,
    database=None, suppress_health_check=_SLOW_CHECKS, print_blob=True,
)
hsettings.register_profile(
    "long", max_examples=int(os.environ.get("FUZZ_EXAMPLES", 400)), deadline=None,
    suppress_health_check=_SLOW_CHECKS, print_blob=True,
)
hsettings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# The published figures (bench/results/fuzz.json) are written only when asked for, e.g.
# `CONFLICTDESK_FUZZ_RESULTS=bench/results/fuzz.json make test`: a plain test run leaves the tree clean.
RESULTS = Path(os.environ["CONFLICTDESK_FUZZ_RESULTS"]).resolve() if os.environ.get("CONFLICTDESK_FUZZ_RESULTS") else None
FUZZ_TEMPLATE = "fuzz_all"
PATIENT_ID = "1"


class WireOpenEHR(FakeOpenEHR):
    """A site whose compositions are stored as the bytes EHRbase would send."""

    def __init__(self):
        super().__init__()
        self.bodies: dict[str, bytes] = {}

    def get_composition(self, ehr_id, uid, *, flat=False):
        if uid in self.bodies:
            from sync.clients.openehr import Composition, VersionRef

            return Composition(ref=VersionRef.parse(uid, ehr_id), content=json.loads(self.bodies[uid]))
        return super().get_composition(ehr_id, uid, flat=flat)


class StrictFHIR(FakeFHIR):
    """HAPI as the engine sees it: central resources stored as bytes; transactions all-or-nothing, validated."""

    def __init__(self):
        super().__init__()
        self.bodies: dict[tuple[str, str, str], bytes] = {}
        self.refused = 0

    def vread(self, rtype, rid, vid):
        if (rtype, rid, str(vid)) in self.bodies:
            return json.loads(self.bodies[(rtype, rid, str(vid))])
        return super().vread(rtype, rid, vid)

    def search_identifier(self, rtype, system, value):
        for (t, rid), versions in self.store.items():
            current = versions[-1]
            idents = (current or {}).get("identifier") or []
            idents = idents if isinstance(idents, list) else [idents]  # Composition.identifier is 0..1
            if t == rtype and {"system": system, "value": value} in idents:
                return current
        return None

    def transaction(self, bundle, **kw):
        for i, entry in enumerate(bundle["entry"]):
            if "resource" in entry and mapping.validate_fhir(entry["resource"]):
                self.refused += 1
                self.transactions.append(copy.deepcopy(bundle))
                raise InvalidRequest(method="POST", path="/", status=400,
                                     detail={"resourceType": "OperationOutcome", "issue": [{"code": "processing"}]})
        return super().transaction(bundle, **kw)

    def writes(self) -> int:
        return sum(len(v) for v in self.store.values())


class LeakLog(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record):
        try:
            text = record.getMessage()
        except Exception:  # a broken record is itself worth seeing
            text = repr(record.msg)
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        self.lines.append(text)


# ------------------------------------------------------------------ results (bench/results/fuzz.json)
class Results:
    def __init__(self):
        self.counts: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
        self.failures: dict[str, list[str]] = defaultdict(list)
        self.seconds: dict[str, float] = defaultdict(float)

    def add(self, direction: str, category: str, outcome: str, failure: str | None = None) -> None:
        self.counts[direction][category][outcome] += 1
        if failure:
            self.failures[f"{direction}/{category}"].append(failure)

    def total(self) -> int:
        return sum(sum(c.values()) for d in self.counts.values() for c in d.values())

    def write(self) -> None:
        body = {
            "meta": {
                "profile": os.environ.get("HYPOTHESIS_PROFILE", "ci"),
                "examples_per_category": hsettings().max_examples,
                "unit": "malformed inputs pushed through the engine runner (fake servers, real mapping and DB)",
                "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
            "total_tried": self.total(),
            "total_failures": sum(len(v) for v in self.failures.values()),
            "directions": {
                d: {c: dict(sorted(o.items())) for c, o in sorted(cats.items())} for d, cats in self.counts.items()
            },
            "seconds": {k: round(v, 2) for k, v in sorted(self.seconds.items())},
            "failures_sample": {k: v[:5] for k, v in self.failures.items()},
        }
        if RESULTS.exists():  # keep the other direction's figures when one test ran alone
            try:
                old = json.loads(RESULTS.read_text())
                for d, cats in old.get("directions", {}).items():
                    body["directions"].setdefault(d, cats)
                body["total_tried"] = sum(sum(o.values()) for cats in body["directions"].values() for o in cats.values())
            except ValueError:
                pass
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(body, indent=2) + "\n")
        print(f"\nfuzz: {body['total_tried']} malformed inputs tried, {body['total_failures']} failures "
              f"-> {RESULTS}")


_RESULTS = Results()


@pytest.fixture(scope="session")
def fuzz_results():
    yield _RESULTS
    if RESULTS and _RESULTS.total():
        _RESULTS.write()


# ------------------------------------------------------------------ the engine under fuzz
def _fuzz_web_template() -> dict:
    """A web template allowing every node the valid FHIR seeds map back to, so only the mutation can fail."""
    paths = set()
    for name in RESOURCE_SEEDS:
        doc = resource_seed(name)
        doc["id"], doc["meta"] = "seed", {"versionId": "1"}
        comp = mapping.to_openehr([doc], template_id=FUZZ_TEMPLATE)
        paths.update(template_check.node_paths(comp))
    children = [{"id": str(i), "aqlPath": p, "children": []} for i, p in enumerate(sorted(paths))]
    return {"templateId": FUZZ_TEMPLATE, "tree": {"id": FUZZ_TEMPLATE, "aqlPath": "", "children": children}}


@pytest.fixture
def fuzz_engine(db, settings, monkeypatch, django_capture_on_commit_callbacks, fuzz_results):
    from django.core import mail

    settings.CONFLICTDESK_STAFF_EMAILS = ["oncall@example.org"]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.CONFLICTDESK_HAPI_VALIDATE = False
    monkeypatch.setattr(dispatch, "send", lambda run_id, countdown: None)
    fhir, openehr = StrictFHIR(), WireOpenEHR()
    openehr.templates[FUZZ_TEMPLATE] = _fuzz_web_template()
    template_check.clear_cache()
    services = Services(
        fhir=fhir,
        openehr=lambda site: openehr,
        mapping=SimpleNamespace(to_fhir=mapping.to_fhir, to_openehr=mapping.to_openehr,
                                build_provenance=mapping.build_provenance, validate_fhir=mapping.validate_fhir,
                                clinical_content=mapping.clinical_content),
        audit=SimpleNamespace(record_event=record_event, payload_hash=payload_hash, system_actor=system_actor),
    )
    site = Site.objects.create(name="site1", openehr_base_url="http://site1.test/v1", local_demo=True,
                               template_ids=[FUZZ_TEMPLATE])
    # The central Patient exists already, so a run's only possible writes are the record's own.
    fhir._put({"resourceType": "Patient", "id": PATIENT_ID, "active": True})
    PatientLink.objects.create(site=site, ehr_id="ehr-1", fhir_patient_id=PATIENT_ID)

    def commit(body: bytes):
        vo = str(uuid.uuid4())
        version_uid = f"{vo}::site1::1"
        openehr.bodies[version_uid] = body.replace(b"00000000-0000-4000-8000-000000000000", vo.encode())
        event = ChangeEvent.objects.create(
            direction=Direction.TO_FHIR, source="site:site1", site=site, source_object_id=vo,
            source_version=version_uid, version_number=1, ehr_id="ehr-1",
        )
        return SyncRun.objects.create(change_event=event, direction=Direction.TO_FHIR, site=site,
                                      record_key=record_key("site1", vo))

    def central(body: bytes, rtype: str):
        rid = f"fuzz-{uuid.uuid4()}"
        fhir.bodies[(rtype, rid, "1")] = body.replace(b'"fuzz-1"', json.dumps(rid).encode())
        event = ChangeEvent.objects.create(
            direction=Direction.TO_OPENEHR, source="central", source_object_id=f"{rtype}/{rid}",
            source_version="1", version_number=1,
        )
        return SyncRun.objects.create(change_event=event, direction=Direction.TO_OPENEHR,
                                      record_key=central_record_key(rtype, rid))

    with use_services(services):
        yield SimpleNamespace(fhir=fhir, openehr=openehr, site=site, commit=commit, central=central,
                              mail=mail, capture=django_capture_on_commit_callbacks, results=fuzz_results)
