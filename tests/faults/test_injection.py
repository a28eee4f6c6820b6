"""Each fault, switched on at runtime, does what it says and is recorded.

Timing is asserted against the proxy's own record, never against guessed
margins. The proxy runs in this process, so its ``Event.monotonic`` and the
test's ``time.monotonic()`` are one clock: every proxy action a request caused
lies inside that request's window on the client, and a delay or a timer is
asserted from its start to its end as the proxy recorded them. The only slack
is the mechanism's own tick: asyncio fires a timer (``asyncio.sleep``,
``call_later``) up to the loop's clock resolution early, and a rule's
``seconds`` is compared with ``time.monotonic()`` at each decision (no tick).
"""

import time

import httpx
import pytest

from faultproxy.faults import Rule

from .conftest import HANG_LIMIT


# How early asyncio may fire a timer: it runs every handle due before now + the clock's resolution.
TICK = time.get_clock_info("monotonic").resolution


def client(proxy, **kwargs):
    return httpx.Client(base_url=proxy.url, timeout=kwargs.pop("timeout", 5), **kwargs)


def timed(call):
    """(result, started, ended) of ``call()`` on the monotonic clock the proxy records with."""
    started = time.monotonic()
    result = call()
    return result, started, time.monotonic()


def within(event_time, window) -> bool:
    return window[0] <= event_time <= window[1]


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
        proxy.delay(250, count=2)
        windows = [timed(lambda: c.get("/bytes"))[1:] for _ in range(3)]
    delays = proxy.events("delay")
    passed = [s for s in proxy.requests() if s.outcome == "passed"][1:]
    assert [e.detail["ms"] for e in delays] == [250.0, 250.0]
    for delay, seen, window in zip(delays, passed, windows):
        # The delay started inside its request, and the request was forwarded 250 ms later (the
        # record of the forward is written before the answer goes out, so it is inside the window too).
        assert within(delay.monotonic, window) and within(seen.monotonic, window)
        assert seen.monotonic - delay.monotonic >= 0.25 - TICK
        assert window[1] - window[0] >= 0.25 - TICK
    # The rule was spent: the third request was not delayed at all.
    assert not any(within(e.monotonic, windows[2]) for e in delays)


def test_it_adds_latency_once_per_connection(proxy):
    proxy.delay(300, per="connection", seconds=30)
    with client(proxy) as c:
        first = timed(lambda: c.get("/bytes"))[1:]
        second = timed(lambda: c.get("/bytes"))[1:]
    [delay] = proxy.events("delay")
    assert delay.at == "accept" and delay.connection == 1 and within(delay.monotonic, first)
    assert first[1] - first[0] >= 0.3 - TICK
    # One connection, delayed once: nothing delayed the second request on it.
    assert {s.connection for s in proxy.requests()} == {1}
    assert proxy.requests()[0].monotonic - delay.monotonic >= 0.3 - TICK
    assert not within(delay.monotonic, second)


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
        gave_up = time.monotonic()
        assert c.get("/bytes").status_code == 200
    [hang] = proxy.events()
    assert (hang.kind, hang.at) == ("hang", at) and started <= hang.monotonic <= gave_up
    # The client's own read timeout ended it, while the proxy still held the connection
    # (the proxy lets go only after hang_limit, and the client would then see it closed).
    assert gave_up - started >= 0.5
    assert gave_up - hang.monotonic < HANG_LIMIT


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
    asked = time.monotonic()
    proxy.down(seconds=0.5)
    with client(proxy) as c:
        with pytest.raises(httpx.ConnectError):
            c.get("/bytes")
        assert proxy.wait_for(lambda p: not p.is_down, timeout=5)
        noticed = time.monotonic()
        assert c.get("/bytes").status_code == 200
    down, up = proxy.events()
    assert (down.kind, up.kind) == ("down", "up") and down.detail == {"seconds": 0.5}
    # Up no earlier than the timer allows, and before the test saw it up (wait_for wakes on the record).
    assert up.monotonic - down.monotonic >= 0.5 - TICK
    assert asked <= down.monotonic < up.monotonic <= noticed


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
    windows = []
    with client(proxy) as c:
        for pause in [*schedule, None]:
            answer, started, ended = timed(lambda: c.get("/bytes"))
            assert answer.status_code == 503
            windows.append((started, ended))
            if pause is not None:
                time.sleep(pause)
    fails = proxy.events("fail")
    observed = proxy.intervals("fail")
    assert len(observed) == len(schedule)
    for fail, window in zip(fails, windows):
        assert within(fail.monotonic, window)
    for planned, seen, before, after in zip(schedule, observed, windows, windows[1:]):
        # The client paused at least as planned between two requests; the proxy saw the two
        # faults no closer than that pause and no further apart than the two requests' outer ends.
        assert after[0] - before[1] >= planned
        assert after[0] - before[1] <= seen <= after[1] - before[0]


def test_a_rule_expires_after_its_seconds(proxy):
    rule = proxy.fail(None, seconds=1.0)
    expires = rule.added + rule.seconds  # the proxy's own clock; a decision at or after it passes
    with client(proxy) as c:
        answer, _, asked_before = timed(lambda: c.get("/bytes"))
        assert answer.status_code == 503 and asked_before < expires
        assert [e.monotonic < expires for e in proxy.events("fail")] == [True]
        # No sleep racing the rule: wait until the rule's own test (now - added >= seconds) holds.
        while time.monotonic() - rule.added < rule.seconds:
            time.sleep(max(0.0, expires - time.monotonic()))
        assert proxy.state()["rules"] == []
        assert c.get("/bytes").status_code == 200
    assert len(proxy.events("fail")) == 1


def test_a_rule_lives_until_exactly_its_seconds():
    rule = Rule("fail", "request", count=None, seconds=0.5, added=100.0)
    assert rule.live(100.0) and rule.live(100.5 - 1e-9)
    assert not rule.live(100.5) and not rule.live(101.0)


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
