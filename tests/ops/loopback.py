"""A whole server on the demo PBX over loopback, line clients, and a plain HTTP GET, for the ops tests."""

from __future__ import annotations

import json

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.task import deferLater
from twisted.protocols.basic import LineOnlyReceiver

from tests.watching import Watching
from tests.web.test_loopback import raw_http


class LineClient(Watching, LineOnlyReceiver):
    """A JSON-lines client: ``call`` a method, ``wait_for`` a message."""

    delimiter = b"\n"
    MAX_LENGTH = 1 << 22

    def __init__(self) -> None:
        self.messages: list = []
        self._watchers: list = []
        self._next = 0
        self.lost: defer.Deferred = defer.Deferred()

    def lineReceived(self, line: bytes) -> None:
        self.received(json.loads(line))

    def connectionLost(self, reason=None) -> None:
        self.lost.callback(None)

    def call(self, method: str, **params) -> defer.Deferred:
        self._next += 1
        rid = self._next
        d = self.wait_for(lambda m: m.get("id") == rid and "method" not in m)
        self.sendLine(json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params}).encode())
        return d

    def seqs(self) -> list[int]:
        return [m["params"]["seq"] for m in self.messages
                if m.get("method", "").startswith("LINE_") and "seq" in m.get("params", {})
                and not m["params"].get("existing")]


@defer.inlineCallbacks
def line_client(port: int, user: str | None = None, token: str | None = None, *, case=None):
    """Connected (and logged in); ``case``: a trial TestCase that closes it at cleanup."""
    client = yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), LineClient())
    if case is not None:
        def close():
            if not client.lost.called:
                client.transport.loseConnection()
            return client.lost
        case.addCleanup(close)
    yield client.wait_for(lambda m: m.get("method") == "hello")
    if user is not None:
        answer = yield client.call("login", username=user, token=token)
        assert "result" in answer, answer
    return client


@defer.inlineCallbacks
def http_get(port: int, path: str, host: str = "127.0.0.1"):
    """(status, headers dict, body) of one GET."""
    data = yield raw_http(port, f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        out, rest = b"", body
        while rest:
            size_text, _, rest = rest.partition(b"\r\n")
            size = int(size_text, 16)
            if size == 0:
                break
            out, rest = out + rest[:size], rest[size + 2:]
        body = out
    return status, headers, body


@defer.inlineCallbacks
def until(predicate, timeout: float = 10.0, step: float = 0.02):
    for _ in range(int(timeout / step)):
        if predicate():
            return
        yield deferLater(reactor, step, lambda: None)
    raise AssertionError("condition not met in time")
