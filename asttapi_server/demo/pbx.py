"""The embedded demo PBX as a Twisted service: a simulated Asterisk on loopback.

Usage (this is what ``service.make_service`` does in demo mode)::

    pbx = DemoPBX(reactor, username=config.ami.username, secret=config.ami.secret)
    port = pbx.listen()                 # binds 127.0.0.1:<free port> right now
    ami_endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
    pbx.setServiceParent(top)           # startService() starts the looping calls

or, outside a service tree::

    pbx = yield start_demo_pbx(reactor, port=0, username="asttapi", secret="s")
    pbx.port.getHost().port             # where to connect
    flow = pbx.play("inbound")          # one call now; flow.done fires at its end
    yield pbx.stopService()

``DemoPBX(reactor=None, *, port=0, interface="127.0.0.1", username="asttapi",
secret="", timing=Timing(), phones=None, autoplay=True)``:

* ``timing``: :class:`~asttapi_server.demo.scenarios.Timing` (first call after
  2 s, 10 s between calls); ``Timing.fast()`` plays a call in ~50 ms.
* ``phones``: ``{channel: line}``, the ring group and the line each phone's
  calls are signalled on; default ``Local/bob@phones`` -> ``line_1``,
  ``Local/bobbett@phones`` -> ``line_2``.
* ``autoplay``: False plays nothing by itself; use :meth:`DemoPBX.play`.

It logs, at start and with every call, that it is a SIMULATION.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger

from asttapi_server.demo.engine import DemoEngine
from asttapi_server.demo.scenarios import Flow, Timing
from asttapi_server.demo.server import DemoAMIFactory

log = Logger()


class DemoPBX(Service):
    """A simulated Asterisk AMI server playing the manual's call flows."""

    name = "demo-pbx"

    def __init__(self, reactor: Any = None, *, port: int = 0, interface: str = "127.0.0.1",
                 username: str = "asttapi", secret: str = "", timing: Timing | None = None,
                 phones: Mapping[str, str] | None = None, autoplay: bool = True) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.reactor = reactor
        self.port_number = port
        self.interface = interface
        self.autoplay = autoplay
        self.engine = DemoEngine(reactor, timing=timing, phones=phones)
        self.factory = DemoAMIFactory(self.engine, username, secret)
        self.port: IListeningPort | None = None

    def listen(self) -> IListeningPort:
        """Bind the AMI port now (idempotent) and return it."""
        if self.port is None:
            self.port = self.reactor.listenTCP(self.port_number, self.factory,
                                               interface=self.interface)
            host = self.port.getHost()
            log.warn("DEMO PBX listening on {host}:{port}: a SIMULATED Asterisk, not a real PBX",
                     host=host.host, port=host.port)
        return self.port

    def startService(self) -> None:
        super().startService()
        self.listen()
        for line in (
            "*** DEMO MODE: the PBX is a SIMULATION (asttapi_server.demo), not a real Asterisk ***",
            "*** Calls, callers and numbers are invented; set ami.host to use a real PBX ***",
        ):
            log.warn(line)
        if self.autoplay:
            self.engine.start()
        else:
            self.engine.running = False

    def stopService(self) -> Deferred[Any]:
        super().stopService()
        self.engine.stop()
        waits: list[Deferred[Any]] = []
        for session in list(self.factory.sessions):
            session.transport.loseConnection()
        if self.port is not None:
            result = self.port.stopListening()
            if isinstance(result, Deferred):
                waits.append(result)
            self.port = None
        return DeferredList(waits) if waits else succeed(None)

    def play(self, kind: str, **kwargs: Any) -> Flow:
        """Play one flow now (``"inbound"``, ``"outbound"``, ``"busy"``); see DemoEngine.play."""
        return self.engine.play(kind, **kwargs)


def start_demo_pbx(reactor: Any = None, port: int = 0, username: str = "asttapi",
                   secret: str = "", **kwargs: Any) -> Deferred[DemoPBX]:
    """Start a :class:`DemoPBX` listening on loopback; fires with it (``.port`` set)."""
    pbx = DemoPBX(reactor, port=port, username=username, secret=secret, **kwargs)
    pbx.startService()
    return succeed(pbx)
