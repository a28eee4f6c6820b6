"""HAPI knows the mCODE STU4 profiles and validates against them.

deploy/hapi-fhir.sh fetches the IG packages (`npm pack`) into .cache/fhir-packages/ and the server's
FhirPackageLoader installs them at start-up (deploy/hapi-fhir/README.md). Here we check that:

* every mCODE profile our mapping declares is a StructureDefinition HAPI can find by url;
* known-good examples shipped in the mCODE package's example/ folder validate with zero errors, and
  HAPI really validated them against the mCODE profile (not "profile could not be found").
"""
from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("CONFLICTDESK_CACHE_DIR", REPO / ".cache"))
MCODE_TGZ = CACHE / "fhir-packages" / "hl7.fhir.us.mcode-4.0.0.tgz"
MCODE = "http://hl7.org/fhir/us/mcode/StructureDefinition/"
HEADERS = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}

# The mCODE profiles sync/mapping puts in meta.profile.
PROFILES = [
    "mcode-primary-cancer-condition",
    "mcode-tnm-stage-group",
    "mcode-tnm-primary-tumor-category",
    "mcode-tnm-regional-nodes-category",
    "mcode-tnm-distant-metastases-category",
    "mcode-cancer-related-medication-request",
    "mcode-cancer-related-surgical-procedure",
    "mcode-tumor-marker-test",
]

# Examples from the package's example/ folder that HAPI validates with zero errors here. Examples
# carrying SNOMED CT codes bound (required) to SNOMED-filtered value sets are not listed: without a
# SNOMED CT release loaded those bindings cannot be checked (see deploy/hapi-fhir/README.md).
EXAMPLES = [
    "Observation-tnm-clinical-primary-tumor-category-cT3.json",
    "Observation-tnm-clinical-regional-nodes-category-cN3.json",
    "Observation-tnm-clinical-distant-metastases-category-cM0.json",
    "Observation-tnm-clinical-stage-group-3c.json",
    "Condition-primary-cancer-condition-nonspecific.json",
    "MedicationRequest-cancer-related-medication-request-cisplatin.json",
    "Observation-tumor-marker-test-egf.json",
]


def _example(name: str) -> dict:
    assert MCODE_TGZ.is_file(), f"{MCODE_TGZ} missing: deploy/hapi-fhir.sh start (or build) fetches it"
    with tarfile.open(MCODE_TGZ) as tar:
        data = tar.extractfile(f"package/example/{name}").read()
    return json.load(io.BytesIO(data))


@pytest.mark.parametrize("profile", PROFILES)
def test_hapi_knows_mcode_profile(fhir_base_url, profile):
    r = httpx.get(f"{fhir_base_url}/StructureDefinition", params={"url": MCODE + profile, "_summary": "count"},
                  headers=HEADERS, timeout=60)
    assert r.status_code == 200, r.text[:500]
    assert r.json().get("total") == 1, f"{MCODE + profile}: {r.json()}"


@pytest.mark.parametrize("name", EXAMPLES)
def test_mcode_example_validates_without_errors(fhir_base_url, name):
    res = _example(name)
    declared = res["meta"]["profile"]
    assert any(p.startswith(MCODE) for p in declared), declared
    out = httpx.post(f"{fhir_base_url}/{res['resourceType']}/$validate", json=res, headers=HEADERS,
                     timeout=300).json()
    issues = out.get("issue", [])
    errors = [f"{(i.get('expression') or ['?'])[0]}: {i.get('diagnostics')}" for i in issues
              if i.get("severity") in ("error", "fatal")]
    assert not errors, "\n".join(errors)
    # Zero errors must come from checking the profile, not from skipping an unknown one.
    unknown = [i.get("diagnostics", "") for i in issues if "could not be found" in i.get("diagnostics", "")
               and "StructureDefinition" in i.get("diagnostics", "")]
    assert not unknown, unknown


def test_mcode_profile_is_enforced(fhir_base_url):
    """A TNM category without the mCODE-required method must fail: proves the profile is applied."""
    res = _example("Observation-tnm-clinical-primary-tumor-category-cT3.json")
    res.pop("method")
    out = httpx.post(f"{fhir_base_url}/Observation/$validate", json=res, headers=HEADERS, timeout=300).json()
    errors = [i.get("diagnostics", "") for i in out.get("issue", []) if i.get("severity") in ("error", "fatal")]
    assert any("Observation.method" in e and "mcode-tnm-primary-tumor-category" in e for e in errors), errors
