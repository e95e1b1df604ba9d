"""Item 7 of issue 11: connection limits and timeouts (all on a Clock)."""

from __future__ import annotations

import pytest

from asttapi_server.clients import codec
from asttapi_server.clients.limits import ConnectionLimits

from .helpers import USERS, NetHarness

PING = b'{"jsonrpc":"2.0","id":1,"method":"ping"}\n'


def _alive(c) -> bool:
    c.read()
    c.send_raw(PING)
    msgs = c.read()
    return not c.closed and any(m.get("id") == 1 and "result" in m for m in msgs)


def test_silent_unauthenticated_socket_is_closed_after_the_login_timeout():
    # The issue: "an unauthenticated silent socket stays open forever (170 s checked)".
    h = NetHarness(USERS)
    c = h.open()
    h.clock.advance(9.9)
    assert not c.closed
    h.clock.advance(0.1)
    msgs = c.read()
    assert msgs[-1]["error"] == {"code": codec.AUTH_ERROR, "message": "No login within 10 seconds; closing the connection"}
    assert c.closed
    h.clock.advance(h.factory.close_timeout)  # never reads the goodbye: aborted
    assert h.clock.getDelayedCalls() == []


def test_pinging_without_logging_in_does_not_extend_the_deadline():
    h = NetHarness(USERS)
    c = h.open()
    for _ in range(9):
        h.clock.advance(1)
        assert _alive(c)
    h.clock.advance(1)
    assert c.closed


def test_a_client_that_logs_in_stays_however_long_it_idles():
    h = NetHarness(USERS)
    c = h.open()
    c.read()
    assert "result" in h.login(c, "alice")
    h.clock.advance(100_000)
    assert _alive(c)


def test_without_login_required_an_idle_client_stays_once_it_has_made_a_request():
    h = NetHarness()
    c = h.open()
    h.clock.advance(9)
    assert _alive(c)
    h.clock.advance(100_000)
    assert _alive(c)


def test_without_login_required_a_socket_that_never_sends_a_request_is_closed():
    # Issue 22: without [users] an idle socket held its place (and a WebSocket
    # answering pings) forever; login_timeout now asks for a first request.
    h = NetHarness()
    c = h.open()
    c.send_raw(b'{"jsonrpc":')  # a line begun is not a request
    h.clock.advance(9.9)
    assert not c.closed
    h.clock.advance(0.1)
    assert c.read()[-1]["error"] == {"code": codec.CONNECTION_CLOSING,
                                     "message": "No request within 10 seconds; closing the connection"}
    assert c.closed


@pytest.mark.parametrize("users", [USERS, None])
def test_slowloris_a_line_trickled_forever_is_closed(users):
    h = NetHarness(users)
    c = h.open()
    c.read()
    if users:
        h.login(c, "alice")
    else:
        assert _alive(c)
    c.send_raw(b'{"jsonrpc":"2.0",')
    for _ in range(29):
        h.clock.advance(1)
        c.send_raw(b" ")
        assert not c.closed
    h.clock.advance(1)
    assert c.closed
    assert "did not end within 30 seconds" in c.read()[-1]["error"]["message"]


def test_lines_that_end_in_time_keep_the_connection_however_they_are_split():
    h = NetHarness()
    c = h.open()
    c.read()
    assert _alive(c)
    for _ in range(20):  # every line takes 20 s and arrives in two pieces, each ending mid-line
        c.send_raw(PING[:10])
        h.clock.advance(20)
        c.send_raw(PING[10:] + PING[:5])
        h.clock.advance(20)
        c.send_raw(PING[5:])
    assert not c.closed
    assert len([m for m in c.read() if "result" in m]) == 40


def test_two_thousand_slowloris_from_one_address_hold_50_then_none():
    # The issue: "2,000 slowloris connections were all held".
    h = NetHarness(USERS)
    conns = [h.open("192.0.2.1") for _ in range(2000)]
    for c in conns:
        c.send_raw(b'{"jsonrpc"')
    admitted = [c for c in conns if c.proto.session is not None]
    assert len(admitted) == 50 and h.factory.budget.total == 50
    refused = [c for c in conns if c.proto.session is None]
    assert all(c.closed for c in refused)
    assert refused[0].read() == [{"jsonrpc": "2.0", "id": None, "error": {
        "code": codec.CONNECTION_CLOSING,
        "message": "Connection refused: 50 connections from your address are open already "
                   "(server.max_clients_per_address); try again later"}}]
    h.clock.advance(10)
    assert sum(not c.closed for c in conns) == 0


def test_total_limit_refuses_newcomers_and_existing_clients_keep_working():
    h = NetHarness(USERS, limits=ConnectionLimits(max_clients=100, max_clients_per_address=5))
    first = h.open("10.0.0.1")
    kept = [first] + [h.open(f"10.0.{i // 5}.{i % 5 + 2}") for i in range(99)]
    assert all(c.proto.session is not None for c in kept)
    for c in kept:
        c.read()
        assert "result" in h.login(c, "alice")  # logged in: never displaced
    late = h.open("10.9.9.9")
    assert late.closed and "server.max_clients" in late.read()[0]["error"]["message"]
    assert _alive(first)
    first.proto.connectionLost(None)  # a place frees up
    again = h.open("10.9.9.9")
    assert again.proto.session is not None and _alive(again)


def test_when_strangers_fill_the_server_a_new_address_displaces_one_of_the_fullest_address():
    # Issue 22: sockets from many addresses that never log in must not keep a
    # new login out. The newcomer takes the place of the oldest stranger of
    # the address holding the most; logged-in clients are never displaced.
    h = NetHarness(USERS, limits=ConnectionLimits(max_clients=10, max_clients_per_address=5))
    member = h.open("10.0.0.1")
    member.read()
    h.login(member, "alice")
    crowd = [h.open("10.0.0.2") for _ in range(5)] + [h.open(f"10.0.1.{i}") for i in range(4)]
    assert h.factory.budget.total == 10
    newcomer = h.open("10.9.9.9")
    assert newcomer.proto.session is not None and not newcomer.closed
    assert crowd[0].closed and not any(c.closed for c in crowd[1:])  # the oldest of 10.0.0.2 (it held 5)
    assert crowd[0].read()[-1]["error"]["message"] == (
        "The server is full; a connection that had not logged in was closed")
    assert "result" in h.login(newcomer, "bob")
    for i in range(3):  # 10.0.0.2 still holds the most strangers (4, 3, 2): it pays for each newcomer
        h.open(f"10.8.0.{i}")
    assert [c.closed for c in crowd[1:5]] == [True, True, True, False]
    assert _alive(member) and h.factory.budget.total == 10
    assert h.factory.cut_offs["displaced"] == 4
    # when every address holds as few strangers as the newcomer's, it is refused
    h2 = NetHarness(USERS, limits=ConnectionLimits(max_clients=3, max_clients_per_address=5))
    for i in range(3):
        h2.open(f"10.0.2.{i}")
    h2.open("10.0.2.0")  # the newcomer's address already holds one: no address holds more
    assert h2.factory.budget.refused == 1


def test_refusals_are_logged_once_per_address_per_minute():
    from twisted.logger import formatEvent

    from .helpers import capture_log

    seen, stop = capture_log()
    try:
        h = NetHarness(limits=ConnectionLimits(max_clients_per_address=1))
        for _ in range(500):
            h.open("192.0.2.5")
        h.clock.advance(61)
        h.open("192.0.2.5")
    finally:
        stop()
    lines = [formatEvent(e) for e in seen if "refused a connection" in formatEvent(e)]
    assert len(lines) == 2 and "498 more held back" in lines[1]


def test_config_keys_reach_the_factory(tmp_path):
    from asttapi_server.clients.hub import Hub
    from asttapi_server.clients.protocol import ClientFactory
    from asttapi_server.config import load_config

    from tests.clients.fakes import FakeTelephony

    path = tmp_path / "a.toml"
    path.write_text("[server]\nmax_clients = 7\nmax_clients_per_address = 3\nlogin_timeout = 4\n"
                    "handshake_timeout = 5\nline_timeout = 6.5\n")
    f = ClientFactory.from_config(load_config(str(path)), Hub(), FakeTelephony(), clock=object())
    assert f.limits == ConnectionLimits(7, 3, 4.0, 5.0, 6.5)
    assert ConnectionLimits() == ConnectionLimits(1000, 50, 10.0, 10.0, 30.0)


def test_tls_client_that_never_handshakes_is_aborted(tmp_path):
    from twisted.protocols.tls import TLSMemoryBIOFactory

    from asttapi_server.clients.listen import tls_options

    from .tlsutil import make_cert

    key, cert = make_cert(tmp_path)
    h = NetHarness()  # no login required: only the handshake deadline applies
    wrapped = TLSMemoryBIOFactory(tls_options(str(key), str(cert)), False, h.factory)
    from twisted.internet.address import IPv4Address
    from twisted.internet.testing import StringTransport

    addr = IPv4Address("TCP", "192.0.2.30", 5555)
    transport = StringTransport(peerAddress=addr)
    tls = wrapped.buildProtocol(addr)
    tls.makeConnection(transport)
    assert h.factory.budget.total == 1
    h.clock.advance(9.9)
    assert not transport.disconnecting
    h.clock.advance(0.1)
    assert transport.disconnecting


def test_a_flood_of_connections_with_overlong_lines_logs_one_line_a_minute():
    from twisted.logger import formatEvent

    from .helpers import capture_log

    seen, stop = capture_log()
    try:
        h = NetHarness(max_line_bytes=1024)
        for _ in range(200):
            c = h.open("192.0.2.40")
            c.send_raw(b"x" * 2000)
            assert c.closed
            c.proto.connectionLost(None)
    finally:
        stop()
    lines = [formatEvent(e) for e in seen if "longer than 1024 bytes" in formatEvent(e)]
    assert len(lines) == 1


def test_closing_for_too_many_errors_is_logged_once_per_address_per_minute():
    # A stranger that sends 21 bad lines, is closed, and reconnects at once
    # (e.g. 21 logins with token "\ud800") wrote one log line per connection:
    # ~500 lines / 28 KB of log a second from one address (bench/net_abuse.py).
    from twisted.logger import formatEvent

    from .helpers import capture_log

    bad = b'{"jsonrpc":"2.0","id":1,"method":"login","params":{"username":"alice","token":"\\ud800"}}\n'
    seen, stop = capture_log()
    try:
        h = NetHarness(USERS, user_request_burst=10_000)  # the address's shared budget is not the point
        for _ in range(40):
            c = h.open("192.0.2.7")
            for _ in range(21):
                c.send_raw(bad)
            assert c.closed
            c.proto.connectionLost(None)
        h.clock.advance(61)
        c = h.open("192.0.2.7")
        for _ in range(21):
            c.send_raw(bad)
        assert c.closed
    finally:
        stop()
    lines = [formatEvent(e) for e in seen if "errors in" in formatEvent(e)]
    assert len(lines) == 2 and "39 more held back" in lines[1], lines
