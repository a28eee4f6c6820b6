"""Where a site may point and which secret it may name: the operator decides, not the site's row.

A site row is data an admin-role account (or its API token) can change, so
neither field is trusted: ``credentials_ref`` may only name a variable with the
``CONFLICTDESK_SITE_CREDENTIALS_`` prefix (never ``DATABASE_URL`` or the
secret key), and ``openehr_base_url`` must match one of the operator's
``CONFLICTDESK_SITE_URL_ALLOWLIST`` entries (``scheme://host[:port]``; a host
``*.example.org`` matches its subdomains, a port ``*`` any port, no port the
scheme's default). The actions check both on every change; the engine checks
again before it sends a request, in case a row was changed some other way.
"""
from __future__ import annotations

import re
from urllib.parse import urlsplit

from django.conf import settings

CREDENTIALS_PREFIX = "CONFLICTDESK_SITE_CREDENTIALS_"
_CREDENTIALS_REF = re.compile(rf"^{CREDENTIALS_PREFIX}[A-Z0-9_]+$")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def credentials_ref_allowed(name: str) -> bool:
    """Empty (no credentials) or a variable under the fixed prefix."""
    return name == "" or bool(_CREDENTIALS_REF.match(name))


def url_allowed(url: str) -> bool:
    """True if ``url`` is http(s), carries no user info, and its origin is on the operator's allow-list."""
    origin = _origin(url)
    return origin is not None and any(_matches(origin, entry) for entry in settings.CONFLICTDESK_SITE_URL_ALLOWLIST)


def _origin(url: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or parts.username or parts.password:
        return None
    return scheme, parts.hostname.lower().rstrip("."), port or _DEFAULT_PORTS[scheme]


def _matches(origin: tuple[str, str, int], entry: str) -> bool:
    scheme, host, port = origin
    match = re.fullmatch(r"(https?)://([^/:]+)(?::(\d+|\*))?/?", entry.strip().lower())
    if match is None:
        return False
    want_scheme, want_host, want_port = match.groups()
    if want_scheme != scheme:
        return False
    if want_port != "*" and int(want_port or _DEFAULT_PORTS[want_scheme]) != port:
        return False
    if want_host.startswith("*."):
        return host.endswith(want_host[1:])
    return host == want_host
