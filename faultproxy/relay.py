"""One client connection: read each request, consult the plan, relay to the server.

Each client connection gets its own server connection, opened on the first
request that is passed through and kept while both sides keep the connection
alive, so keep-alive behaves as it would without the proxy. Bodies are copied
as raw bytes; only heads are parsed.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from http import HTTPStatus

from .faults import Plan, Rule, safe_target
from .http1 import (
    CHUNK,
    HEAD_LIMIT,
    Head,
    ProtocolError,
    Request,
    Stream,
    copy_body,
    parse_request,
    parse_response,
    read_body,
    read_head,
    request_framing,
    response_framing,
)

# Bounds on loops that a misbehaving peer could otherwise stretch.
MAX_REQUESTS_PER_CONNECTION = 100_000
MAX_INTERIM_RESPONSES = 10
# Errors that end one connection and nothing else.
CONNECTION_ERRORS = (OSError, ProtocolError, EOFError, TimeoutError, asyncio.IncompleteReadError)

_OUTCOME = {
    "resourceType": "OperationOutcome",
    "issue": [{"severity": "error", "code": "transient", "diagnostics": "faultproxy: injected fault"}],
}


class UpstreamError(Exception):
    """The server could not be reached, or closed without answering."""


class Upstream:
    """The server side of one client connection, opened lazily and reopened when stale."""

    def __init__(self, target: tuple[str, int], *, idle: float, connect_timeout: float):
        self.target = target
        self.idle = idle
        self.connect_timeout = connect_timeout
        self.stream: Stream | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def exchange(self, data: bytes) -> Head:
        """Send one request and return the response head.

        A reused connection the server closed while idle is reopened once, the
        way browsers do, provided nothing of a response had arrived.
        """
        for _ in range(2):
            reused = self.stream is not None and not self.stream.at_eof()
            if not reused:
                await self._connect()
            try:
                self.writer.write(data)
                await self.writer.drain()
                head = await read_head(self.stream)
            except (ConnectionError, ProtocolError):
                if not reused:
                    raise
                head = None
            if head is not None:
                return head
            self.close()
            if not reused:
                break
        raise UpstreamError("server closed the connection without answering")

    async def _connect(self) -> None:
        self.close()
        try:
            reader, self.writer = await asyncio.wait_for(
                asyncio.open_connection(*self.target, limit=HEAD_LIMIT), self.connect_timeout
            )
        except (OSError, TimeoutError) as exc:
            raise UpstreamError(f"cannot connect ({type(exc).__name__})") from exc
        self.stream = Stream(reader, self.idle)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.transport.abort()
        self.stream = self.writer = None


class Relay:
    """Serves client connections for one target; ``close_all`` cuts every live one."""

    def __init__(self, plan: Plan, target: tuple[str, int], *, idle: float, hang_limit: float, connect_timeout: float):
        self.plan = plan
        self.target = target
        self.idle = idle
        self.hang_limit = hang_limit
        self.connect_timeout = connect_timeout
        self._writers: set[asyncio.StreamWriter] = set()
        self._ids = itertools.count(1)

    def close_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """The ``asyncio.start_server`` callback."""
        self._writers.add(writer)
        connection = Connection(self, next(self._ids), reader, writer)
        try:
            await connection.run()
        except CONNECTION_ERRORS:
            pass
        except asyncio.CancelledError:
            # The proxy is stopping. Ending quietly: on Python 3.11 asyncio's stream callback
            # calls exception() on a cancelled task and logs the CancelledError as an error.
            pass
        finally:
            connection.upstream.close()
            writer.close()
            self._writers.discard(writer)


class Connection:
    """One client connection and the server connection behind it."""

    def __init__(self, relay: Relay, number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.relay = relay
        self.plan = relay.plan
        self.number = number
        self.client = Stream(reader, relay.idle)
        self.writer = writer
        self.upstream = Upstream(relay.target, idle=relay.idle, connect_timeout=relay.connect_timeout)

    async def run(self) -> None:
        decision = self.plan.decide("accept")
        await self._delay(decision.delay_ms, "accept", connection=self.number)
        fault = decision.fault
        if fault is None:
            await self._serve_requests()
            return
        self.plan.record(fault.kind, "accept", connection=self.number)
        if fault.kind == "hang":
            await self._hold()

    async def _serve_requests(self) -> None:
        for count in range(1, MAX_REQUESTS_PER_CONNECTION + 1):
            head = await read_head(self.client)
            if head is None:
                return
            request = parse_request(head)
            if "100-continue" in head.tokens("expect"):
                # We read the whole body before choosing a fault, so we invite it ourselves.
                self.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                request = Request(head.without("expect"), request.method, request.target)
            body = await read_body(self.client, request_framing(request.head))
            info = dict(connection=self.number, request=count, method=request.method, path=safe_target(request.target))
            decision = self.plan.decide("request")
            await self._delay(decision.delay_ms, "request", **info)
            if not await self._answer(request, body, decision.fault, info):
                return

    async def _answer(self, request: Request, body: bytes, fault: Rule | None, info: dict) -> bool:
        """Answer one request; True when the client connection stays open."""
        closing = request.head.wants_close()
        if fault is not None and fault.at == "request":
            self.plan.record(fault.kind, "request", **info, detail=dict(fault.params))
            self._saw(request, fault.kind, fault.params.get("status"))
            if fault.kind == "fail":
                await _send(self.writer, _fail_response(fault, closing=closing))
                return not closing
            if fault.kind == "hang":
                await self._hold()
            return False
        try:
            rhead = await self.upstream.exchange(request.head.encode() + body)
        except UpstreamError as exc:
            self._saw(request, "upstream_error", 502)
            await _send(self.writer, _plain_response(502, str(exc)))
            return False
        rhead, status = await self._skip_interim(rhead)
        if status == 101:
            await _send(self.writer, rhead.encode())
            await _pump(self.client, self.writer, self.upstream, self.relay.idle)
            return False
        framing = response_framing(rhead, status, request.method)
        if fault is not None:
            await self._drop_mid_response(request, rhead, status, framing, info)
            return False
        await self._relay_response(request, rhead, status, framing)
        if rhead.wants_close() or framing[0] == "close":
            self.upstream.close()
            return False
        return not closing

    async def _skip_interim(self, rhead: Head) -> tuple[Head, int]:
        """Pass 1xx answers (other than 101) on to the client; return the final head."""
        for _ in range(MAX_INTERIM_RESPONSES):
            status = parse_response(rhead).status
            if not 100 <= status < 200 or status == 101:
                return rhead, status
            await _send(self.writer, rhead.encode())
            rhead = await read_head(self.upstream.stream)
            if rhead is None:
                raise ProtocolError("server closed between interim and final response")
        raise ProtocolError("too many interim responses")

    async def _relay_response(self, request: Request, rhead: Head, status: int, framing) -> None:
        async def sink(data: bytes) -> None:
            await _send(self.writer, data)

        # Recorded before the client can have the answer, so a test that asserts
        # on the record right after its request returns never races the proxy.
        self._saw(request, "passed", status)
        await sink(rhead.encode())
        await copy_body(self.upstream.stream, framing, sink)

    async def _drop_mid_response(self, request: Request, rhead: Head, status: int, framing, info: dict) -> None:
        """The server did the work; the client gets the first half of its answer, then a closed connection."""
        raw = rhead.encode() + await read_body(self.upstream.stream, framing, limit=None)
        self.plan.record("drop", "response", **info, detail={"status": status, "sent": len(raw) // 2})
        self._saw(request, "drop", status)
        await _send(self.writer, raw[: len(raw) // 2])

    def _saw(self, request: Request, outcome: str, status: int | None) -> None:
        self.plan.saw(self.number, request.method, request.target, outcome, status)

    async def _delay(self, ms: float, at: str, **info) -> None:
        if ms > 0:
            self.plan.record("delay", at, **info, detail={"ms": ms})
            await asyncio.sleep(ms / 1000)

    async def _hold(self) -> None:
        """Half-open: keep the connection, read and discard, never answer (until ``hang_limit``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.relay.hang_limit
        while (left := deadline - loop.time()) > 0:
            try:
                if not await asyncio.wait_for(self.client.reader.read(CHUNK), left):
                    return
            except TimeoutError:
                return


async def _send(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)
    await writer.drain()


def _fail_response(rule: Rule, *, closing: bool) -> bytes:
    extra = []
    if rule.params.get("retry_after") is not None:
        extra.append(("Retry-After", str(rule.params["retry_after"])))
    return _response(rule.params.get("status", 503), json.dumps(_OUTCOME).encode(), extra, closing=closing)


def _plain_response(status: int, text: str) -> bytes:
    return _response(status, f"faultproxy: {text}\n".encode(), [], closing=True, content_type="text/plain")


def _response(status, body: bytes, extra, *, closing: bool, content_type="application/fhir+json") -> bytes:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Injected"
    fields = [("Content-Type", content_type), ("Content-Length", str(len(body))), *extra]
    if closing:
        fields.append(("Connection", "close"))
    return Head(f"HTTP/1.1 {status} {reason}", tuple(fields)).encode() + body


async def _pump(client: Stream, writer: asyncio.StreamWriter, upstream: Upstream, idle: float) -> None:
    """After a 101 the connection is no longer HTTP: copy bytes both ways until either side stops."""
    a = asyncio.create_task(_copy_raw(upstream.stream.reader, writer, idle))
    b = asyncio.create_task(_copy_raw(client.reader, upstream.writer, idle))
    _, pending = await asyncio.wait({a, b}, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()


async def _copy_raw(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, idle: float) -> None:
    while data := await asyncio.wait_for(reader.read(CHUNK), idle):
        await _send(writer, data)
