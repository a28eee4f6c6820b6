"""EHR_STATUS of a site's EHR: read it (where the demographics live) and, for seeding, write it.

Through the openEHR client's session (its base URL, credentials, timeouts and error mapping).
"""
from __future__ import annotations

from sync.clients import ids
from sync.clients.errors import NotFound


def read(openehr, ehr_id: str) -> dict | None:
    """The EHR's current EHR_STATUS (with its ``uid``: the version), or None when the EHR is unknown."""
    try:
        return openehr.http.request("GET", f"ehr/{ids.ehr_id(ehr_id)}/ehr_status").json()
    except NotFound:
        return None


def write(openehr, ehr_id: str, status: dict) -> dict:
    """A new EHR_STATUS version over the current one (If-Match on its version uid)."""
    current = read(openehr, ehr_id) or {}
    body = {k: v for k, v in status.items() if k != "uid"}
    headers = {"Content-Type": "application/json", "Prefer": "return=representation"}
    version = (current.get("uid") or {}).get("value")
    if version:
        headers["If-Match"] = version
    return openehr.http.request("PUT", f"ehr/{ids.ehr_id(ehr_id)}/ehr_status", json=body, headers=headers).json()
