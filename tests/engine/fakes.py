"""In-memory stand-ins for EHRbase, HAPI and the mapping layer, with scriptable faults.

They keep the semantics the engine depends on: versions that move on every
write, If-Match that fails with PreconditionFailed, If-None-Exist that finds
the earlier resource, transactions that apply all entries or none.
"""
from __future__ import annotations

import copy
import dataclasses
import itertools
from dataclasses import dataclass, field
from types import SimpleNamespace

from sync.clients.errors import InvalidRequest, NotFound, PreconditionFailed, TransientError
from sync.clients.fhir import EntryResult, TransactionResult, Written
from sync.clients.openehr import Composition, VersionRef
from sync.identity import SOURCE_SYSTEM
from sync.mapping import compare_clinical
from sync.mapping.errors import UnknownArchetype


class Faults:
    """``faults.add("transaction", exc, times=2)`` makes the next 2 calls raise ``exc``."""

    def __init__(self):
        self.queue: dict[str, list] = {}

    def add(self, method: str, exc: Exception, times: int = 1) -> None:
        self.queue.setdefault(method, []).extend([exc] * times)

    def check(self, method: str) -> None:
        pending = self.queue.get(method)
        if pending:
            raise pending.pop(0)


def _listed(value) -> list:
    return value if isinstance(value, list) else [value] if value else []


def transient(retry_after=None) -> TransientError:
    return TransientError(method="POST", path="/fhir", status=503, retry_after_seconds=retry_after)


class FakeFHIR:
    def __init__(self):
        self.store: dict[tuple[str, str], list[dict]] = {}
        self.faults = Faults()
        self.ids = itertools.count(1)
        self.transactions: list[dict] = []
        self.http = SimpleNamespace(request=self._operation)

    def _operation(self, method, url, **kwargs):
        """HAPI's MDM operations on a server that has no golden records: no links for any Patient."""
        if url == "$mdm-query-links":
            return SimpleNamespace(json=lambda: {"resourceType": "Parameters", "parameter": []})
        raise NotFound(method=method, path=url, status=404)

    def ping(self, timeout):
        self.faults.check("ping")  # the breaker's probe: answers unless a fault says otherwise

    # reads
    def read(self, rtype, rid):
        self.faults.check("read")
        versions = self.store.get((rtype, rid))
        if not versions or versions[-1] is None:
            raise NotFound(method="GET", path=f"/{rtype}/{rid}", status=404)
        return copy.deepcopy(versions[-1])

    def vread(self, rtype, rid, vid):
        self.faults.check("vread")
        versions = self.store.get((rtype, rid)) or []
        if not 1 <= int(vid) <= len(versions):  # a version the server never had: 404, as HAPI answers
            raise NotFound(method="GET", path=f"/{rtype}/{rid}/_history/{vid}", status=404)
        return copy.deepcopy(versions[int(vid) - 1])

    def vread_many(self, refs):
        return [self.vread(rtype, rid, vid) for rtype, rid, vid in refs]

    def search_identifier(self, rtype, system, value):
        for (t, rid), versions in self.store.items():
            current = versions[-1]
            if t == rtype and current and {"system": system, "value": value} in current.get("identifier", []):
                return current
        return None

    def search(self, rtype, params=None):
        """Reference parameters only (``result=Observation/1``): current resources whose element of that
        name refers to the value; ``_``-parameters ignored."""
        for (t, _), versions in list(self.store.items()):
            current = versions[-1]
            if t == rtype and current and all(
                    value in {x.get("reference") for x in _listed(current.get(name)) if isinstance(x, dict)}
                    for name, value in (params or {}).items() if not name.startswith("_")):
                yield copy.deepcopy(current)

    # writes
    def _put(self, resource) -> dict:
        key = (resource["resourceType"], resource["id"])
        versions = self.store.setdefault(key, [])
        stored = {**copy.deepcopy(resource), "meta": {"versionId": str(len(versions) + 1)}}
        versions.append(stored)
        return stored

    def create(self, resource, *, if_none_exist=None):
        self.faults.check("create")
        if if_none_exist:
            system, value = if_none_exist["identifier"].split("|", 1)
            found = self.search_identifier(resource["resourceType"], system, value)
            if found:
                return Written(found["resourceType"], found["id"], found["meta"]["versionId"], found, created=False)
        stored = self._put({**resource, "id": str(next(self.ids))})
        return Written(stored["resourceType"], stored["id"], stored["meta"]["versionId"], stored, created=True)

    def update(self, resource, *, if_match_version=None):
        """A clinician editing centrally."""
        current = self.read(resource["resourceType"], resource["id"])
        if if_match_version and current["meta"]["versionId"] != if_match_version:
            raise PreconditionFailed(method="PUT", path="/x", status=409)
        stored = self._put(resource)
        return Written(stored["resourceType"], stored["id"], stored["meta"]["versionId"], stored)

    def transaction(self, bundle, *, representation=False):
        self.faults.check("transaction")
        snapshot = copy.deepcopy(self.store)
        try:
            entries = self._apply(bundle)
            if not representation:
                entries = [dataclasses.replace(e, resource=None) for e in entries]
            return TransactionResult(bundle={}, entries=entries)
        except Exception:
            self.store = snapshot
            raise

    def _apply(self, bundle):
        self.transactions.append(copy.deepcopy(bundle))
        urns, results = {}, []
        for entry in bundle["entry"]:
            req = entry["request"]
            if req["method"] == "DELETE":
                rtype, rid = req["url"].split("/")
                self.store[(rtype, rid)].append(None)
                results.append(EntryResult(204, None, None, rtype, rid, None, None))
                continue
            resource = entry["resource"]
            if req["method"] == "POST":
                system, value = req["ifNoneExist"].split("=", 1)[1].split("|", 1)
                found = self.search_identifier(resource["resourceType"], system, value)
                stored = found or self._put({**resource, "id": str(next(self.ids))})
            elif "ifMatch" not in req:
                stored = self._put(resource)  # update-as-create at a client id
            else:
                current = self.read(resource["resourceType"], resource["id"])
                if req.get("ifMatch") != f'W/"{current["meta"]["versionId"]}"':
                    raise PreconditionFailed(method="POST", path="/", status=409)
                stored = self._put(resource)
            urns[entry.get("fullUrl")] = f"{stored['resourceType']}/{stored['id']}"
            results.append(EntryResult(200, None, None, stored["resourceType"], stored["id"],
                                       stored["meta"]["versionId"], None, copy.deepcopy(stored)))
        return results

    def validate(self, resource):
        return {"resourceType": "OperationOutcome", "issue": []}

    def count(self, rtype):
        return sum(1 for (t, _), v in self.store.items() if t == rtype and v[-1] is not None)


@dataclass
class FakeOpenEHR:
    compositions: dict = field(default_factory=dict)  # version_uid -> content
    faults: Faults = field(default_factory=Faults)

    def __post_init__(self):
        self.http = SimpleNamespace(request=self._request)

    def _request(self, method, url, **kwargs):
        raise NotFound(method=method, path=url, status=404)  # EHRs without a subject

    templates: dict = field(default_factory=dict)  # template_id -> web template
    template_fetches: int = 0
    writes: list = field(default_factory=list)

    def ping(self, timeout):
        self.faults.check("ping")

    def get_composition(self, ehr_id, uid, *, flat=False):
        self.faults.check("get_composition")
        if "::" not in uid:  # the latest version of a versioned object
            uid = self.latest(uid)
        if self.compositions[uid] is None:  # EHRbase answers 204 for a deleted composition
            raise NotFound(method="GET", path=f"/composition/{uid}", status=204)
        return Composition(ref=VersionRef.parse(uid, ehr_id), content=copy.deepcopy(self.compositions[uid]))

    def delete_composition(self, ehr_id, preceding_version_uid):
        vo_uid = preceding_version_uid.split("::", 1)[0]
        if self.latest(vo_uid) != preceding_version_uid:
            raise PreconditionFailed(method="DELETE", path="/composition", status=409)
        version_uid = f"{vo_uid}::site1::{int(preceding_version_uid.rsplit('::', 1)[1]) + 1}"
        self.compositions[version_uid] = None
        self.writes.append(version_uid)
        return version_uid

    def revision_history(self, ehr_id, vo_uid):
        versions = sorted((v for v in self.compositions if v.startswith(vo_uid + "::")),
                          key=lambda v: int(v.rsplit("::", 1)[1]))
        return [SimpleNamespace(version_uid=v, committed_at=None,
                                change_type="deleted" if self.compositions[v] is None else "modification")
                for v in versions]

    def latest(self, vo_uid):
        versions = [v for v in self.compositions if v.startswith(vo_uid + "::")]
        if not versions:
            raise NotFound(method="GET", path=f"/composition/{vo_uid}", status=404)
        return max(versions, key=lambda v: int(v.rsplit("::", 1)[1]))

    def update_composition(self, ehr_id, preceding_version_uid, composition, *, template_id=None):
        self.faults.check("update_composition")
        vo_uid = preceding_version_uid.split("::", 1)[0]
        current = self.latest(vo_uid)
        if current != preceding_version_uid:
            raise PreconditionFailed(method="PUT", path="/composition", status=412)
        number = int(current.rsplit("::", 1)[1]) + 1
        version_uid = f"{vo_uid}::site1::{number}"
        self.compositions[version_uid] = {**copy.deepcopy(composition), "_vo": vo_uid}
        self.writes.append(version_uid)
        return VersionRef.parse(version_uid, ehr_id)

    def create_composition(self, ehr_id, composition):
        self.faults.check("create_composition")
        version_uid = composition["uid"]["value"]
        if version_uid in self.compositions:
            raise InvalidRequest(method="POST", path="/composition", status=400, detail="already exists")
        self.compositions[version_uid] = {**copy.deepcopy(composition), "_vo": version_uid.split("::", 1)[0]}
        self.writes.append(version_uid)
        return VersionRef.parse(version_uid, ehr_id)

    def get_ehr(self, ehr_id):
        return SimpleNamespace(ehr_id=ehr_id, system_id="site1")

    def web_template(self, template_id):
        self.faults.check("web_template")
        self.template_fetches += 1
        if template_id not in self.templates:
            raise NotFound(method="GET", path=f"/definition/template/adl1.4/{template_id}", status=404)
        return copy.deepcopy(self.templates[template_id])


def composition(value, *, archetype="openEHR-EHR-OBSERVATION.body_temperature.v2") -> dict:
    """A canonical-looking composition; the fake mapping reads ``value`` and the archetype."""
    return {
        "_type": "COMPOSITION",
        "archetype_node_id": "openEHR-EHR-COMPOSITION.encounter.v1",
        "archetype_details": {"template_id": {"value": "vitals"}},
        "content": [{"archetype_node_id": archetype, "value": value}],
    }


def fake_mapping():
    def to_fhir(comp, *, site, ehr_id, patient_ref):
        entry = comp["content"][0]
        if entry["archetype_node_id"].startswith("openEHR-EHR-OBSERVATION.unknown"):
            raise UnknownArchetype("no mapping", composition_uid="c", path="/content[0]", rule="registry")
        resource = {
            "resourceType": "Observation",
            "id": "obs-1",
            "status": "final",
            "code": {"text": "temp"},
            "subject": {"reference": patient_ref},
            "identifier": [{"system": SOURCE_SYSTEM, "value": f"{site}|{comp.get('_vo', 'x')}|/content[0]"}],
            "valueQuantity": {"value": entry["value"], "unit": "Cel"},
        }
        return SimpleNamespace(resources=[resource], losses=[])

    def build_provenance(resources, site, ehr_id, version_uid, *, recorded=None):
        return {
            "resourceType": "Provenance",
            "target": [{"reference": f"{r['resourceType']}/{r['id']}"} for r in resources],
            "recorded": recorded or "2026-01-01T00:00:00Z",
            "agent": [{"who": {"display": "engine"}}],
        }

    def validate_fhir(resource):
        value = (resource.get("valueQuantity") or {}).get("value")
        return ["Observation.valueQuantity.value: not a number"] if isinstance(value, str) else []

    def clinical_content(resource):
        return {k: v for k, v in resource.items() if k not in ("id", "meta", "identifier", "subject", "uid", "_vo")}

    def to_openehr(resources, *, template_id, base_composition=None):
        value = resources[0]["valueQuantity"]["value"] if resources else None
        comp = composition(value)
        comp["archetype_details"] = {"template_id": {"value": template_id}}
        return comp

    def from_fhir(resources, *, template_id, base_composition=None, **kw):
        return SimpleNamespace(composition=to_openehr(resources, template_id=template_id), losses=[])

    def map_back(resources, *, template_id, header_for=None):
        """The guard's map-back: this composition's entries; it has no header (no Encounter is made)."""
        return to_openehr(resources, template_id=template_id)["content"], {}

    return SimpleNamespace(
        to_fhir=to_fhir, build_provenance=build_provenance, validate_fhir=validate_fhir,
        clinical_content=clinical_content, to_openehr=to_openehr, from_fhir=from_fhir, map_back=map_back,
        compare_clinical=compare_clinical,  # the real comparison: it reads any JSON
    )


def web_template(*archetypes) -> dict:
    """A web template allowing a COMPOSITION with these entries under /content."""
    children = [{"id": a.split(".")[1], "nodeId": a, "aqlPath": f"/content[{a}]", "children": []} for a in archetypes]
    return {"templateId": "vitals", "tree": {"id": "vitals", "nodeId": "openEHR-EHR-COMPOSITION.encounter.v1",
                                             "aqlPath": "", "children": children}}
