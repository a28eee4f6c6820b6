"""HTTP/1.1 framing, just enough to find where one message ends.

The proxy never interprets payloads: it reads a head (start line and header
fields), works out how the body is delimited (RFC 9112 section 6) and copies
the raw bytes on, chunk framing included. Every read has an idle timeout so a
silent peer cannot hold a connection forever.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Awaitable, Callable

# Bigger than any head HAPI or EHRbase sends; StreamReader refuses longer lines.
HEAD_LIMIT = 1 << 20
CHUNK = 64 * 1024
# A request body is held in memory (so a stale upstream connection can be
# retried); bundles posted to HAPI stay far below this.
MAX_REQUEST_BODY = 256 * 1024 * 1024
CONTROL_BODY_LIMIT = 64 * 1024
MAX_TRAILER_LINES = 100

Sink = Callable[[bytes], Awaitable[None]]


class ProtocolError(Exception):
    """The peer sent something that is not HTTP/1.x, or stopped mid-message."""


@dataclass(frozen=True)
class Head:
    """A request or status line with its header fields, as received."""

    start: str
    fields: tuple[tuple[str, str], ...]

    def get(self, name: str) -> str | None:
        name = name.lower()
        values = [v for k, v in self.fields if k.lower() == name]
        return ", ".join(values) if values else None

    def tokens(self, name: str) -> set[str]:
        """Comma-separated tokens of a field, lower-cased (``Connection``, ``Transfer-Encoding``)."""
        value = self.get(name) or ""
        return {t.strip().lower() for t in value.split(",") if t.strip()}

    def without(self, name: str) -> "Head":
        return Head(self.start, tuple((k, v) for k, v in self.fields if k.lower() != name.lower()))

    def encode(self) -> bytes:
        lines = [self.start, *(f"{k}: {v}" for k, v in self.fields), "", ""]
        return "\r\n".join(lines).encode("latin-1")

    @property
    def version(self) -> str:
        part = self.start.split(" ", 1)[0] if self.start.startswith("HTTP/") else self.start.rsplit(" ", 1)[-1]
        return part.upper()

    def wants_close(self) -> bool:
        """True when this message ends the connection (``Connection: close`` or HTTP/1.0 without keep-alive)."""
        connection = self.tokens("connection")
        if "close" in connection:
            return True
        return self.version == "HTTP/1.0" and "keep-alive" not in connection


@dataclass(frozen=True)
class Request:
    head: Head
    method: str
    target: str


@dataclass(frozen=True)
class Response:
    head: Head
    status: int


class Stream:
    """A StreamReader whose every read gives up after ``idle`` seconds of silence."""

    def __init__(self, reader: asyncio.StreamReader, idle: float):
        self.reader = reader
        self.idle = idle

    async def read(self, n: int) -> bytes:
        return await asyncio.wait_for(self.reader.read(n), self.idle)

    async def readexactly(self, n: int) -> bytes:
        try:
            return await asyncio.wait_for(self.reader.readexactly(n), self.idle)
        except asyncio.IncompleteReadError as exc:
            raise ProtocolError("connection closed mid-body") from exc

    async def readuntil(self, separator: bytes) -> bytes:
        try:
            return await asyncio.wait_for(self.reader.readuntil(separator), self.idle)
        except asyncio.IncompleteReadError as exc:
            if not exc.partial.strip():
                raise EOFError from exc
            raise ProtocolError("connection closed mid-line") from exc
        except asyncio.LimitOverrunError as exc:
            raise ProtocolError("line too long") from exc

    def at_eof(self) -> bool:
        return self.reader.at_eof()


async def read_head(stream: Stream) -> Head | None:
    """The next message head, or None when the peer closed cleanly between messages."""
    try:
        raw = await stream.readuntil(b"\r\n\r\n")
    except EOFError:
        return None
    # RFC 9112 2.2: a server should ignore empty lines before a request line.
    lines = raw.decode("latin-1").lstrip("\r\n").split("\r\n")
    if not lines[0]:
        raw = await stream.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
    fields = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise ProtocolError("malformed header field")
        fields.append((name, value.strip()))
    return Head(lines[0], tuple(fields))


def parse_request(head: Head) -> Request:
    parts = head.start.split(" ")
    if len(parts) != 3 or not parts[2].upper().startswith("HTTP/1."):
        raise ProtocolError("malformed request line")
    return Request(head, parts[0], parts[1])


def parse_response(head: Head) -> Response:
    parts = head.start.split(" ", 2)
    if len(parts) < 2 or not parts[0].upper().startswith("HTTP/1.") or not parts[1].isdigit():
        raise ProtocolError("malformed status line")
    return Response(head, int(parts[1]))


def request_framing(head: Head) -> tuple[str, int]:
    """("chunked", 0), ("length", n) or ("none", 0) for a request body."""
    if "chunked" in head.tokens("transfer-encoding"):
        return "chunked", 0
    length = _content_length(head)
    return ("length", length) if length else ("none", 0)


def response_framing(head: Head, status: int, request_method: str) -> tuple[str, int]:
    """Like ``request_framing``; a response with neither field runs until the server closes."""
    if request_method == "HEAD" or status < 200 or status in (204, 304):
        return "none", 0
    if "chunked" in head.tokens("transfer-encoding"):
        return "chunked", 0
    length = _content_length(head)
    if length is not None:
        return ("length", length) if length else ("none", 0)
    return "close", 0


def _content_length(head: Head) -> int | None:
    value = head.get("content-length")
    if value is None:
        return None
    values = {v.strip() for v in value.split(",")}
    if len(values) != 1 or not next(iter(values)).isdigit():
        raise ProtocolError("bad Content-Length")
    return int(values.pop())


async def copy_body(stream: Stream, framing: tuple[str, int], sink: Sink, *, limit: int | None = None) -> int:
    """Copy one body's raw bytes (chunk framing included) to ``sink``; return the byte count."""
    kind, length = framing
    if kind == "length":
        return await _copy_length(stream, length, sink, limit)
    if kind == "chunked":
        return await _copy_chunked(stream, sink, limit)
    if kind == "close":
        return await _copy_to_eof(stream, sink, limit)
    return 0


async def read_body(stream: Stream, framing: tuple[str, int], *, limit: int = MAX_REQUEST_BODY) -> bytes:
    parts: list[bytes] = []

    async def keep(data: bytes) -> None:
        parts.append(data)

    await copy_body(stream, framing, keep, limit=limit)
    return b"".join(parts)


def _check(total: int, limit: int | None) -> None:
    if limit is not None and total > limit:
        raise ProtocolError("body too large")


async def _copy_length(stream: Stream, length: int, sink: Sink, limit: int | None) -> int:
    _check(length, limit)
    remaining = length
    while remaining:
        data = await stream.read(min(CHUNK, remaining))
        if not data:
            raise ProtocolError("connection closed mid-body")
        remaining -= len(data)
        await sink(data)
    return length


async def _copy_chunked(stream: Stream, sink: Sink, limit: int | None) -> int:
    total = 0
    while True:  # ends at the last chunk; each read is bounded by the idle timeout
        line = await _line(stream)
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError as exc:
            raise ProtocolError("bad chunk size") from exc
        total += len(line)
        _check(total + size, limit)
        await sink(line)
        if size == 0:
            break
        remaining = size + 2  # the chunk and its CRLF
        while remaining:
            data = await stream.read(min(CHUNK, remaining))
            if not data:
                raise ProtocolError("connection closed mid-chunk")
            remaining -= len(data)
            total += len(data)
            await sink(data)
    for _ in range(MAX_TRAILER_LINES):
        line = await _line(stream)
        total += len(line)
        await sink(line)
        if line == b"\r\n":
            return total
    raise ProtocolError("too many trailer fields")


async def _copy_to_eof(stream: Stream, sink: Sink, limit: int | None) -> int:
    total = 0
    while data := await stream.read(CHUNK):
        total += len(data)
        _check(total, limit)
        await sink(data)
    return total


async def _line(stream: Stream) -> bytes:
    try:
        return await stream.readuntil(b"\r\n")
    except EOFError as exc:
        raise ProtocolError("connection closed mid-body") from exc
