"""The out-of-process side: the HTTP control endpoint and the command line."""

import socket
import subprocess
import sys
import time

import httpx
import pytest

from faultproxy.control import RemoteProxy
from tests.conftest import REPO_DIR


def test_it_is_driven_over_http(proxy):
    with RemoteProxy(proxy.control_url) as remote, httpx.Client(base_url=proxy.url, timeout=5) as c:
        rule = remote.fail(2, retry_after=3)
        assert rule["kind"] == "fail" and rule["params"] == {"status": 503, "retry_after": 3}
        assert [c.get("/bytes").status_code for _ in range(3)] == [503, 503, 200]
        remote.delay(10, count=1)
        assert remote.state()["rules"][0]["kind"] == "delay"
        remote.clear()
        assert remote.state()["rules"] == []
        remote.down()
        with pytest.raises(httpx.ConnectError):
            httpx.get(proxy.url + "/bytes", timeout=2)
        remote.up()
        assert httpx.get(proxy.url + "/bytes", timeout=2).status_code == 200
        events = remote.events("fail")
        assert [e["kind"] for e in events] == ["fail", "fail"] and events[0]["wall"] > 0
        assert [r["outcome"] for r in remote.requests()][:3] == ["fail", "fail", "passed"]
        remote.forget()
        assert remote.events() == []


def test_it_reports_bad_control_requests(proxy):
    with RemoteProxy(proxy.control_url) as remote:
        with pytest.raises(ValueError, match="cannot act"):
            remote.hang(at="response")
        with pytest.raises(ValueError):
            remote.fail(count=1, colour="red")
    assert httpx.post(proxy.control_url + "/nothing", timeout=2).status_code == 404
    assert httpx.post(proxy.control_url + "/fail", content=b"[1]", timeout=2).status_code == 400


def _free_port() -> int:
    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        return spare.getsockname()[1]


def test_it_runs_from_the_command_line(origin):
    listen, control = _free_port(), _free_port()
    command = [
        sys.executable, "-m", "faultproxy.proxy",
        "--listen", f"127.0.0.1:{listen}",
        "--target", f"127.0.0.1:{origin.server_address[1]}",
        "--control", f"127.0.0.1:{control}",
        "--lifetime", "60",
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=REPO_DIR, stdout=subprocess.PIPE, text=True)
    try:
        banner = process.stdout.readline()
        assert f"127.0.0.1:{listen}" in banner
        with RemoteProxy(f"http://127.0.0.1:{control}") as remote:
            remote.fail(1, retry_after=1)
            answers = [httpx.get(f"http://127.0.0.1:{listen}/bytes", timeout=5) for _ in range(2)]
            assert [a.status_code for a in answers] == [503, 200]
            assert len(remote.events("fail")) == 1
    finally:
        process.terminate()
        assert process.wait(10) == 0
        process.stdout.close()


def test_the_command_line_exits_when_its_lifetime_is_over(origin):
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "faultproxy", "--listen", f"127.0.0.1:{_free_port()}",
         "--target", f"127.0.0.1:{origin.server_address[1]}", "--lifetime", "1"],
        cwd=REPO_DIR, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 15
