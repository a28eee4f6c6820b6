"""Typed errors the sync engine decides on.

The engine never looks at status codes: it retries a ``TransientError``,
re-reads and merges on ``PreconditionFailed``, dead-letters an
``InvalidRequest`` and treats ``NotFound`` as "gone on the other side".

Messages carry method, path, status and server error codes only. Query values
are masked in ``path`` (``identifier=...`` can be a patient number) and the
server's error body is kept whole in ``detail`` for the dead-letter record,
never copied into the message, because both servers echo payload fragments in
their diagnostics.
"""

from __future__ import annotations

import re
from typing import Any

_HAPI_CODE = re.compile(r"HAPI-\d{4}")


class ClientError(Exception):
    """Base of every error raised by ``sync.clients``."""

    def __init__(
        self,
        *,
        method: str,
        path: str,
        status: int | None = None,
        detail: Any = None,
        reason: str | None = None,
    ):
        self.method = method
        self.path = path
        self.status = status
        self.detail = detail
        self.reason = reason
        super().__init__(self._summary())

    def _summary(self) -> str:
        outcome = f"status {self.status}" if self.status is not None else self.reason
        codes = error_codes(self.detail)
        suffix = f" [{', '.join(codes)}]" if codes else ""
        return f"{self.method} {self.path}: {outcome}{suffix}"


class TransientError(ClientError):
    """Worth retrying: transport failure, timeout, 429 or 5xx.

    ``retry_after_seconds`` is the server's Retry-After hint, when it sent one.
    """

    def __init__(self, *, retry_after_seconds: float | None = None, **kwargs: Any):
        self.retry_after_seconds = retry_after_seconds
        super().__init__(**kwargs)


class PreconditionFailed(ClientError):
    """The version we based a write on is stale (EHRbase 412, HAPI 409/412)."""


class InvalidRequest(ClientError):
    """The server refused the request as such (other 4xx); retrying won't help."""


class NotFound(ClientError):
    """The resource or composition does not exist (404), or was deleted (410)."""


def error_codes(detail: Any) -> list[str]:
    """Machine codes from an OperationOutcome, safe to log.

    Returns the ``issue.code`` values plus any ``HAPI-nnnn`` message ids; the
    free-text diagnostics themselves are left out because HAPI quotes resource
    content in them.
    """
    if not isinstance(detail, dict) or detail.get("resourceType") != "OperationOutcome":
        return []
    codes: list[str] = []
    for issue in detail.get("issue", []):
        if issue.get("code"):
            codes.append(issue["code"])
        codes.extend(_HAPI_CODE.findall(issue.get("diagnostics", "")))
    return list(dict.fromkeys(codes))
