"""The client-protocol harness of tests/clients, over WebSocket.

:class:`WSHarness` is ``tests.clients.harness.Harness`` with one more layer:
every connection is a real autobahn server protocol (``asttapi_server.web.ws``)
on a ``StringTransport``, talking RFC 6455 to a real autobahn *client*
protocol in memory. :class:`WSConn` offers what ``Conn`` offers (``send``,
``send_raw``, ``read``, ``call``, ``result``, ``closed``, ``proto`` the
connection's ``ClientProtocol``, ``transport`` the server's socket), so the
TCP behaviour tests run unchanged against the WebSocket transport.
``send_raw`` sends each line of its bytes as one text frame (without the line
ending), all before the server reads any, as one TCP write of several lines.
"""

from __future__ import annotations

import json
from typing import Any

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from asttapi_server.web.ws import WebSocketFactory
from tests.clients.harness import USERS, Conn, Harness

PAGE_ORIGIN = "http://127.0.0.1:8080"


class _Socket(StringTransport):
    """A StringTransport that, like a real TCP or TLS transport, lets a
    connection unregister a producer it no longer has (autobahn does, when
    it drops a connection)."""

    def unregisterProducer(self) -> None:
        if self.producer is not None:
            super().unregisterProducer()


class _Client(WebSocketClientProtocol):
    def __init__(self) -> None:
        super().__init__()
        self.inbox: list[tuple[bytes, bool]] = []
        self.opened = False
        self.close_info: tuple[bool, Any, Any] | None = None

    def onOpen(self) -> None:
        self.opened = True

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.inbox.append((payload, isBinary))

    def onClose(self, wasClean: bool, code: Any, reason: Any) -> None:
        self.close_info = (wasClean, code, reason)


class WSConn(Conn):
    """One WebSocket client connection, pumped by hand (``call`` and ``result`` are Conn's)."""

    def __init__(self, ws_factory: WebSocketFactory, port: int, *, origin: str | None = PAGE_ORIGIN,
                 url: str = "ws://127.0.0.1:8080/ws") -> None:
        peer = IPv4Address("TCP", "127.0.0.1", port)
        self.transport = _Socket(peerAddress=peer, hostAddress=IPv4Address("TCP", "127.0.0.1", 8080))
        self.server = ws_factory.buildProtocol(peer)
        self.server.makeConnection(self.transport)
        factory = WebSocketClientFactory(url, origin=origin)
        factory.setProtocolOptions(openHandshakeTimeout=0, closeHandshakeTimeout=0, autoPingInterval=0,
                                   serverConnectionDropTimeout=0)
        factory.protocol = _Client
        self.client: _Client = factory.buildProtocol(None)
        self.client_transport = _Socket(peerAddress=IPv4Address("TCP", "127.0.0.1", 8080))
        self.client.makeConnection(self.client_transport)
        self._next_id = 0
        self._client_lost = self._server_lost = False
        self.pump()

    @property
    def proto(self) -> Any:
        return self.server.connection

    def pump(self) -> None:
        """Move bytes both ways until neither side has more to say."""
        for _ in range(1000):
            up = self.client_transport.value()
            self.client_transport.clear()
            if up:
                self.server.dataReceived(up)
            down = self.transport.value()
            self.transport.clear()
            if down:
                self.client.dataReceived(down)
            if not up and not down:
                break
        else:
            raise AssertionError("the two sides never stop talking")
        # A side that closed its socket: the other side sees the connection end.
        if self.transport.disconnecting and not self._client_lost:
            self._client_lost = True
            self.client.connectionLost(Failure(ConnectionDone()))
        if self.client_transport.disconnecting and not self._server_lost:
            self.drop()

    def drop(self) -> None:
        """The TCP connection under the WebSocket is gone (a network blip, a closed laptop)."""
        if not self._server_lost:
            self._server_lost = True
            self.server.connectionLost(Failure(ConnectionDone()))

    def frames(self) -> list[tuple[bytes, bool]]:
        self.pump()
        got, self.client.inbox = self.client.inbox, []
        return got

    def send_raw(self, data: bytes, *, binary: bool = False) -> None:
        """Send each line of ``data`` as one text frame (without its ``\\n`` or ``\\r\\n``),
        all at once; with ``binary``, ``data`` as one binary frame."""
        if binary:
            frames = [data]
        else:
            lines = data.split(b"\n")
            if lines[-1] == b"" and len(lines) > 1:
                lines.pop()  # the TCP tests end their last line with \n
            frames = [line[:-1] if line.endswith(b"\r") else line for line in lines]
        for frame in frames:
            if self.client.state != WebSocketClientProtocol.STATE_OPEN:
                break  # the server closed it; as on TCP, what a client still sends goes nowhere
            self.client.sendMessage(frame, isBinary=binary)
        self.pump()

    def read(self) -> list[Any]:
        out = []
        for payload, is_binary in self.frames():
            assert not is_binary, payload
            assert not payload.endswith(b"\n"), payload  # one message per frame, no line ending
            out.append(json.loads(payload))
        return out

    @property
    def closed(self) -> bool:
        self.pump()
        return self.transport.disconnecting or self.transport.disconnected


class WSHarness(Harness):
    """Harness whose connections are WebSocket clients of the same ClientFactory."""

    transport_name = "websocket"

    def __init__(self, users: dict | None = None, **factory_kw: Any) -> None:
        super().__init__(users, **factory_kw)
        self.ws_factory = WebSocketFactory(self.factory, auto_ping=0, handshake_timeouts=False)

    def connect(self, user: str | None = None, **kw: Any) -> WSConn:
        self._port += 1
        conn = WSConn(self.ws_factory, self._port, **kw)
        hello = conn.read()
        assert hello and hello[0]["method"] == "hello", hello
        conn.hello = hello[0]["params"]
        if user is not None:
            conn.result("login", username=user, token=USERS[user]["token"])
        return conn
