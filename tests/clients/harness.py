"""A hub, a fake bridge and client connections over StringTransport."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from asttapi_server.clients.auth import Authenticator
from asttapi_server.clients.hub import Hub
from asttapi_server.clients.protocol import ClientFactory, ClientProtocol

from .fakes import FakeTelephony

USERS = {
    "alice": {"token": "s3cret-alice", "lines": ["line_1", "line_1*"]},
    "bob": {"token": "s3cret-bob", "lines": ["sip/bob*"]},
}


class Conn:
    """One client connection: write lines in, read decoded messages out."""

    def __init__(self, factory: ClientFactory, port: int) -> None:
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", port))
        self.proto: ClientProtocol = factory.buildProtocol(self.transport.getPeer())
        self.proto.makeConnection(self.transport)
        self._next_id = 0

    def send_raw(self, data: bytes) -> None:
        self.proto.dataReceived(data)

    def send(self, obj: Any) -> None:
        self.send_raw(json.dumps(obj).encode() + b"\n")

    def read(self) -> list[dict]:
        data = self.transport.value()
        self.transport.clear()
        return [json.loads(line) for line in data.split(b"\n") if line]

    def call(self, method: str, **params: Any) -> dict:
        """Send a request; return its response (notifications before it are kept in .seen)."""
        self._next_id += 1
        rid = self._next_id
        self.send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        msgs = self.read()
        responses = [m for m in msgs if m.get("id") == rid and "method" not in m]
        self.seen = [m for m in msgs if m not in responses]
        assert len(responses) == 1, msgs
        return responses[0]

    def result(self, method: str, **params: Any) -> Any:
        response = self.call(method, **params)
        assert "result" in response, response
        return response["result"]

    @property
    def closed(self) -> bool:
        return self.transport.disconnecting or self.transport.disconnected


class Harness:
    def __init__(self, users: dict | None = None, **factory_kw: Any) -> None:
        self.clock = Clock()
        self.hub = Hub(ring_size=factory_kw.pop("ring_size", 100), epoch="e1")
        self.tel = FakeTelephony()
        # Requests cost no measured reactor time here (tests/clients/test_user_budget.py measures it):
        # a busy test machine must not change how many requests a budget lets through.
        factory_kw.setdefault("work_clock", lambda: 0.0)
        self.factory = ClientFactory(
            self.hub, self.tel, Authenticator(users or {}), clock=self.clock, **factory_kw
        )
        self._port = 40000

    def connect(self, user: str | None = None) -> Conn:
        self._port += 1
        conn = Conn(self.factory, self._port)
        hello = conn.read()
        assert hello[0]["method"] == "hello"
        conn.hello = hello[0]["params"]
        if user is not None:
            conn.result("login", username=user, token=USERS[user]["token"])
        return conn
