"""A scripted Asterisk for protocol/client tests: MemoryReactorClock + StringTransport.

Replays the server bytes of real captures, with the capture's ActionIDs
rewritten to the ones our client actually sent.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ConnectionDone, ConnectionLost, ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from asttapi_server.ami.link import AMILink
from asttapi_server.ami.message import Message
from asttapi_server.ami.parser import AMIParser

from .helpers import load

BANNER = b"Asterisk Call Manager/11.0.0\r\n"


class Transport(StringTransport):
    """A StringTransport whose close really reaches the protocol (like TCP)."""

    def __init__(self) -> None:
        super().__init__(peerAddress=IPv4Address("TCP", "127.0.0.1", 5038))
        self.protocol = None
        self.aborted = False

    def loseConnection(self) -> None:
        if not self.disconnecting:
            super().loseConnection()
            self.close(ConnectionDone("closed by client"))

    def abortConnection(self) -> None:
        self.aborted = True
        self.loseConnection()

    def close(self, reason=None) -> None:
        """The server (or the network) closes the connection."""
        proto, self.protocol = self.protocol, None
        if proto is not None:
            self.disconnecting = True
            proto.connectionLost(Failure(reason or ConnectionDone("closed by server")))


class Session:
    """One accepted connection as seen by the fake server.

    Like Asterisk, it answers the ``Getvar`` of a presentation the server sends
    before it shows a party (``CALLERID(pres)``, ``CONNECTEDLINE(pres)``) after
    each :meth:`send`: from ``presentation`` (channel -> value, default
    ``allowed_not_screened``), recorded in ``getvars``. ``answer_getvar = False``
    leaves them to the test, in :meth:`actions`.
    """

    def __init__(self, proto, transport: Transport) -> None:
        self.proto = proto  # the endpoint's wrapping protocol
        self.transport = transport
        self._reader = AMIParser()
        self._read: list[Message] = []  # actions read while answering Getvars, not yet handed out
        self.presentation: dict[str, str] = {}
        self.getvars: list[tuple[str, str]] = []
        self.answer_getvar = True

    def actions(self) -> list[Message]:
        data = self.transport.value()
        self.transport.clear()
        out, self._read = self._read + self._reader.feed(data), []
        return out

    def send(self, data: bytes) -> None:
        self.proto.dataReceived(data)
        while self.answer_getvar and b"Action: Getvar" in self.transport.value():
            data = self.transport.value()
            self.transport.clear()
            for action in self._reader.feed(data):
                if action.name != "Getvar":
                    self._read.append(action)
                    continue
                channel, variable = action.get("Channel") or "", action.get("Variable") or ""
                self.getvars.append((channel, variable))
                value = self.presentation.get(channel, "allowed_not_screened")
                self.proto.dataReceived(
                    f"Response: Success\r\nActionID: {action.action_id}\r\nVariable: {variable}\r\n"
                    f"Value: {value}\r\n\r\n".encode())

    def close(self, reason=None) -> None:
        self.transport.close(reason)


class FakeAsterisk:
    def __init__(self) -> None:
        self.reactor = MemoryReactorClock()
        self.endpoint = TCP4ClientEndpoint(self.reactor, "pbx.example", 5038)
        self._used = 0

    def client(self, **kw) -> AMILink:
        kw.setdefault("clock", self.reactor)
        kw.setdefault("retry_policy", lambda n: min(2.0**n, 30.0))
        return AMILink(self.endpoint, kw.pop("username", "asttapi"), kw.pop("secret", "asttapi-secret"), **kw)

    def pending_connects(self) -> int:
        return len(self.reactor.tcpClients) - self._used

    def accept(self, banner: bytes = BANNER) -> Session:
        assert self.pending_connects() == 1, "exactly one connection attempt expected"
        factory = self.reactor.tcpClients[self._used][2]
        self._used += 1
        proto = factory.buildProtocol(None)
        transport = Transport()
        transport.protocol = proto
        proto.makeConnection(transport)
        session = Session(proto, transport)
        if banner:
            session.send(banner)
        return session

    def refuse(self) -> None:
        assert self.pending_connects() == 1
        factory = self.reactor.tcpClients[self._used][2]
        connector = self.reactor.connectors[self._used]
        self._used += 1
        factory.clientConnectionFailed(connector, Failure(ConnectionRefusedError()))

    def login_md5(self, session: Session, challenge: str = "145467744") -> list[Message]:
        """Answer Challenge + Login like capture 03a; returns the actions seen."""
        (ch,) = session.actions()
        assert ch.name == "Challenge"
        session.send(
            b"Response: Success\r\nActionID: %s\r\nChallenge: %s\r\n\r\n" % (ch.action_id.encode(), challenge.encode())
        )
        (login,) = session.actions()
        session.send(
            b"Response: Success\r\nActionID: %s\r\nMessage: Authentication accepted\r\n\r\n" % login.action_id.encode()
        )
        return [ch, login]


def replay(name: str, ids: dict[str, str], start: int = 0, stop: int | None = None) -> bytes:
    """Blocks [start:stop] of a capture's server bytes (banner removed), with the
    capture's ActionIDs replaced by ours."""
    data = load(name)
    if data.startswith(b"Asterisk Call Manager"):
        data = data.split(b"\r\n", 1)[1]
    blocks = [b for b in data.split(b"\r\n\r\n") if b.strip()][start:stop]
    out = b"".join(b + b"\r\n\r\n" for b in blocks)
    for theirs, ours in ids.items():
        out = out.replace(b"ActionID: %s\r\n" % theirs.encode(), b"ActionID: %s\r\n" % ours.encode())
    return out


__all__ = ["FakeAsterisk", "Session", "Transport", "replay", "BANNER", "ConnectionLost"]
