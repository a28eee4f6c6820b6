"""Our extension StructureDefinitions load into HAPI and resources using them validate with zero errors.

Every ``sync/mapping/extensions/*.json`` is PUT as ``StructureDefinition/<id>`` (idempotent), then for
each extension URL a resource the mapping really produces with it (from the corpus and the oncology
fixture) is sent to ``$validate``: HAPI then checks the extension against our definition instead
of reporting it as unknown.
"""
from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from sync.mapping import from_fhir, rmpath, to_fhir
from sync.mapping.spec import registry

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
EXT_DIR = REPO / "sync" / "mapping" / "extensions"
HEADERS = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}


def _definitions() -> list[dict]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(EXT_DIR.glob("*.json"))]


def _produced(corpus: Path) -> list[dict]:
    files = sorted((corpus / "openehr" / "compositions").glob("*.composition.json")) + \
        [REPO / "tests" / "fixtures" / "oncology" / "oncology_encounter.composition.json"]
    out = []
    for f in files:
        comp = json.loads(f.read_text(encoding="utf-8-sig"))
        comp.setdefault("uid", {"value": "0b5e3c4e-1111-4222-8333-944444444444::x::1"})
        if not any(e.get("archetype_node_id") in registry() for _, e in rmpath.entries(comp)):
            continue
        try:
            out.extend(to_fhir(comp, site="s", ehr_id="e", patient_ref="Patient/x").resources)
        except Exception:  # noqa: BLE001 - conversion is tested elsewhere; here we only need examples
            continue
    return out


def _vitals_interval_example() -> dict:
    """A body temperature whose event is an INTERVAL_EVENT: effectiveDateTime plus openehr-event-width
    and openehr-math-function (HAPI's vital-signs vs-1 check rejects any Period)."""
    comp = json.loads((REPO / "tests" / "fixtures" / "oncology" / "oncology_encounter.composition.json").read_text())
    entry = next(e for _, e in rmpath.entries(comp) if e["archetype_node_id"].endswith("body_temperature.v2"))
    entry["data"]["events"][0].update(
        _type="INTERVAL_EVENT", width={"_type": "DV_DURATION", "value": "PT24H"},
        math_function={"_type": "DV_CODED_TEXT", "value": "maximum",
                       "defining_code": {"terminology_id": {"value": "openehr"}, "code_string": "144"}})
    res = to_fhir(comp, site="s", ehr_id="e", patient_ref="Patient/x").resources
    return next(r for r in res if r.get("effectiveDateTime") and "openehr-event-width" in json.dumps(r))


def _interval_example(corpus: Path) -> dict:
    """A lab report whose event is an INTERVAL_EVENT with a math function (effectivePeriod)."""
    comp = json.loads((corpus / "openehr" / "compositions" / "kds_lab_report.patient1.composition.json")
                      .read_text(encoding="utf-8-sig"))
    comp.setdefault("uid", {"value": "0b5e3c4e-1111-4222-8333-944444444444::x::1"})
    entry = next(e for _, e in rmpath.entries(comp) if e["archetype_node_id"].endswith("laboratory_test_result.v1"))
    ev = entry["data"]["events"][0]
    ev.update(_type="INTERVAL_EVENT", width={"_type": "DV_DURATION", "value": "PT1H"},
              math_function={"_type": "DV_CODED_TEXT", "value": "maximum",
                             "defining_code": {"terminology_id": {"value": "openehr"}, "code_string": "144"}})
    res = to_fhir(comp, site="s", ehr_id="e", patient_ref="Patient/x").resources
    return next(r for r in res if r["resourceType"] == "DiagnosticReport")


def _feeder_bundle() -> dict:
    """The Bundle a FHIR-born entry keeps in its feeder audit (openehr-feeder-basis on its entries): a heart
    rate whose performer pulse.v2 has no element for."""
    hr = {"resourceType": "Observation", "id": "hr", "status": "final", "performer": [{"reference": "Practitioner/1"}],
          "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}, "subject": {"reference": "Patient/1"},
          "effectiveDateTime": "2024-01-01T10:00:00Z",
          "valueQuantity": {"value": 70, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}}
    [entry] = from_fhir([hr], template_id="t").composition["content"]
    return json.loads(entry["feeder_audit"]["original_content"]["value"])


def test_every_extension_definition_loads_and_validates_in_use(fhir_base_url, corpus_dir):
    defs = _definitions()
    assert defs
    for sd in defs:
        r = httpx.put(f"{fhir_base_url}/StructureDefinition/{sd['id']}", json=sd, headers=HEADERS, timeout=60)
        assert r.status_code in (200, 201), (sd["id"], r.text[:500])
    resources = _produced(corpus_dir) + [_interval_example(corpus_dir), _vitals_interval_example(), _feeder_bundle()]
    missing, errors = [], {}
    for sd in defs:
        users = [r for r in resources if sd["url"] in json.dumps(r)]
        if not users:
            missing.append(sd["id"])
            continue
        example = users[0]
        out = httpx.post(f"{fhir_base_url}/{example['resourceType']}/$validate", json=example, headers=HEADERS,
                         timeout=120).json()
        issues = out.get("issue", [])
        bad = [i for i in issues if i.get("severity") in ("error", "fatal")]
        unknown = [i for i in issues if sd["url"] in i.get("diagnostics", "") and "nknown" in i.get("diagnostics", "")]
        if bad or unknown:
            errors[sd["id"]] = [i.get("diagnostics", "")[:300] for i in bad + unknown]
    assert missing == [], "no produced resource uses these extensions"
    assert errors == {}
