"""Item 4 of issue 11: failed logins are clean errors, counted, slowed down and logged sparingly."""

from __future__ import annotations

import json

import pytest
from twisted.logger import LogLevel, formatEvent

from asttapi_server.clients import codec
from asttapi_server.clients.auth import LoginGuard, LoginLimits, address_key

from .helpers import USERS, NetHarness, capture_log


def _texts(events: list[dict]) -> str:
    return "\n".join(formatEvent(e) + repr(e) for e in events)


@pytest.mark.parametrize("token", ["x" * 4096, "", "\x00", "\u2028"])
def test_odd_token_is_an_auth_error_and_a_counted_failure_without_a_traceback(token):
    seen, stop = capture_log()
    try:
        h = NetHarness(USERS)
        c = h.open()
        c.read()
        c.send_raw(b'{"jsonrpc":"2.0","id":1,"method":"login","params":{"username":"alice","token":'
                   + json.dumps(token).encode() + b"}}\n")
        (r,) = c.read()
    finally:
        stop()
    assert r["error"]["code"] == codec.AUTH_ERROR, r
    assert r["error"]["message"] == "Login failed: unknown user or wrong token"
    assert h.factory.login_gate.guard.failures("127.0.0.1") == 1
    assert h.factory.login_gate.guard.failures("127.0.0.1", "alice") == 1
    assert not [e for e in seen if e.get("log_failure") is not None or e.get("log_level") == LogLevel.critical]


@pytest.mark.parametrize("field", ["username", "token"])
@pytest.mark.parametrize("value", ["\\ud800", "\\udfff\\ud800"])
def test_a_lone_surrogate_in_a_login_is_a_counted_client_error_without_a_traceback(field, value):
    # The issue: token "\ud800" answered -32603 with a 680-byte critical traceback,
    # counted neither as a failed login nor as a client error. The decoder now
    # refuses any lone surrogate before a method sees it (-32600, one rule for
    # every request): no token is checked, and the error counts towards the
    # connection's error limit.
    seen, stop = capture_log()
    try:
        h = NetHarness(USERS)
        c = h.open()
        c.read()
        params = {"username": "alice", "token": "x"}
        body = json.dumps(params).replace(f'"{params[field]}"', f'"{value}"')
        c.send_raw(b'{"jsonrpc":"2.0","id":1,"method":"login","params":' + body.encode() + b"}\n")
        (r,) = c.read()
    finally:
        stop()
    assert r["error"]["code"] == codec.INVALID_REQUEST, r
    assert "surrogate" in r["error"]["message"]
    assert c.proto._errors, "counted as a client error"
    assert h.factory.login_gate.guard.failures("127.0.0.1") == 0
    assert not [e for e in seen if e.get("log_failure") is not None or e.get("log_level") == LogLevel.critical]


def test_backoff_per_address_doubles_up_to_the_cap_and_says_when_to_retry():
    h = NetHarness(USERS, login_limits=LoginLimits(free_failures=5, backoff=1.0, backoff_max=8.0))
    waits = []
    for attempt in range(40):
        c = h.open("192.0.2.7")
        c.read()
        r = h.login(c, "mallory", "wrong")
        c.proto.connectionLost(None)
        if "retry after" in json.dumps(r).lower() or "retry_after" in r["error"].get("data", {}):
            waits.append(r["error"]["data"]["retry_after"])
            h.clock.advance(r["error"]["data"]["retry_after"])
    # five free failures, then 1, 2, 4, 8, 8, ... seconds
    assert waits[:6] == [1, 2, 4, 8, 8, 8]
    assert h.factory.login_gate.guard.failures("192.0.2.7") == 40 - len(waits)
    # another address is not affected
    other = h.open("192.0.2.8")
    other.read()
    assert "result" in h.login(other, "alice")


def test_while_waiting_even_the_right_token_is_not_looked_at():
    h = NetHarness(USERS, login_limits=LoginLimits(free_failures=2, backoff=10.0))
    for _ in range(2):
        c = h.open()
        c.read()
        h.login(c, "alice", "wrong")
    c = h.open()
    c.read()
    r = h.login(c, "alice")
    assert r["error"]["code"] == codec.AUTH_ERROR
    assert r["error"]["message"] == (
        "Too many failed logins from your address or for this user; try again in 10 seconds"
    )
    assert r["error"]["data"] == {"retry_after": 10}
    h.clock.advance(10)  # which also ends that connection: it did not log in within login_timeout
    assert c.closed
    c = h.open()
    c.read()
    assert h.login(c, "alice")["result"]["user"] == "alice"


def test_per_user_limit_holds_across_addresses_and_spares_other_users():
    # Issue 22 item 4: the user's count across addresses slows guessers down
    # (a fresh address gets no free failures for alice), but never refuses
    # her right token from an address that has no failures for her.
    h = NetHarness(USERS, login_limits=LoginLimits(free_failures=5, backoff=30.0))
    for i in range(5):
        c = h.open(f"198.51.100.{i}")
        c.read()
        h.login(c, "alice", "wrong")
    fresh = h.open("203.0.113.1")
    fresh.read()
    assert h.login(fresh, "alice", "wrong")["error"]["message"] == "Login failed: unknown user or wrong token"
    assert h.login(fresh, "alice")["error"]["data"] == {"retry_after": 30}
    assert h.login(fresh, "bob")["result"]["user"] == "bob"
    other = h.open("203.0.113.2")
    other.read()
    assert h.login(other, "alice")["result"]["user"] == "alice"


def test_invented_user_names_cost_no_memory_and_lock_nobody_out():
    h = NetHarness(USERS, login_limits=LoginLimits(free_failures=10**6))
    for i in range(300):
        c = h.open("192.0.2.9")
        c.read()
        h.login(c, f"nobody{i}", "x")
        c.proto.connectionLost(None)
    assert len(h.factory.login_gate.guard) == 1  # only the address


def test_ipv6_counts_per_64():
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert address_key("unix") == "unix"


def test_the_guard_forgets_and_stays_bounded():
    g = LoginGuard(LoginLimits(free_failures=1, backoff=1.0, forget_after=100.0, max_tracked=50))
    assert g.failed("a", None, 0.0) == 1.0
    assert g.retry_after("a", None, 0.5) == 0.5 and g.retry_after("a", None, 1.0) is None
    assert g.failed("a", None, 1.0) == 2.0
    assert g.failed("a", None, 500.0) == 1.0  # forgotten after 100 s without a failure: starts afresh
    for i in range(1000):
        g.failed(f"h{i}", None, 600.0)
    assert len(g) == 50


def test_failed_logins_log_one_escaped_line_per_address_per_minute_without_the_token():
    seen, stop = capture_log()
    try:
        h = NetHarness(USERS, login_limits=LoginLimits(free_failures=10**6))
        for i in range(100):
            c = h.open("192.0.2.20")
            c.read()
            h.login(c, "alice\u2028INFO forged line", "secret-guess-\u2028")
            c.proto.connectionLost(None)
        h.clock.advance(60)
        c = h.open("192.0.2.20")
        c.read()
        h.login(c, "alice", USERS["bob"]["token"])
    finally:
        stop()
    lines = [formatEvent(e) for e in seen if "login failed" in formatEvent(e)]
    assert len(lines) == 2, lines
    assert "'alice\\u2028INFO forged line'" in lines[0] and "\u2028" not in lines[0]
    assert "99 such lines held back" in lines[1]
    text = _texts(seen)
    assert "secret-guess" not in text and USERS["bob"]["token"] not in text


def test_config_keys_reach_the_gate(tmp_path):
    from asttapi_server.clients.hub import Hub
    from asttapi_server.clients.protocol import ClientFactory
    from asttapi_server.config import load_config

    from tests.clients.fakes import FakeTelephony

    path = tmp_path / "a.toml"
    path.write_text("[server]\nlogin_free_failures = 3\nlogin_backoff = 2.5\nlogin_backoff_max = 60\n"
                    "login_forget_after = 120\n")
    cfg = load_config(str(path))
    f = ClientFactory.from_config(cfg, Hub(), FakeTelephony(), clock=object())
    assert f.login_gate.guard.limits == LoginLimits(free_failures=3, backoff=2.5, backoff_max=60.0,
                                                    forget_after=120.0)


def test_failures_from_thousands_of_addresses_log_at_most_60_lines_a_minute():
    seen, stop = capture_log()
    try:
        h = NetHarness(USERS, login_limits=LoginLimits(free_failures=10**6))
        for i in range(2000):
            c = h.open(f"10.{i // 250}.{i % 250}.1")
            c.read()
            h.login(c, "alice", "wrong")
            c.proto.connectionLost(None)
        h.clock.advance(60)
        c = h.open("10.99.0.1")
        c.read()
        h.login(c, "alice", "wrong")
    finally:
        stop()
    lines = [formatEvent(e) for e in seen if "login" in formatEvent(e)]
    assert len(lines) == 62, len(lines)
    assert "1940 more failed-login lines held back in the last 60 s" in lines[60]
