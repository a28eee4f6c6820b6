"""A fault-injecting HTTP/1.1 proxy between the sync engine and one server.

In a test::

    with FaultProxy("127.0.0.1:8090") as proxy:
        client = FHIRClient(proxy.url_for(fhir_base_url), timeout=2)
        proxy.fail(3, retry_after=1)          # the next 3 requests get 503 + Retry-After: 1
        proxy.delay(200, count=5)             # +200 ms on each of the next 5 requests
        proxy.drop(at="response")             # the server answers, the client sees half of it
        proxy.hang(at="accept")               # accepted, never answered: a read timeout
        proxy.down(seconds=30)                # refused, then listening again
        proxy.events("fail")                  # what was injected, with timestamps

Out of process::

    python -m faultproxy.proxy --listen 127.0.0.1:9090 --target 127.0.0.1:8090 --control 127.0.0.1:9190

and drive it with ``faultproxy.control.RemoteProxy`` or curl (see that module).

The proxy runs its own event loop in a background thread; every method here
may be called from any other thread. It only listens on and connects to
loopback addresses: it has no authentication and is meant for tests and demos.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import signal
import sys
import threading
import time
from typing import Any, Callable
from urllib.parse import urlsplit, urlunsplit

from .faults import Event, Plan, Rule, Seen, intervals
from .http1 import HEAD_LIMIT
from .relay import Relay

Address = str | tuple[str, int]
START_TIMEOUT = 10.0


class FaultProxy:
    """A proxy to ``target`` on ``listen`` (port 0: pick a free one), optionally with an HTTP ``control`` port.

    ``idle_timeout`` bounds every wait for a peer's next bytes; ``hang_limit``
    is how long a half-open connection is held before the proxy gives up on it.
    """

    def __init__(
        self,
        target: Address,
        *,
        listen: Address = ("127.0.0.1", 0),
        control: Address | None = None,
        idle_timeout: float = 120.0,
        hang_limit: float = 300.0,
        connect_timeout: float = 5.0,
    ):
        self.target = loopback_address(target)
        self.host, self.port = loopback_address(listen)
        self.control_address = loopback_address(control) if control is not None else None
        self.plan = Plan()
        self._relay = Relay(
            self.plan, self.target, idle=idle_timeout, hang_limit=hang_limit, connect_timeout=connect_timeout
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._control_server: asyncio.base_events.Server | None = None
        self._up_timer: asyncio.TimerHandle | None = None

    # --- lifecycle --------------------------------------------------------

    def start(self) -> "FaultProxy":
        """Bind and serve in a background thread; returns once connections are accepted."""
        if self._thread is not None:
            raise RuntimeError("already started")
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, args=(ready, failure), name="faultproxy", daemon=True)
        self._thread.start()
        if not ready.wait(START_TIMEOUT):
            raise RuntimeError("faultproxy did not start in time")
        if failure:
            self._thread.join(START_TIMEOUT)
            self._thread = None
            raise failure[0]
        return self

    def stop(self) -> None:
        """Close listeners and every connection, end the thread. Safe to call twice."""
        if self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(START_TIMEOUT)
        self._thread = None

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def control_url(self) -> str | None:
        if self._control_server is None:
            return None
        host, port = self._control_server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    def url_for(self, base_url: str) -> str:
        """``base_url`` with its host and port replaced by the proxy's (path kept)."""
        parts = urlsplit(base_url)
        return urlunsplit((parts.scheme, f"{self.host}:{self.port}", parts.path, parts.query, parts.fragment))

    # --- faults -----------------------------------------------------------

    def delay(self, ms: float, *, per: str = "request", count: int | None = None, **when: Any) -> Rule:
        """Add ``ms`` before each request is forwarded (``per="connection"``: once, on accept).

        ``count``/``fraction``/``seed``/``seconds`` bound the rule (see ``faults``);
        by default it lasts until ``clear()``.
        """
        if per not in ("request", "connection"):
            raise ValueError("per must be 'request' or 'connection'")
        at = "accept" if per == "connection" else "request"
        return self.plan.add(Rule("delay", at, count=count, params={"ms": float(ms)}, **when))

    def fail(
        self, count: int | None = 1, *, status: int = 503, retry_after: int | str | None = None, **when: Any
    ) -> Rule:
        """Answer the next ``count`` requests (None: all, or a ``fraction`` of them) with ``status``.

        The server never sees those requests. ``retry_after`` (seconds or an
        HTTP date) is sent as ``Retry-After``.
        """
        return self.plan.add(Rule("fail", "request", count=count, params={"status": status, "retry_after": retry_after}, **when))

    def drop(self, count: int | None = 1, *, at: str = "request", **when: Any) -> Rule:
        """Close the connection: right after ``accept``, after reading the ``request``
        (the server never sees it) or mid-``response`` (the server did the work)."""
        return self.plan.add(Rule("drop", at, count=count, **when))

    def hang(self, count: int | None = 1, *, at: str = "request", **when: Any) -> Rule:
        """Half-open: keep the connection (after ``accept`` or the ``request``) and never answer."""
        return self.plan.add(Rule("hang", at, count=count, **when))

    def clear(self, kind: str | None = None) -> None:
        """Drop every rule (or those of one kind); connections already hanging stay so."""
        self.plan.clear(kind)

    def down(self, seconds: float | None = None) -> None:
        """Stop listening and cut live connections; listen again after ``seconds`` (None: on ``up()``)."""
        self._call(self.go_down(seconds))

    def up(self) -> None:
        self._call(self.go_up())

    @property
    def is_down(self) -> bool:
        return self._server is None

    # --- the record -------------------------------------------------------

    def events(self, kind: str | None = None) -> list[Event]:
        """Injected faults (and ``down``/``up``), oldest first."""
        return self.plan.events(kind)

    def requests(self) -> list[Seen]:
        """Every request read, with its outcome, oldest first."""
        return self.plan.requests()

    def intervals(self, kind: str = "fail") -> list[float]:
        """Seconds between successive ``kind`` events: the retry schedule a client followed."""
        return intervals(self.plan.events(kind))

    def wait_for(self, predicate: Callable[["FaultProxy"], bool], timeout: float) -> bool:
        """Block until ``predicate(proxy)`` holds or ``timeout`` seconds pass; re-checked on every record."""
        return self.plan.wait(lambda _: predicate(self), timeout)

    def forget(self) -> None:
        self.plan.forget()

    def state(self) -> dict[str, Any]:
        return {
            "listen": f"{self.host}:{self.port}",
            "target": f"{self.target[0]}:{self.target[1]}",
            "down": self.is_down,
            "rules": self.plan.rules(),
            "events": len(self.plan.events()),
            "requests": len(self.plan.requests()),
        }

    # --- on the loop ------------------------------------------------------

    async def go_down(self, seconds: float | None) -> None:
        if self._up_timer is not None:
            self._up_timer.cancel()
            self._up_timer = None
        if self._server is not None:
            self._server.close()
            self._server = None
            self._relay.close_all()
        self.plan.record("down", "listen", detail={"seconds": seconds})
        if seconds is not None:
            loop = asyncio.get_running_loop()
            self._up_timer = loop.call_later(seconds, lambda: loop.create_task(self.go_up()))

    async def go_up(self) -> None:
        if self._up_timer is not None:
            self._up_timer.cancel()
            self._up_timer = None
        if self._server is None:
            self._server = await self._listen()
            self.plan.record("up", "listen")

    async def _listen(self) -> asyncio.base_events.Server:
        return await asyncio.start_server(
            self._relay.serve, self.host, self.port, limit=HEAD_LIMIT, reuse_address=True
        )

    def _run(self, ready: threading.Event, failure: list[BaseException]) -> None:
        self._loop = loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._open())
        except BaseException as exc:  # noqa: BLE001 - handed to the starting thread
            failure.append(exc)
            ready.set()
            loop.close()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._close())
            loop.close()

    async def _open(self) -> None:
        self._server = await self._listen()
        self.port = self._server.sockets[0].getsockname()[1]
        if self.control_address is not None:
            from .control import serve_control

            self._control_server = await serve_control(self, self.control_address)

    async def _close(self) -> None:
        for server in (self._server, self._control_server):
            if server is not None:
                server.close()
        self._server = None
        self._relay.close_all()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), START_TIMEOUT)

    def _call(self, coro) -> Any:
        if self._loop is None or self._thread is None:
            coro.close()
            raise RuntimeError("not started")
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("on the proxy's own loop, await go_down()/go_up() instead")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(START_TIMEOUT)


def loopback_address(address: Address) -> tuple[str, int]:
    """``"host:port"`` or ``(host, port)`` -> ``(host, port)``, refusing anything but loopback."""
    if isinstance(address, str):
        host, sep, port = address.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"expected host:port, got {address!r}")
        address = (host.strip("[]"), int(port))
    host, port = address
    if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"faultproxy only works on loopback addresses, not {host!r}")
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m faultproxy.proxy", description=__doc__.split("\n")[0])
    parser.add_argument("--listen", required=True, help="host:port to accept clients on")
    parser.add_argument("--target", required=True, help="host:port of the real server")
    parser.add_argument("--control", help="host:port of the HTTP control endpoint")
    parser.add_argument("--idle-timeout", type=float, default=120.0)
    parser.add_argument("--hang-limit", type=float, default=300.0)
    # Bounded by default like every loop here; a demo day fits in it.
    parser.add_argument("--lifetime", type=float, default=12 * 3600, help="exit after this many seconds")
    args = parser.parse_args(argv)
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    proxy = FaultProxy(
        args.target,
        listen=args.listen,
        control=args.control,
        idle_timeout=args.idle_timeout,
        hang_limit=args.hang_limit,
    )
    with proxy:
        print(f"faultproxy {proxy.url} -> {args.target}; control {proxy.control_url or 'off'}", flush=True)
        started = time.monotonic()
        while not stopping.wait(1.0) and time.monotonic() - started < args.lifetime:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
