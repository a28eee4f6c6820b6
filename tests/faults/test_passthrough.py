"""Without faults the proxy is invisible: same bytes, same framing, same keep-alive."""

import socket

import httpx

from .conftest import pattern


def test_it_keeps_one_server_connection_per_client_connection(proxy):
    with httpx.Client(base_url=proxy.url, timeout=5) as client:
        answers = [client.get("/bytes", params={"n": 100}) for _ in range(5)]
    assert {a.status_code for a in answers} == {200}
    assert len({a.headers["X-Conn"] for a in answers}) == 1
    assert {s.connection for s in proxy.requests()} == {1}
    assert [s.outcome for s in proxy.requests()] == ["passed"] * 5


def test_it_relays_large_bodies_both_ways(proxy):
    big = pattern(8 * 1024 * 1024 + 17)
    with httpx.Client(base_url=proxy.url, timeout=30) as client:
        assert client.get("/bytes", params={"n": len(big)}).content == big
        assert client.post("/echo", content=big).content == big
        # A generator body goes out chunked.
        streamed = client.post("/echo", content=iter([big[:1000], big[1000:]]))
        assert streamed.content == big
        assert client.get("/bytes", params={"n": 3}).content == big[:3]


def test_it_relays_chunked_empty_and_head_responses(proxy):
    with httpx.Client(base_url=proxy.url, timeout=5) as client:
        chunked = client.get("/chunked", params={"n": 50, "size": 7000})
        empty = client.get("/empty")
        head = client.head("/bytes", params={"n": 12345})
        after = client.get("/bytes", params={"n": 5})
    assert chunked.content == pattern(50 * 7000)
    assert chunked.headers["Transfer-Encoding"] == "chunked"
    assert empty.status_code == 204 and empty.content == b""
    assert head.headers["Content-Length"] == "12345" and head.content == b""
    assert after.content == pattern(5)
    assert len({r.headers["X-Conn"] for r in (chunked, empty, head, after)}) == 1


def test_it_honours_connection_close_and_pipelined_requests(proxy):
    with socket.create_connection((proxy.host, proxy.port), timeout=5) as sock:
        sock.sendall(
            b"GET /bytes?n=4 HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /bytes?n=6 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        received = b""
        for _ in range(100):
            data = sock.recv(65536)
            if not data:
                break
            received += data
    assert received.count(b"HTTP/1.0 200") + received.count(b"HTTP/1.1 200") == 2
    assert received.endswith(pattern(6))


def test_it_answers_502_when_the_server_is_unreachable():
    from faultproxy import FaultProxy

    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        closed_port = spare.getsockname()[1]
    with FaultProxy(("127.0.0.1", closed_port)) as proxy:
        answer = httpx.get(proxy.url + "/anything", timeout=5)
    assert answer.status_code == 502
    assert proxy.requests()[0].outcome == "upstream_error"


def test_it_pumps_bytes_both_ways_after_101_switching_protocols(proxy):
    with socket.create_connection((proxy.host, proxy.port), timeout=5) as sock:
        sock.sendall(b"GET /upgrade HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        head = b""
        for _ in range(100):
            head += sock.recv(65536)
            if b"\r\n\r\n" in head:
                break
        assert head.startswith(b"HTTP/1.1 101")
        sock.sendall(b"no longer http")
        assert sock.recv(65536) == b"NO LONGER HTTP"


def test_it_invites_a_body_sent_with_expect_100_continue(proxy):
    body = pattern(5000)
    with socket.create_connection((proxy.host, proxy.port), timeout=5) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n")
        assert sock.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body + b"GET /bytes?n=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        received = b""
        for _ in range(100):
            data = sock.recv(65536)
            if not data:
                break
            received += data
    assert received.startswith(b"HTTP/1.0 200") or received.startswith(b"HTTP/1.1 200")
    assert body in received and received.endswith(pattern(1))
