"""The one request wrapper both clients go through.

It owns the timeout policy and the translation of transport failures and HTTP
statuses into ``sync.clients.errors``, so the openEHR and FHIR clients only
describe requests and parse answers.
"""

from __future__ import annotations

import email.utils
import json
import re
from datetime import datetime, timezone
from typing import Any, Iterable

import httpx

from .errors import ClientError, InvalidRequest, NotFound, PreconditionFailed, TransientError

# Connect fails fast so a dead site is noticed quickly; reads get longer because
# AQL over a large CDR and HAPI transaction bundles can take several seconds.
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)

_TRANSIENT_STATUSES = {429}

# A server's Retry-After is a hint from outside: longer than this is read as this
# (the engine caps it again with CONFLICTDESK_RETRY_AFTER_MAX_SECONDS). An unbounded
# value once overflowed the scheduler and parked a run for ever.
MAX_RETRY_AFTER_SECONDS = 300.0
_DELTA_SECONDS = re.compile(r"[0-9]{1,12}")  # ASCII digits only: str.isdigit() accepts "²"

_ssl_context = None


def _shared_ssl_context():
    """One TLS context per process, as httpx would build by default (certifi, SSL_CERT_FILE/DIR honoured).

    httpx builds (and loads the CA bundle into) a fresh context for every
    Client: measured 45-65 ms of CPU each, and the engine makes a client per
    run step and per poll, so it was most of a run's CPU. Shared, a client costs ~3 ms.
    """
    global _ssl_context
    if _ssl_context is None:
        _ssl_context = httpx.create_ssl_context()
    return _ssl_context


class HttpSession:
    """An ``httpx.Client`` bound to one server, raising typed errors.

    ``stale_statuses`` are the statuses that mean "your version is stale" on
    this server; callers can widen them per request (EHRbase answers a stale
    composition delete with 409 but a duplicate template with 409 too).
    """

    def __init__(
        self,
        base_url: str,
        *,
        auth: httpx.Auth | tuple[str, str] | None,
        timeout: float | httpx.Timeout,
        transport: httpx.BaseTransport | None,
        headers: dict[str, str],
        stale_statuses: Iterable[int],
    ):
        self.base_url = base_url.rstrip("/")
        self.stale_statuses = frozenset(stale_statuses)
        self._client = httpx.Client(
            base_url=self.base_url + "/",
            auth=auth,
            timeout=timeout,
            transport=transport,
            headers=headers,
            verify=_shared_ssl_context(),
        )

    def request(
        self,
        method: str,
        url: str,
        *,
        stale_statuses: Iterable[int] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send one request; return the response if 2xx, raise a typed error otherwise.

        ``url`` is relative to the base URL (a leading slash is tolerated) or
        absolute, as paging links are.
        """
        if not url.startswith(("http://", "https://")):
            url = url.lstrip("/")
        request = self._client.build_request(method, url, **kwargs)
        try:
            response = self._client.send(request)
        except httpx.TimeoutException as exc:
            raise TransientError(
                method=method, path=safe_path(request.url), reason=f"timeout ({type(exc).__name__})"
            ) from exc
        except httpx.TransportError as exc:
            raise TransientError(
                method=method, path=safe_path(request.url), reason=f"transport error ({type(exc).__name__})"
            ) from exc
        if response.is_success:
            return response
        stale = self.stale_statuses if stale_statuses is None else frozenset(stale_statuses)
        raise error_for(response, stale)

    def close(self) -> None:
        self._client.close()

    @property
    def closed(self) -> bool:
        return self._client.is_closed


class ServerClient:
    """A client of one server over its own HttpSession; reusable across calls (not threads), a context manager.

    Subclasses say what they accept and which statuses mean "your version is stale"
    (the engine's conflict path), since the two servers answer a stale write differently.
    """

    ACCEPT = "application/json"
    STALE_STATUSES: tuple[int, ...] = ()

    def __init__(
        self,
        base_url: str,
        *,
        auth: httpx.Auth | tuple[str, str] | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ):
        self.http = HttpSession(base_url, auth=auth, timeout=timeout, transport=transport,
                                headers={"Accept": self.ACCEPT}, stale_statuses=self.STALE_STATUSES)

    def close(self) -> None:
        self.http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def error_for(response: httpx.Response, stale_statuses: frozenset[int]) -> ClientError:
    """Map a non-2xx response to the error the engine acts on."""
    return error_for_status(
        response.status_code,
        stale_statuses,
        retry_after_seconds=retry_after(response),
        method=response.request.method,
        path=safe_path(response.request.url),
        detail=error_detail(response),
    )


def error_for_status(
    status: int | None, stale_statuses: frozenset[int], *, retry_after_seconds: float | None = None, **common: Any
) -> ClientError:
    """The error for a non-2xx status, wherever it came from (a response, or one entry of a batch)."""
    if status is not None and (status in _TRANSIENT_STATUSES or status >= 500):
        return TransientError(retry_after_seconds=retry_after_seconds, status=status, **common)
    if status in stale_statuses:
        return PreconditionFailed(status=status, **common)
    if status in (404, 410):
        return NotFound(status=status, **common)
    return InvalidRequest(status=status, **common)


def safe_path(url: httpx.URL) -> str:
    """The URL path with query values masked: names stay, values may be patient data."""
    if not url.query:
        return url.path
    names = "&".join(f"{name}=..." for name in dict.fromkeys(url.params.keys()))
    return f"{url.path}?{names}"


def error_detail(response: httpx.Response) -> Any:
    """The server's error body, parsed if JSON (OperationOutcome, openEHR error), else text."""
    if not response.content:
        return None
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return response.text


def retry_after(response: httpx.Response, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header, in either of its two forms, at most ``MAX_RETRY_AFTER_SECONDS``.

    Anything that is neither a run of ASCII digits nor an HTTP date is ignored (``None``).
    """
    value = response.headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        return min(float(value), MAX_RETRY_AFTER_SECONDS)
    if re.fullmatch(r"[0-9]+", value):  # more digits than any sane delay
        return MAX_RETRY_AFTER_SECONDS
    try:
        when = email.utils.parsedate_to_datetime(value)
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - (now or datetime.now(timezone.utc))).total_seconds()
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER_SECONDS)


def unquote_etag(etag: str | None) -> str | None:
    """``W/"3"`` or ``"uid::sys::1"`` -> ``3`` / ``uid::sys::1``."""
    if etag is None:
        return None
    etag = etag.strip()
    if etag.startswith("W/"):
        etag = etag[2:]
    return etag.strip('"')
