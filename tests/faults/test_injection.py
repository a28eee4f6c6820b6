"""Each fault, switched on at runtime, does what it says and is recorded."""

import time

import httpx
import pytest

from faultproxy.faults import Rule


def client(proxy, **kwargs):
    return httpx.Client(base_url=proxy.url, timeout=kwargs.pop("timeout", 5), **kwargs)


def test_it_answers_503_for_the_next_n_requests_only(proxy, origin):
    proxy.fail(3, retry_after=7)
    with client(proxy) as c:
        statuses = [c.get("/bytes").status_code for _ in range(5)]
        answer = c.get("/bytes")
    assert statuses == [503, 503, 503, 200, 200]
    assert len(origin.seen) == 3  # the failed ones never reached the server
    assert [e.kind for e in proxy.events()] == ["fail"] * 3
    assert proxy.events()[0].detail == {"status": 503, "retry_after": 7}
    assert answer.status_code == 200


def test_it_keeps_the_connection_after_an_injected_503(proxy):
    proxy.fail(1)
    with client(proxy) as c:
        failed = c.get("/bytes")
        passed = c.get("/bytes")
    assert failed.status_code == 503 and "Retry-After" not in failed.headers
    assert failed.json()["resourceType"] == "OperationOutcome"
    assert passed.status_code == 200
    assert {s.connection for s in proxy.requests()} == {1}


def test_it_fails_a_seeded_fraction_repeatably(proxy):
    def run():
        proxy.clear()
        proxy.fail(None, fraction=0.3, seed=42, status=500)
        with client(proxy) as c:
            return [c.get("/bytes").status_code for _ in range(100)]

    first, second = run(), run()
    assert first == second
    assert 15 <= first.count(500) <= 45
    assert set(first) == {200, 500}


def test_it_adds_latency_per_request(proxy):
    with client(proxy) as c:
        c.get("/bytes")
        started = time.monotonic()
        c.get("/bytes")
        baseline = time.monotonic() - started
        proxy.delay(250, count=2)
        timings = []
        for _ in range(3):
            started = time.monotonic()
            c.get("/bytes")
            timings.append(time.monotonic() - started)
    assert 0.25 <= timings[0] < 0.25 + baseline + 0.25
    assert 0.25 <= timings[1] < 0.25 + baseline + 0.25
    assert timings[2] < 0.2
    assert [e.detail["ms"] for e in proxy.events("delay")] == [250.0, 250.0]


def test_it_adds_latency_once_per_connection(proxy):
    proxy.delay(300, per="connection", seconds=30)
    with client(proxy) as c:
        started = time.monotonic()
        c.get("/bytes")
        first = time.monotonic() - started
        started = time.monotonic()
        c.get("/bytes")
        second = time.monotonic() - started
    assert first >= 0.3 and second < 0.2
    assert [e.at for e in proxy.events("delay")] == ["accept"]


@pytest.mark.parametrize("at", ["accept", "request", "response"])
def test_a_dropped_connection_is_a_transport_error(proxy, origin, at):
    proxy.drop(at=at)
    with client(proxy) as c:
        with pytest.raises(httpx.TransportError):
            c.post("/echo", content=b"x" * 100_000)
        assert c.get("/bytes").status_code == 200
    assert [(e.kind, e.at) for e in proxy.events()] == [("drop", at)]
    reached = [m for m, _ in origin.seen].count("POST")
    assert reached == (1 if at == "response" else 0)


@pytest.mark.parametrize("at", ["accept", "request"])
def test_a_half_open_connection_is_a_read_timeout(proxy, at):
    proxy.hang(at=at)
    with client(proxy, timeout=httpx.Timeout(0.5, connect=2)) as c:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            c.get("/bytes")
        assert 0.5 <= time.monotonic() - started < 3
        assert c.get("/bytes").status_code == 200
    assert [(e.kind, e.at) for e in proxy.events()] == [("hang", at)]


def test_down_refuses_connections_until_up(proxy):
    with client(proxy) as c:
        assert c.get("/bytes").status_code == 200
        proxy.down()
        assert proxy.is_down
        with pytest.raises(httpx.ConnectError):
            c.get("/bytes")
        proxy.up()
        assert c.get("/bytes").status_code == 200
    assert [e.kind for e in proxy.events()] == ["down", "up"]


def test_down_for_a_duration_comes_back_by_itself(proxy):
    proxy.down(seconds=0.5)
    with client(proxy) as c:
        with pytest.raises(httpx.ConnectError):
            c.get("/bytes")
        assert proxy.wait_for(lambda p: not p.is_down, timeout=5)
        assert c.get("/bytes").status_code == 200
    down, up = proxy.events()
    assert 0.45 <= up.monotonic - down.monotonic < 2


def test_down_cuts_live_keep_alive_connections(proxy):
    with client(proxy) as c:
        c.get("/bytes")
        proxy.down(seconds=0.3)
        # The pooled connection was cut; httpx notices and reconnects, which is refused.
        with pytest.raises(httpx.TransportError):
            c.get("/bytes")


def test_the_record_shows_the_retry_schedule_a_client_followed(proxy):
    # The engine's 1, 2, 4, 8 s backoff, scaled down twenty times to stay quick.
    schedule = [0.05, 0.1, 0.2, 0.4]
    proxy.fail(len(schedule) + 1, retry_after=1)
    with client(proxy) as c:
        for pause in schedule:
            assert c.get("/bytes").status_code == 503
            time.sleep(pause)
        assert c.get("/bytes").status_code == 503
    observed = proxy.intervals("fail")
    assert len(observed) == len(schedule)
    for seen, planned in zip(observed, schedule):
        assert planned <= seen < planned + 0.25  # one local request on top of the pause


def test_a_rule_expires_after_its_seconds(proxy):
    proxy.fail(None, seconds=0.3)
    with client(proxy) as c:
        assert c.get("/bytes").status_code == 503
        time.sleep(0.35)
        assert c.get("/bytes").status_code == 200
    assert proxy.state()["rules"] == []


def test_it_refuses_rules_that_cannot_act():
    with pytest.raises(ValueError):
        Rule("fail", "accept")
    with pytest.raises(ValueError):
        Rule("drop", "request", fraction=1.5)


def test_it_refuses_addresses_off_loopback():
    from faultproxy import FaultProxy

    with pytest.raises(ValueError, match="loopback"):
        FaultProxy("10.0.0.1:8090")


def test_it_masks_query_values_in_its_record(proxy):
    with client(proxy) as c:
        c.get("/bytes", params={"n": 3, "identifier": "MRN|12345"})
    assert proxy.requests()[0].path == "/bytes?n=...&identifier=..."
