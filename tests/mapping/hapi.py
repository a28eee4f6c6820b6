"""HAPI `$validate` for the mapping tests: strict, with the resource exactly as produced.

HAPI has the mCODE STU4 package loaded (deploy/hapi-fhir/README.md), so meta.profile is kept:
every declared profile (vital signs, mCODE) is really checked.  HAPI answers 200 even when the
outcome has errors, so the issues are read; every error or fatal issue counts."""
import httpx


def hapi_issues(base: str, resource: dict, severities=("error", "fatal")) -> list[str]:
    out = httpx.post(f"{base}/{resource['resourceType']}/$validate", json=resource, timeout=300).json()
    return [f"{i.get('expression')}: {i.get('diagnostics', '')}" for i in out.get("issue", [])
            if i.get("severity") in severities]


def hapi_errors(base: str, resource: dict) -> list[str]:
    """Every error HAPI reports for the resource, declared profiles included."""
    return hapi_issues(base, resource)
