"""Issue 22, items 1 and 2: the web listener's HTTP connections, on a Clock.

Every HTTP connection counts in the server's one connection budget, a request
has an absolute deadline a trickle cannot extend, and nothing an
unauthenticated peer sends costs more than a throttled log line.
"""

from __future__ import annotations

import base64
import json
import os
import re

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from asttapi_server.clients.auth import Authenticator
from asttapi_server.clients.hub import Hub
from asttapi_server.clients.limits import ConnectionLimits
from asttapi_server.clients.protocol import ClientFactory
from asttapi_server.web.ops import ops_children
from asttapi_server.web.resource import make_site
from asttapi_server.web.ws import WebSocketEndpoint, WebSocketFactory
from tests.clients.fakes import FakeTelephony
from tests.security.helpers import USERS

from .harness import _Socket

GET = b"GET %s HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"


class Web:
    """A web site around a ClientFactory (the server's budget), its connections on StringTransports."""

    def __init__(self, tmp_path, *, users=USERS, access_log=False, **factory_kw) -> None:
        static = tmp_path / "static"
        static.mkdir()
        (static / "index.html").write_text("<!doctype html><title>page</title>")
        (static / "app.js").write_text("console.log(1)")
        self.clock = Clock()
        factory_kw.setdefault("work_clock", lambda: 0.0)  # as tests.clients.harness does
        self.clients = ClientFactory(Hub(), FakeTelephony(), Authenticator(users), clock=self.clock, **factory_kw)
        ws = WebSocketFactory(self.clients, auto_ping=0, handshake_timeouts=False)

        class App:  # what the probes read
            client_factory = self.clients
            running = True
            ami = bridge = None

        self.site = make_site(WebSocketEndpoint(ws), static_dir=static, clients=self.clients,
                              ops=ops_children(App(), None))
        self.site.access_log = access_log
        self._port = 50000

    def connect(self, host: str = "192.0.2.1"):
        self._port += 1
        addr = IPv4Address("TCP", host, self._port)
        transport = _Socket(peerAddress=addr, hostAddress=IPv4Address("TCP", "127.0.0.1", 8080))
        channel = self.site.buildProtocol(addr)
        if channel is None:  # refused: Twisted closes the socket it accepted
            transport.loseConnection()
            return None, transport
        transport.protocol = channel  # as a TCP transport has it (autobahn's upgrade replaces it)
        channel.makeConnection(transport)
        return channel, transport

    def tcp(self, host: str = "192.0.2.1"):
        addr = IPv4Address("TCP", host, 1)
        transport = StringTransport(peerAddress=addr)
        proto = self.clients.buildProtocol(addr)
        proto.makeConnection(transport)
        return proto, transport


def responses(transport: StringTransport) -> list[bytes]:
    """The status lines written so far."""
    return re.findall(rb"HTTP/1\.1 \d{3} [^\r]*", transport.value())


def test_http_connections_count_in_the_same_budget_as_every_other_listener(tmp_path):
    web = Web(tmp_path, limits=ConnectionLimits(max_clients=100, max_clients_per_address=3))
    held = [web.connect() for _ in range(3)]
    assert web.clients.budget.total == 3
    channel, transport = web.connect()
    assert channel is None and transport.disconnecting  # closed as soon as accepted
    proto, tcp = web.tcp()  # the JSON-lines port counts the same connections
    assert b"server.max_clients_per_address" in tcp.value() and tcp.disconnecting
    held[0][0].connectionLost(None)
    assert web.clients.budget.total == 2
    web.tcp()
    assert web.clients.budget.total == 3
    assert web.clients.cut_offs["refused"] == 2


def test_a_trickled_request_meets_its_deadline_however_often_bytes_come(tmp_path, logged):
    # The issue: Twisted's idle timer restarts on every byte; 1,100 requests
    # sent a byte every 20 s held the process at its file limit.
    web = Web(tmp_path)
    channel, transport = web.connect()
    channel.dataReceived(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    for _ in range(9):
        web.clock.advance(1)
        channel.dataReceived(b"x")
        assert not transport.disconnecting
    web.clock.advance(1)
    assert responses(transport) == [b"HTTP/1.1 408 Request Timeout"] and transport.disconnecting
    assert web.clients.cut_offs["request_timeout"] == 1
    channel.connectionLost(None)
    assert web.clients.budget.total == 0
    more = [web.connect() for _ in range(50)]  # more of them: one log line a minute from that address
    for channel, _ in more:
        channel.dataReceived(b"GET / HTTP/1.1\r\n")
    web.clock.advance(10)
    assert all(transport.disconnecting for _, transport in more)
    assert len([line for line in logged() if "web.request_timeout" in line]) == 1


def test_a_kept_alive_connection_idle_past_the_timeout_is_closed_without_a_log_line(tmp_path, logged):
    web = Web(tmp_path)
    channel, transport = web.connect()
    channel.dataReceived(GET % b"/healthz")
    assert responses(transport) == [b"HTTP/1.1 200 OK"]
    web.clock.advance(14.9)
    assert not transport.disconnecting
    web.clock.advance(0.1)
    assert transport.disconnecting
    assert not [line for line in logged() if "Timing out" in line]


@pytest.mark.parametrize("path", [b"/static/%00", b"/%00", b"/static/a%00b.js", b"/static/%2e%2e/x",
                                  b"/static/%2fetc", b"/static/a%5cb", b"/static/.git", b"/%0a", b"/static/x/%00"])
def test_a_path_that_is_not_a_plain_file_name_is_a_404_before_static_file_and_logs_nothing(tmp_path, logged, path):
    # The issue: GET /static/%00 made static.File raise: 4,224 tracebacks/s.
    web = Web(tmp_path)
    channel, transport = web.connect()
    channel.dataReceived(GET % path)
    assert responses(transport) == [b"HTTP/1.1 404 Not Found"]
    assert logged() == []


def test_404s_and_probes_are_not_logged_by_default(tmp_path, logged):
    web = Web(tmp_path, user_request_burst=10_000)
    channel, transport = web.connect()
    channel.dataReceived((GET % b"/no-such-file") * 50 + (GET % b"/healthz") * 50 + (GET % b"/readyz") * 50)
    assert len(responses(transport)) == 150
    assert logged() == []


def test_the_access_log_is_throttled_and_never_logs_probes(tmp_path, logged):
    web = Web(tmp_path, access_log=True, user_request_burst=10_000)
    channel, transport = web.connect()
    channel.dataReceived((GET % b"/healthz") * 20)
    assert logged() == []
    channel.dataReceived((GET % b"/nope") * 1000)
    assert len(responses(transport)) == 1020
    lines = logged()
    assert 90 <= len(lines) <= 101 and all("GET /nope 404" in line for line in lines)
    web.clock.advance(1)
    channel.dataReceived(GET % b"/nope")
    assert "requests not logged" in logged()[-1]


def test_pipelined_requests_wait_for_their_address_budget(tmp_path):
    web = Web(tmp_path, user_request_rate=100, user_request_burst=50)
    channel, transport = web.connect()
    channel.dataReceived((GET % b"/nope") * 500)  # one read: the flood of the issue
    assert len(responses(transport)) == 50
    web.clock.advance(0.1)  # 10 more tokens
    assert len(responses(transport)) == 60
    other, other_transport = web.connect("192.0.2.9")  # another address has its own budget
    other.dataReceived(GET % b"/healthz")
    assert responses(other_transport) == [b"HTTP/1.1 200 OK"]
    channel.connectionLost(None)  # a connection gone while its request waited
    web.clock.advance(10)
    assert web.clients.budget.total == 1


def test_a_request_also_costs_the_reactor_time_it_took(tmp_path):
    ticks = iter(range(0, 10**6))
    web = Web(tmp_path, user_request_rate=100, user_request_burst=50,
              work_clock=lambda: next(ticks) * 0.0005)  # every request takes 0.5 ms: 1 + 10 tokens
    channel, transport = web.connect()
    channel.dataReceived((GET % b"/nope") * 100)
    assert len(responses(transport)) == 5  # 50 tokens, 11 a request (the fifth runs into debt)


def _upgrade(channel, origin: bytes | None = None) -> None:
    key = base64.b64encode(os.urandom(16))
    head = (b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n")
    if origin:
        head += b"Origin: " + origin + b"\r\n"
    channel.dataReceived(head + b"\r\n")


def _frame(opcode: int, payload: bytes = b"", fin: bool = True) -> bytes:
    return bytes([(0x80 if fin else 0) | opcode, 0x80 | len(payload)]) + b"\0\0\0\0" + payload


def test_a_websocket_keeps_the_place_of_its_http_connection_and_logging_in_makes_it_a_member(tmp_path):
    web = Web(tmp_path, limits=ConnectionLimits(max_clients=100, max_clients_per_address=2))
    channel, transport = web.connect()
    _upgrade(channel)
    assert transport.value().startswith(b"HTTP/1.1 101 ")
    assert web.clients.budget.total == 1 and len(web.clients.connections) == 1
    (conn,) = web.clients.connections
    assert conn._slot is not None and conn._slot.stranger
    login = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "login",
                        "params": {"username": "alice", "token": USERS["alice"]["token"]}}).encode()
    transport.protocol.dataReceived(_frame(1, login))
    assert b'"user":"alice"' in transport.value()
    assert not conn._slot.stranger
    web.connect()
    assert web.clients.budget.total == 2 and web.connect()[1].disconnecting  # the cap holds across both
    transport.protocol.connectionLost(Failure(ConnectionDone()))
    assert web.clients.budget.total == 1


def test_refused_origins_cost_one_log_line_a_minute_and_nothing_of_autobahns(tmp_path, logged):
    # The issue: autobahn logged its own warning per refused handshake (994 lines/s).
    web = Web(tmp_path)
    for _ in range(50):
        channel, transport = web.connect()
        _upgrade(channel, origin=b"http://evil.example")
        assert transport.value().startswith(b"HTTP/1.1 403 ")
        transport.protocol.connectionLost(Failure(ConnectionDone()))
    lines = logged()
    assert len(lines) == 1 and "refused a WebSocket" in lines[0], lines
    assert web.clients.budget.total == 0


def test_invalid_utf8_frames_from_many_connections_cost_at_most_a_line(tmp_path, logged):
    # The issue: 2,213 lines/s of autobahn's "failing WebSocket connection".
    web = Web(tmp_path)
    for i in range(50):
        channel, transport = web.connect(f"192.0.2.{i + 10}")
        _upgrade(channel)
        transport.protocol.dataReceived(_frame(1, b"\xff\xfe\xfd"))
        assert b"\x88" in transport.value()  # a close frame (1007)
        transport.protocol.connectionLost(Failure(ConnectionDone()))
    assert len(logged()) <= 1, logged()


@pytest.mark.parametrize("framing", [b"Content-Length: 10000000\r\n", b"Transfer-Encoding: chunked\r\n"])
def test_a_request_body_over_64_kib_gets_413_and_is_never_kept(tmp_path, framing):
    web = Web(tmp_path)
    channel, transport = web.connect()
    channel.dataReceived(b"POST /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + framing + b"\r\n")
    chunk = b"x" * 8192
    for _ in range(20):
        channel.dataReceived(chunk if b"Length" in framing else b"2000\r\n" + chunk + b"\r\n")
    assert responses(transport) == [b"HTTP/1.1 413 Content Too Large"] and transport.disconnecting
    request = channel.requests[-1]
    assert request.content.tell() <= 65536 and not hasattr(request.content, "name")  # in memory, not a file
    assert web.clients.cut_offs["oversize"] == 1
