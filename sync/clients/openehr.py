"""Client for one site's openEHR CDR (REST API v1, as EHRbase 2.x implements it).

Version identity is the thread through this module: every write returns a
``VersionRef`` whose ``version_uid`` (``uuid::system::n``) is what the next
update or delete must quote. EHRbase wants that value bare in ``If-Match``
(its controller builds an ``ObjectVersionId`` straight from the header), so we
never send the quoted ETag back.

The change feed (``changes_since``) lives in ``openehr_changes`` because its
paging rules deserve their own explanation.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterator

import httpx

from . import ids
from .errors import InvalidRequest, NotFound
from .http import ServerClient, unquote_etag
from .openehr_changes import ChangeRow, iter_changes

FLAT_JSON = "application/openehr.wt.flat.schema+json"
WEB_TEMPLATE_JSON = "application/openehr.wt+json"
_OPT_NS = {"opt": "http://schemas.openehr.org/v1"}


@dataclass(frozen=True)
class VersionRef:
    """One committed version: ``uid`` names the composition, ``version_uid`` this version of it."""

    uid: str
    version_uid: str
    ehr_id: str
    etag: str | None = None

    @property
    def version(self) -> int:
        return int(self.version_uid.rsplit("::", 1)[1])

    @classmethod
    def parse(cls, version_uid: str, ehr_id: str, etag: str | None = None) -> "VersionRef":
        return cls(uid=version_uid.split("::", 1)[0], version_uid=version_uid, ehr_id=ehr_id, etag=etag)


@dataclass(frozen=True)
class Composition:
    """A composition as stored: its version and its content (canonical or FLAT)."""

    ref: VersionRef
    content: dict[str, Any]


@dataclass(frozen=True)
class Ehr:
    ehr_id: str
    system_id: str | None
    time_created: str | None
    ehr_status_version_uid: str | None


@dataclass(frozen=True)
class TemplateInfo:
    template_id: str
    concept: str | None
    archetype_id: str | None
    created_timestamp: str | None


@dataclass(frozen=True)
class TemplateUpload:
    """``created`` is False when the CDR kept the copy it already had (409).

    A CDR running with ``ehrbase.template.allow-overwrite`` replaces the
    template instead and answers 201, so ``created`` is True again.
    """

    template_id: str
    created: bool


@dataclass(frozen=True)
class Revision:
    version_uid: str
    committed_at: str | None
    change_type: str | None
    # The version's AUDIT_DETAILS as the CDR keeps them: who committed it (its name) and on which system.
    committer: str | None = None
    system_id: str | None = None


def template_id_of(opt_xml: str | bytes) -> str:
    """The ``template_id`` an operational template declares, as the CDR will index it."""
    root = ET.fromstring(opt_xml.encode() if isinstance(opt_xml, str) else opt_xml)
    value = root.find("opt:template_id/opt:value", _OPT_NS)
    if value is None or not value.text:
        raise ValueError("OPT has no template_id/value")
    return value.text.strip()


class OpenEHRClient(ServerClient):
    """Talks to one CDR; one instance per site, safe to reuse across calls (not threads)."""

    # 412 is EHRbase's answer to a stale If-Match. Its 409 usually means
    # "already exists" (template, EHR id), so only delete widens this.
    STALE_STATUSES = (412,)

    # --- EHRs -------------------------------------------------------------

    def create_ehr(
        self,
        *,
        ehr_id: str | None = None,
        subject_id: str | None = None,
        subject_namespace: str | None = None,
    ) -> Ehr:
        """Create an EHR, optionally with our own id and tied to a subject.

        A client-chosen ``ehr_id`` (PUT) lets a retried task land on the same
        EHR instead of creating a twin. The subject goes into EHR_STATUS
        ``subject.external_ref`` so ``find_ehr`` can locate it later.
        """
        body = b""
        if subject_id is not None:
            if not subject_namespace:
                raise ValueError("subject_namespace is required with subject_id")
            body = json.dumps(_ehr_status(subject_id, subject_namespace)).encode()
        headers = {"Content-Type": "application/json", "Prefer": "return=representation"}
        if ehr_id:
            response = self.http.request("PUT", f"ehr/{ids.ehr_id(ehr_id)}", content=body, headers=headers)
        else:
            response = self.http.request("POST", "ehr", content=body, headers=headers)
        return _parse_ehr(response)

    def get_ehr(self, ehr_id: str) -> Ehr:
        return _parse_ehr(self.http.request("GET", f"ehr/{ids.ehr_id(ehr_id)}"))

    def find_ehr(self, subject_id: str, subject_namespace: str) -> Ehr | None:
        """The EHR of a subject, or None when the CDR has none."""
        try:
            response = self.http.request(
                "GET", "ehr", params={"subject_id": subject_id, "subject_namespace": subject_namespace}
            )
        except NotFound:
            return None
        return _parse_ehr(response)

    # --- Templates --------------------------------------------------------

    def upload_template(self, opt_xml: str | bytes) -> TemplateUpload:
        """Upload an ADL 1.4 OPT; uploading one the CDR already has is not an error."""
        template_id = template_id_of(opt_xml)
        try:
            self.http.request(
                "POST",
                "definition/template/adl1.4",
                content=opt_xml,
                headers={"Content-Type": "application/xml", "Accept": "application/xml", "Prefer": "return=minimal"},
            )
        except InvalidRequest as exc:
            if exc.status != 409:
                raise
            return TemplateUpload(template_id, created=False)
        return TemplateUpload(template_id, created=True)

    def ping(self, timeout: float) -> None:
        """Ask for an EHR no CDR holds: a TransientError if it does not answer (the breaker's probe).

        Its 404 is an answer and costs the CDR one index lookup (listing templates took a second).
        """
        self.http.request("GET", "ehr/00000000-0000-0000-0000-000000000000", timeout=timeout)

    def list_templates(self) -> list[TemplateInfo]:
        rows = self.http.request("GET", "definition/template/adl1.4").json()
        return [
            TemplateInfo(
                template_id=row["template_id"],
                concept=row.get("concept"),
                archetype_id=row.get("archetype_id"),
                created_timestamp=row.get("created_timestamp"),
            )
            for row in rows
        ]

    def web_template(self, template_id: str) -> dict[str, Any]:
        """The web template (the JSON tree FLAT paths are derived from)."""
        return self.http.request(
            "GET", f"definition/template/adl1.4/{ids.segment(template_id, 'template id')}", headers={"Accept": WEB_TEMPLATE_JSON}
        ).json()

    # --- Compositions -----------------------------------------------------

    def create_composition(
        self, ehr_id: str, composition: dict[str, Any], *, template_id: str | None = None
    ) -> VersionRef:
        """Commit a new composition; with ``template_id`` the content is FLAT for that template.

        A create has no version to be stale on, so a 412 here (EHRbase's answer
        to a ``uid`` minted by another system) is an ``InvalidRequest``.
        """
        response = self.http.request(
            "POST",
            f"ehr/{ids.ehr_id(ehr_id)}/composition",
            stale_statuses=(),
            **_composition_body(composition, template_id),
        )
        return _version_ref(response, ehr_id)

    def update_composition(
        self,
        ehr_id: str,
        preceding_version_uid: str,
        composition: dict[str, Any],
        *,
        template_id: str | None = None,
    ) -> VersionRef:
        """Commit a new version on top of ``preceding_version_uid``.

        Raises ``PreconditionFailed`` when someone committed in between; the
        engine then re-reads and decides, it never blindly retries.
        """
        ids.ehr_id(ehr_id)
        uid = ids.object_uid(preceding_version_uid).split("::", 1)[0]
        request = _composition_body(composition, template_id)
        request["headers"]["If-Match"] = preceding_version_uid
        response = self.http.request("PUT", f"ehr/{ehr_id}/composition/{uid}", **request)
        return _version_ref(response, ehr_id)

    def delete_composition(self, ehr_id: str, preceding_version_uid: str) -> str | None:
        """Delete the composition; returns the deletion's version uid if the CDR reports it.

        EHRbase answers a stale ``preceding_version_uid`` here with 409, not 412.
        """
        response = self.http.request(
            "DELETE", f"ehr/{ids.ehr_id(ehr_id)}/composition/{ids.object_uid(preceding_version_uid)}", stale_statuses=(409, 412)
        )
        return unquote_etag(response.headers.get("ETag"))

    def get_composition(self, ehr_id: str, uid: str, *, flat: bool = False) -> Composition:
        """The latest version (``uid``) or a given one (``uuid::system::n``), canonical or FLAT.

        EHRbase answers 204 for a deleted composition; that surfaces as ``NotFound``.
        """
        accept = FLAT_JSON if flat else "application/json"
        path = f"ehr/{ids.ehr_id(ehr_id)}/composition/{ids.object_uid(uid)}"
        response = self.http.request("GET", path, headers={"Accept": accept})
        if response.status_code == 204:
            raise NotFound(method="GET", path=response.request.url.path, status=204, reason="deleted")
        content = response.json()
        version_uid = unquote_etag(response.headers.get("ETag")) or _uid_in_content(content)
        return Composition(ref=VersionRef.parse(version_uid, ehr_id, response.headers.get("ETag")), content=content)

    def revision_history(self, ehr_id: str, uid: str) -> list[Revision]:
        """Every version of a composition, deletions included (AQL cannot see those)."""
        path = f"ehr/{ids.ehr_id(ehr_id)}/versioned_composition/{ids.object_uid(uid)}/revision_history"
        body = self.http.request("GET", path).json()
        items = body.get("items", []) if isinstance(body, dict) else body
        revisions = []
        for item in items:
            audit = (item.get("audits") or [{}])[-1]
            revisions.append(
                Revision(
                    version_uid=item["version_id"]["value"],
                    committed_at=(audit.get("time_committed") or {}).get("value"),
                    change_type=(audit.get("change_type") or {}).get("value"),
                    committer=(audit.get("committer") or {}).get("name"),
                    system_id=audit.get("system_id"),
                )
            )
        return revisions

    # --- AQL --------------------------------------------------------------

    def query(
        self,
        aql: str,
        parameters: dict[str, Any] | None = None,
        *,
        offset: int | None = None,
        fetch: int | None = None,
    ) -> list[dict[str, Any]]:
        """Run AQL; each row comes back as a dict keyed by column alias (or path)."""
        body: dict[str, Any] = {"q": aql}
        if parameters:
            body["query_parameters"] = parameters
        if offset is not None:
            body["offset"] = offset
        if fetch is not None:
            body["fetch"] = fetch
        result = self.http.request("POST", "query/aql", json=body).json()
        names = [column.get("name") or column.get("path") for column in result.get("columns", [])]
        return [dict(zip(names, row)) for row in result.get("rows", [])]

    def changes_since(
        self, since: datetime, *, overlap_seconds: float = 5.0, page_size: int = 500
    ) -> Iterator[ChangeRow]:
        """Compositions whose latest version was committed after ``since`` (minus the overlap).

        See ``openehr_changes.iter_changes`` for the paging and de-duplication rules.
        """
        return iter_changes(self.query, since, overlap_seconds=overlap_seconds, page_size=page_size)


def _ehr_status(subject_id: str, namespace: str) -> dict[str, Any]:
    return {
        "_type": "EHR_STATUS",
        "archetype_node_id": "openEHR-EHR-EHR_STATUS.generic.v1",
        "name": {"value": "EHR Status"},
        "subject": {
            "_type": "PARTY_SELF",
            "external_ref": {
                "id": {"_type": "GENERIC_ID", "value": subject_id, "scheme": "id_scheme"},
                "namespace": namespace,
                "type": "PERSON",
            },
        },
        "is_queryable": True,
        "is_modifiable": True,
    }


def _parse_ehr(response: httpx.Response) -> Ehr:
    body = response.json()
    status_ref = body.get("ehr_status") or {}
    return Ehr(
        ehr_id=body["ehr_id"]["value"],
        system_id=(body.get("system_id") or {}).get("value"),
        time_created=(body.get("time_created") or {}).get("value"),
        ehr_status_version_uid=((status_ref.get("id") or status_ref.get("uid")) or {}).get("value"),
    )


def _composition_body(composition: dict[str, Any], template_id: str | None) -> dict[str, Any]:
    """Request kwargs for a composition write; FLAT needs its template named in the query."""
    headers = {"Prefer": "return=minimal"}
    request: dict[str, Any] = {"content": json.dumps(composition).encode(), "headers": headers}
    if template_id is None:
        headers["Content-Type"] = "application/json"
    else:
        headers["Content-Type"] = FLAT_JSON
        request["params"] = {"templateId": template_id}
    return request


def _version_ref(response: httpx.Response, ehr_id: str) -> VersionRef:
    """The new version from ETag, or from Location when a proxy dropped the ETag."""
    etag = response.headers.get("ETag")
    version_uid = unquote_etag(etag) or response.headers["Location"].rstrip("/").rsplit("/", 1)[1]
    return VersionRef.parse(version_uid, ehr_id, etag)


def _uid_in_content(content: dict[str, Any]) -> str:
    """The version uid inside a canonical (``uid.value``) or FLAT (``<tree>/_uid``) composition."""
    if isinstance(content.get("uid"), dict):
        return content["uid"]["value"]
    for key, value in content.items():
        if key.endswith("/_uid"):
            return value
    raise ValueError("composition carries no uid")
