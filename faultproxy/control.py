"""The HTTP control endpoint of a ``FaultProxy``, and a client for it.

Every fault method of ``FaultProxy`` is a POST with its keyword arguments as
a JSON object; reads are GETs. One request per connection, JSON both ways::

    curl -s -XPOST 127.0.0.1:9190/fail -d '{"count": 3, "retry_after": 2}'
    curl -s -XPOST 127.0.0.1:9190/delay -d '{"ms": 250, "seconds": 60}'
    curl -s -XPOST 127.0.0.1:9190/drop -d '{"at": "response"}'
    curl -s -XPOST 127.0.0.1:9190/hang -d '{"at": "accept"}'
    curl -s -XPOST 127.0.0.1:9190/down -d '{"seconds": 30}'
    curl -s -XPOST 127.0.0.1:9190/up
    curl -s -XPOST 127.0.0.1:9190/clear            # {"kind": "fail"} for one kind
    curl -s -XPOST 127.0.0.1:9190/forget           # empty the record
    curl -s 127.0.0.1:9190/state
    curl -s '127.0.0.1:9190/events?kind=fail'
    curl -s 127.0.0.1:9190/requests

Errors come back as 400 ``{"error": "..."}``.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from .http1 import CONTROL_BODY_LIMIT, ProtocolError, Stream, parse_request, read_body, read_head, request_framing

if TYPE_CHECKING:
    from .proxy import FaultProxy

CONTROL_IDLE = 10.0
_RULES = ("delay", "fail", "drop", "hang")


async def serve_control(proxy: "FaultProxy", address: tuple[str, int]) -> asyncio.base_events.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, payload = await _answer(proxy, Stream(reader, CONTROL_IDLE))
        except (ProtocolError, EOFError, TimeoutError, OSError):
            writer.close()
            return
        body = json.dumps(payload).encode()
        head = (
            f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        writer.write(head.encode() + body)
        try:
            await writer.drain()
        finally:
            writer.close()

    return await asyncio.start_server(handle, *address)


async def _answer(proxy: "FaultProxy", stream: Stream) -> tuple[int, Any]:
    head = await read_head(stream)
    if head is None:
        raise EOFError
    request = parse_request(head)
    raw = await read_body(stream, request_framing(head), limit=CONTROL_BODY_LIMIT)
    url = urlsplit(request.target)
    action = url.path.strip("/") or "state"
    try:
        args = json.loads(raw) if raw.strip() else {}
        if not isinstance(args, dict):
            raise ValueError("the body must be a JSON object")
        return 200, await _dispatch(proxy, request.method, action, args, parse_qs(url.query))
    except LookupError as exc:
        return 404, {"error": str(exc)}
    except (TypeError, ValueError) as exc:
        return 400, {"error": str(exc)}


async def _dispatch(proxy: "FaultProxy", method: str, action: str, args: dict, query: dict) -> Any:
    if method == "GET" and action == "state":
        return proxy.state()
    if method == "GET" and action == "events":
        kind = (query.get("kind") or [None])[0]
        return [e.to_dict() for e in proxy.events(kind)]
    if method == "GET" and action == "requests":
        return [s.to_dict() for s in proxy.requests()]
    if method != "POST":
        raise LookupError(f"no {method} /{action}")
    if action in _RULES:
        return getattr(proxy, action)(**args).describe()
    if action == "down":
        await proxy.go_down(args.get("seconds"))
    elif action == "up":
        await proxy.go_up()
    elif action == "clear":
        proxy.clear(args.get("kind"))
    elif action == "forget":
        proxy.forget()
    else:
        raise LookupError(f"no POST /{action}")
    return proxy.state()


class RemoteProxy:
    """The same fault methods as ``FaultProxy``, sent to a proxy in another process.

    Events and requests come back as plain dicts.
    """

    def __init__(self, control_url: str, *, timeout: float = 10.0):
        import httpx  # only the remote side needs it

        self._http = httpx.Client(base_url=control_url.rstrip("/"), timeout=timeout)

    def _post(self, action: str, **args: Any) -> Any:
        response = self._http.post(f"/{action}", json=args)
        if response.status_code != 200:
            raise ValueError(response.json().get("error", response.text))
        return response.json()

    def delay(self, ms: float, **args: Any) -> dict:
        return self._post("delay", ms=ms, **args)

    def fail(self, count: int | None = 1, **args: Any) -> dict:
        return self._post("fail", count=count, **args)

    def drop(self, count: int | None = 1, **args: Any) -> dict:
        return self._post("drop", count=count, **args)

    def hang(self, count: int | None = 1, **args: Any) -> dict:
        return self._post("hang", count=count, **args)

    def down(self, seconds: float | None = None) -> dict:
        return self._post("down", seconds=seconds)

    def up(self) -> dict:
        return self._post("up")

    def clear(self, kind: str | None = None) -> dict:
        return self._post("clear", kind=kind)

    def forget(self) -> dict:
        return self._post("forget")

    def state(self) -> dict:
        return self._http.get("/state").json()

    def events(self, kind: str | None = None) -> list[dict]:
        return self._http.get("/events", params={"kind": kind} if kind else None).json()

    def requests(self) -> list[dict]:
        return self._http.get("/requests").json()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "RemoteProxy":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
