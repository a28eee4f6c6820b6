"""Client for the central FHIR R4 server (HAPI FHIR JPA).

Resources go in and come out as plain dicts; writes return ``Written`` so the
engine always learns the version it must quote next time. HAPI reports a stale
``If-Match`` as 409 (``HAPI-0989``), not the 412 the spec suggests, so both
map to ``PreconditionFailed`` here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterator, Mapping, Sequence

import httpx

from . import ids
from .errors import InvalidRequest, PreconditionFailed
from .http import ServerClient, error_for_status, unquote_etag

FHIR_JSON = "application/fhir+json"
Criteria = str | Mapping[str, str] | Sequence[tuple[str, str]]


@dataclass(frozen=True)
class Written:
    """A resource as the server stored it. ``created`` is False for updates and
    for a conditional create that matched an existing resource."""

    resource_type: str
    id: str
    version_id: str | None
    resource: dict[str, Any] | None
    created: bool = False


@dataclass(frozen=True)
class EntryResult:
    """One ``Bundle.entry.response`` of a transaction answer."""

    status: int
    location: str | None
    etag: str | None
    resource_type: str | None
    id: str | None
    version_id: str | None
    outcome: dict[str, Any] | None
    # The resource as the server stored it (``Prefer: return=representation``); None for a delete
    # or a server that answered without it.
    resource: dict[str, Any] | None = None


@dataclass(frozen=True)
class TransactionResult:
    bundle: dict[str, Any]
    entries: list[EntryResult]


@dataclass(frozen=True)
class HistoryEntry:
    """One version from ``_history``; ``resource`` is None for a delete."""

    resource_type: str
    id: str
    version_id: str | None
    method: str | None
    last_updated: str | None
    resource: dict[str, Any] | None

    @property
    def deleted(self) -> bool:
        return self.method == "DELETE"


class FHIRClient(ServerClient):
    """Talks to the central FHIR server; safe to reuse across calls (not threads)."""

    ACCEPT = FHIR_JSON
    STALE_STATUSES = (409, 412)

    def ping(self, timeout: float) -> None:
        """Ask for the server's CapabilityStatement: a TransientError if it does not answer (the breaker's probe)."""
        self.http.request("GET", "metadata", params={"_summary": "true"}, timeout=timeout)

    # --- Reads ------------------------------------------------------------

    def read(self, resource_type: str, resource_id: str) -> dict[str, Any]:
        return self.http.request("GET", _path(resource_type, resource_id)).json()

    def vread(self, resource_type: str, resource_id: str, version_id: str) -> dict[str, Any]:
        return self.http.request("GET", _path(resource_type, resource_id, version_id)).json()

    def everything(self, patient_id: str) -> Iterator[dict[str, Any]]:
        """``Patient/<id>/$everything``: the Patient and every resource in its compartment, every page."""
        for entry in self._entries(f"{_path('Patient', patient_id)}/$everything", None):
            if "resource" in entry:
                yield entry["resource"]

    def latest_version(self, resource_type: str, resource_id: str) -> HistoryEntry | None:
        """The resource's newest version from its own ``_history``, a deletion included (None if never written).

        A read of a deleted resource answers 410 without the deletion's version; an
        update after the delete needs it for If-Match (HAPI accepts that version as current).
        """
        bundle = self.http.request("GET", f"{_path(resource_type, resource_id)}/_history", params={"_count": "1"}).json()
        entries = bundle.get("entry") or []
        return history_entry(entries[0]) if entries else None

    def vread_many(self, refs: Sequence[tuple[str, str, str]]) -> list[dict[str, Any]]:
        """Several exact versions (type, id, version) in one round trip, in the order asked.

        A batch of GETs: the server answers each entry on its own, so every
        entry's status is checked and the first that is not 200 raises the
        error a single ``vread`` of it would have raised.
        """
        if not refs:
            return []
        paths = [_path(t, i, v) for t, i, v in refs]
        bundle = {"resourceType": "Bundle", "type": "batch",
                  "entry": [{"request": {"method": "GET", "url": path}} for path in paths]}
        answer = self.http.request("POST", "", json=bundle, headers={"Content-Type": FHIR_JSON}).json()
        entries = answer.get("entry") or []
        if len(entries) != len(paths):
            raise InvalidRequest(method="POST", path="(batch)", status=200,
                                 reason=f"batch answered {len(entries)} entries for {len(paths)} reads")
        resources = []
        for path, entry in zip(paths, entries):
            status = _status_code((entry.get("response") or {}).get("status"))
            if status != 200 or "resource" not in entry:
                # The error a plain GET of this path answered with this status would have raised.
                raise error_for_status(status, frozenset(), method="GET", path=path,
                                       detail=(entry.get("response") or {}).get("outcome"))
            resources.append(entry["resource"])
        return resources

    def search(self, resource_type: str, params: Criteria | None = None) -> Iterator[dict[str, Any]]:
        """Every matching resource, following ``next`` links page by page.

        Entries with search mode ``outcome`` (server warnings) are skipped.
        """
        for entry in self._entries(ids.fhir_type(resource_type), params):
            if (entry.get("search") or {}).get("mode") != "outcome" and "resource" in entry:
                yield entry["resource"]

    def history(
        self,
        since: datetime,
        resource_types: Sequence[str] | None = None,
        *,
        until: datetime | None = None,
        page_size: int | None = None,
    ) -> Iterator[HistoryEntry]:
        """Every version written at or after ``since`` (and before ``until``, if given), deletes included.

        System-level ``_history`` without ``resource_types``; otherwise one
        type-level history per type, one after the other. HAPI lists newest
        first within each. With ``until`` the window is ``_at=ge..&_at=lt..``:
        HAPI refuses ``_since`` and ``_at`` together.
        """
        if since.tzinfo is None or (until is not None and until.tzinfo is None):
            raise ValueError("since and until must be timezone-aware")
        params: list[tuple[str, str]] = (
            [("_since", since.isoformat())] if until is None
            else [("_at", f"ge{_instant(since)}"), ("_at", f"lt{_instant(until)}")])
        if page_size:
            params.append(("_count", str(page_size)))
        paths = [f"{ids.fhir_type(t)}/_history" for t in resource_types] if resource_types else ["_history"]
        for path in paths:
            for entry in self._entries(path, params):
                yield history_entry(entry)

    # --- Writes -----------------------------------------------------------

    def create(self, resource: dict[str, Any], *, if_none_exist: Criteria | None = None) -> Written:
        """Create; with ``if_none_exist`` a retry finds the first attempt's resource instead of a twin.

        HAPI's 412 here means the criteria matched several resources, a data
        problem rather than a stale version, so it raises ``InvalidRequest``;
        a 409 (two racing conditional creates) still means "re-read".
        """
        headers = _write_headers()
        if if_none_exist is not None:
            headers["If-None-Exist"] = str(httpx.QueryParams(if_none_exist))
        response = self.http.request(
            "POST", ids.fhir_type(resource["resourceType"]), json=resource, headers=headers, stale_statuses=(409,)
        )
        return _written(response, resource["resourceType"])

    def update(self, resource: dict[str, Any], *, if_match_version: str | None = None) -> Written:
        """Update (or create with a client id); ``if_match_version`` guards against lost updates."""
        headers = _write_headers()
        if if_match_version is not None:
            headers["If-Match"] = f'W/"{if_match_version}"'
        resource_type = resource["resourceType"]
        response = self.http.request("PUT", _path(resource_type, resource["id"]), json=resource, headers=headers)
        return _written(response, resource_type)

    def conditional_update(self, resource: dict[str, Any], criteria: Criteria) -> Written:
        """Update the one resource matching ``criteria``, or create it when none does."""
        resource_type = resource["resourceType"]
        response = self.http.request(
            "PUT", ids.fhir_type(resource_type), params=criteria, json=resource, headers=_write_headers()
        )
        return _written(response, resource_type)

    def delete(self, resource_type: str, resource_id: str, *, if_match_version: str | None = None) -> None:
        headers = {"If-Match": f'W/"{if_match_version}"'} if if_match_version is not None else {}
        self.http.request("DELETE", _path(resource_type, resource_id), headers=headers)

    def transaction(self, bundle: dict[str, Any], *, representation: bool = False) -> TransactionResult:
        """Post a transaction Bundle: all entries commit or none do (any failure raises).

        With ``representation`` each entry's answer carries the resource as stored
        (HAPI 8.8 does so for creates, conditional-create matches, updates and
        no-change updates alike), so no read-back round trip is needed.

        A 412 means "your version is stale" only when an entry quoted one (If-Match); without, it is the
        server refusing a conditional URL (HAPI-0539: the resource does not match its If-None-Exist), which
        re-checking cannot mend: an InvalidRequest, not a PreconditionFailed.  409 stays stale either way
        (two concurrent conditional creates of one identifier).
        """
        if bundle.get("type") not in ("transaction", "batch"):
            raise ValueError("bundle type must be transaction or batch")
        prefer = "return=representation" if representation else "return=minimal"
        quotes_versions = any("ifMatch" in e.get("request", {}) for e in bundle.get("entry", []))
        answer = self.http.request(
            "POST", "", json=bundle, headers={"Content-Type": FHIR_JSON, "Prefer": prefer},
            stale_statuses=self.STALE_STATUSES if quotes_versions else (409,),
        ).json()
        return TransactionResult(bundle=answer, entries=[_entry_result(e) for e in answer.get("entry", [])])

    # --- Operations -------------------------------------------------------

    def validate(self, resource: dict[str, Any], profile: str | None = None) -> dict[str, Any]:
        """The server's OperationOutcome for ``resource``, whether it passes or not.

        HAPI answers an invalid resource with 412 (or 400/422) carrying the
        outcome; that is a validation result here, not an error.
        """
        params = {"profile": profile} if profile else None
        try:
            response = self.http.request(
                "POST",
                f"{ids.fhir_type(resource['resourceType'])}/$validate",
                params=params,
                json=resource,
                headers={"Content-Type": FHIR_JSON},
            )
        except (InvalidRequest, PreconditionFailed) as exc:
            if isinstance(exc.detail, dict) and exc.detail.get("resourceType") == "OperationOutcome":
                return exc.detail
            raise
        return response.json()

    # --- Paging -----------------------------------------------------------

    def _entries(self, path: str, params: Criteria | None) -> Iterator[dict[str, Any]]:
        url: str | None = path
        while url:
            bundle = self.http.request("GET", url, params=params).json()
            yield from bundle.get("entry", [])
            # The next link already carries the query (and the server's page id).
            url, params = _link(bundle, "next"), None
            if url is not None and not _on_base(url, self.http.base_url):
                # Only pages of this server: a link elsewhere would take our requests (and credentials) there.
                raise InvalidRequest(method="GET", path=path, reason="next link leaves the server's base URL")


def _path(resource_type: str, resource_id: str, version_id: str | None = None) -> str:
    """``Type/id`` or ``Type/id/_history/vid``, each part checked (``sync.clients.ids``) before it enters the path."""
    path = f"{ids.fhir_type(resource_type)}/{ids.fhir_id(resource_id)}"
    return path if version_id is None else f"{path}/_history/{ids.fhir_id(str(version_id))}"


def _instant(moment: datetime) -> str:
    """A FHIR instant in UTC with microseconds (``2026-03-01T12:00:00.000001Z``)."""
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _status_code(status: str | None) -> int | None:
    """``"200 OK"`` -> 200; a missing or malformed status is None."""
    head = (status or "").split(" ", 1)[0]
    return int(head) if head.isdigit() else None


def _write_headers() -> dict[str, str]:
    return {"Content-Type": FHIR_JSON, "Prefer": "return=representation"}


def _written(response: httpx.Response, resource_type: str) -> Written:
    resource = response.json() if response.content else None
    if resource and resource.get("resourceType") == resource_type:
        resource_id = resource["id"]
        version_id = (resource.get("meta") or {}).get("versionId")
    else:
        resource = None
        _, resource_id, version_id = _split_location(response.headers["Location"])
    version_id = version_id or unquote_etag(response.headers.get("ETag"))
    return Written(resource_type, resource_id, version_id, resource, created=response.status_code == 201)


def _entry_result(entry: dict[str, Any]) -> EntryResult:
    answer = entry.get("response") or {}
    location = answer.get("location")
    resource_type = resource_id = version_id = None
    if location:
        resource_type, resource_id, version_id = _split_location(location)
    etag = answer.get("etag")
    return EntryResult(
        status=int(answer.get("status", "0").split()[0]),
        location=location,
        etag=etag,
        resource_type=resource_type,
        id=resource_id,
        version_id=version_id or unquote_etag(etag),
        outcome=answer.get("outcome"),
        resource=entry.get("resource") if isinstance(entry.get("resource"), dict) else None,
    )


def history_entry(entry: dict[str, Any]) -> HistoryEntry:
    """One `_history` Bundle entry, read alike by the client's pages and detection's paged catch-up."""
    resource = entry.get("resource")
    request = entry.get("request") or {}
    answer = entry.get("response") or {}
    if resource:
        resource_type, resource_id = resource["resourceType"], resource["id"]
        version_id = (resource.get("meta") or {}).get("versionId")
        last_updated = (resource.get("meta") or {}).get("lastUpdated")
    else:
        where = answer.get("location") or request.get("url") or entry.get("fullUrl", "")
        resource_type, resource_id, version_id = _split_location(where)
        last_updated = answer.get("lastModified")
    return HistoryEntry(
        resource_type=resource_type,
        id=resource_id,
        version_id=version_id or unquote_etag(answer.get("etag")),
        method=request.get("method"),
        last_updated=last_updated,
        resource=resource,
    )


def _split_location(location: str) -> tuple[str, str, str | None]:
    """``[base/]Type/id[/_history/n]`` -> (Type, id, n or None)."""
    parts = location.split("?", 1)[0].rstrip("/").split("/")
    version_id = None
    if len(parts) >= 2 and parts[-2] == "_history":
        version_id = parts[-1]
        parts = parts[:-2]
    return parts[-2], parts[-1], version_id


def _on_base(url: str, base_url: str) -> bool:
    """True if ``url`` is absolute, with the base's scheme, host and port, and under its path."""
    try:
        target, base = httpx.URL(url), httpx.URL(base_url.rstrip("/") + "/")
    except (httpx.InvalidURL, TypeError):
        return False
    return (target.scheme, target.host, target.port) == (base.scheme, base.host, base.port) and \
        (target.path + "/").startswith(base.path) and ".." not in target.path.split("/")


def _link(bundle: dict[str, Any], relation: str) -> str | None:
    for link in bundle.get("link", []):
        if link.get("relation") == relation:
            return link.get("url")
    return None
