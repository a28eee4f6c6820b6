"""A tiny origin server on loopback, and a proxy in front of it.

The origin answers a handful of paths the tests need and notes every request
it received, so a test can tell what reached the server and what the proxy
answered itself. ``X-Conn`` carries the client port of the server-side
connection: equal values mean the proxy kept one connection alive.
"""

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from faultproxy import FaultProxy

PATIENT = {"resourceType": "Patient", "id": "p1", "meta": {"versionId": "1"}, "active": True}


def pattern(n: int) -> bytes:
    """``n`` deterministic, non-repeating-looking bytes."""
    block = hashlib.sha256(b"faultproxy").digest() * 2048
    return (block * (n // len(block) + 1))[:n]


class Origin(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10  # an idle keep-alive connection ends here rather than never
    disable_nagle_algorithm = True  # head and body go out in two writes

    def log_message(self, *args):
        pass

    def _note(self):
        self.server.seen.append((self.command, self.path))

    def _send(self, status, body=b"", content_type="application/octet-stream", extra=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Conn", str(self.client_address[1]))
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            for _ in range(1_000_000):
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(parts)
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        self._note()
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/bytes":
            self._send(200, pattern(int(query.get("n", 10))))
        elif url.path == "/chunked":
            self._chunked(int(query.get("n", 3)), int(query.get("size", 1000)))
        elif url.path == "/empty":
            self.send_response(204)
            self.send_header("X-Conn", str(self.client_address[1]))
            self.end_headers()
        elif url.path == "/upgrade":
            self._echo_after_upgrade()
        elif url.path == "/fhir/Patient/p1":
            self._send(200, json.dumps(PATIENT).encode(), "application/fhir+json")
        else:
            self._send(404, b"{}", "application/json")

    def do_POST(self):
        self._note()
        body = self._body()
        if self.path == "/echo":
            self._send(200, body)
        elif self.path == "/fhir/Patient":
            created = {**json.loads(body), "id": "p2", "meta": {"versionId": "1"}}
            self._send(201, json.dumps(created).encode(), "application/fhir+json")
        else:
            self._send(404, b"{}", "application/json")

    def _echo_after_upgrade(self):
        self.send_response(101)
        self.send_header("Upgrade", "echo")
        self.send_header("Connection", "Upgrade")
        self.end_headers()
        self.wfile.flush()
        for _ in range(1000):
            data = self.connection.recv(65536)
            if not data:
                break
            self.connection.sendall(data.upper())
        self.close_connection = True

    def _chunked(self, n, size):
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("X-Conn", str(self.client_address[1]))
        self.end_headers()
        data = pattern(n * size)
        for i in range(n):
            piece = data[i * size : (i + 1) * size]
            self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")


@pytest.fixture
def origin():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Origin)
    server.daemon_threads = True
    server.seen = []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def origin_url(origin):
    return f"http://127.0.0.1:{origin.server_address[1]}"


# Short: a half-open connection must not outlive its test by much.
HANG_LIMIT = 5.0


@pytest.fixture
def proxy(origin):
    with FaultProxy(("127.0.0.1", origin.server_address[1]), control="127.0.0.1:0", hang_limit=HANG_LIMIT) as running:
        yield running
