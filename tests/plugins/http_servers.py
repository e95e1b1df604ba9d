"""Real HTTP servers (twisted.web) on loopback ports for the HTTP plugin tests.

``Server(answer)`` listens on 127.0.0.1, port 0; ``answer(request)`` returns
``(status, headers, body)`` or ``None`` to leave the request hanging (a slow
server); every request is recorded as :class:`Seen`. ``stop()`` refuses new
connections (the server "goes away"), ``start()`` listens again on the same
port.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer, reactor
from twisted.logger import formatEvent, globalLogPublisher
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    form: dict[str, list[str]] = field(default_factory=dict)


Answer = tuple[int, dict[str, str], bytes]


class _Resource(Resource):
    isLeaf = True

    def __init__(self, server: "Server") -> None:
        super().__init__()
        self.server = server

    def render(self, request: Any) -> Any:
        body = request.content.read()
        headers = {k.decode().lower(): b", ".join(v).decode() for k, v in request.requestHeaders.getAllRawHeaders()}
        form = {k.decode(): [x.decode() for x in v] for k, v in (request.args or {}).items()} \
            if request.method == b"POST" else {}
        self.server.seen.append(Seen(request.method.decode(), request.uri.decode(), headers, body, form))
        answer = self.server.answer(request)
        if answer is None:
            self.server.hanging.append(request)
            return NOT_DONE_YET
        status, head, data = answer
        request.setResponseCode(status)
        for name, value in head.items():
            request.setHeader(name, value)
        return data


class _Site(Site):
    """A Site that knows its open connections, so a test can cut them."""

    noisy = False

    def __init__(self, resource: Resource) -> None:
        super().__init__(resource)
        self.open: set[Any] = set()

    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)
        self.open.add(protocol)
        lost = protocol.connectionLost

        def connection_lost(reason: Any) -> Any:
            self.open.discard(protocol)
            return lost(reason)

        protocol.connectionLost = connection_lost
        return protocol


class Server:
    def __init__(self, answer: Callable[[Any], Answer | None], *, context_factory: Any = None) -> None:
        self.answer = answer
        self.seen: list[Seen] = []
        self.hanging: list[Any] = []
        self.site = _Site(_Resource(self))
        self.context_factory = context_factory
        self.port_number = 0
        self.listening: Any = None
        self.start()

    def start(self) -> None:
        if self.context_factory is not None:
            self.listening = reactor.listenSSL(self.port_number, self.site, self.context_factory,
                                               interface="127.0.0.1")
        else:
            self.listening = reactor.listenTCP(self.port_number, self.site, interface="127.0.0.1")
        self.port_number = self.listening.getHost().port

    def url(self, path: str = "/") -> str:
        scheme = "https" if self.context_factory is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port_number}{path}"

    @defer.inlineCallbacks
    def stop(self):
        """Refuse new connections and drop the open ones (the server is gone)."""
        if self.listening is not None:
            listening, self.listening = self.listening, None
            yield listening.stopListening()
        self.hanging.clear()
        for protocol in list(self.site.open):
            (getattr(protocol, "transport", None) or protocol._channel.transport).abortConnection()


def json_answer(data: bytes, status: int = 200) -> Answer:
    return status, {"content-type": "application/json"}, data


class Logged:
    """Every log event while a trial test runs; ``texts(word)``: the formatted ones that mention it."""

    def __init__(self, case: Any) -> None:
        self.events: list[dict] = []
        globalLogPublisher.addObserver(self.events.append)
        case.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def texts(self, contains: str) -> list[str]:
        return [formatEvent(e) for e in self.events if contains in formatEvent(e)]
