"""A client harness (StringTransport, Clock) whose connections may come from any address."""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.testing import StringTransport

from tests.clients.harness import Conn, Harness

#: Long enough for the config's 16-character minimum (the factory itself does not check).
USERS = {
    "alice": {"token": "alice-0123456789abcdef", "lines": ["line_*"]},
    "bob": {"token": "bob-0123456789abcdef", "lines": ["line_*"]},
}


class AddrConn(Conn):
    """A Conn from ``host`` (IPv4 or IPv6) instead of 127.0.0.1."""

    def __init__(self, factory: Any, host: str, port: int) -> None:
        addr = IPv6Address("TCP", host, port) if ":" in host else IPv4Address("TCP", host, port)
        self.transport = StringTransport(peerAddress=addr)
        self.proto = factory.buildProtocol(addr)
        self.proto.makeConnection(self.transport)
        self._next_id = 0


class NetHarness(Harness):
    def open(self, host: str = "127.0.0.1") -> AddrConn:
        """Connect without reading the hello (it may be a refusal)."""
        self._port += 1
        return AddrConn(self.factory, host, self._port)

    def login(self, conn: Conn, user: str, token: str | None = None) -> dict:
        return conn.call("login", username=user, token=USERS[user]["token"] if token is None else token)


def capture_log():
    """(events list, stop function): every Twisted log event while it runs."""
    from twisted.logger import globalLogPublisher

    seen: list[dict] = []
    globalLogPublisher.addObserver(seen.append)
    return seen, lambda: globalLogPublisher.removeObserver(seen.append)
