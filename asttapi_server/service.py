"""Composition: build the whole server as one Twisted ``MultiService``.

This is the only module that knows every part. Everything it builds takes its
collaborators as arguments, so tests can build the same graph around a
``MemoryReactor``/``Clock`` or a loopback demo PBX.
"""

from __future__ import annotations

from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet.endpoints import TCP4ClientEndpoint, serverFromString
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.logger import Logger
from zope.interface import implementer

from .ami.client import AMIClient
from .bridge import Bridge
from .clients.auth import check_listen_security
from .clients.hub import Hub
from .clients.protocol import ClientFactory
from .config import Config
from .core.model import CallModel
from .plugins import build_plugin_manager

log = Logger()


@implementer(IStreamClientEndpoint)
class _LateTCPEndpoint:
    """Connects to a port known only once another service has started.

    The demo PBX listens on an ephemeral loopback port when it starts; the
    AMI client is built before that, so it asks for the port at connect time.
    """

    def __init__(self, reactor: Any, host: str, port_of: Any) -> None:
        self._reactor = reactor
        self._host = host
        self._port_of = port_of

    def connect(self, factory: Any) -> Any:
        return TCP4ClientEndpoint(self._reactor, self._host, self._port_of(), timeout=10).connect(factory)


class AppService(MultiService):
    """The running server: its parts, reachable for tests and plugins."""

    def __init__(self, config: Config, reactor: Any) -> None:
        super().__init__()
        self.config = config
        self.reactor = reactor
        self.plugins: Any = None
        self.bridge: Bridge | None = None
        self.hub: Hub | None = None
        self.ami: AMIClient | None = None
        self.demo: Any = None
        self.model: CallModel | None = None
        self.client_factory: ClientFactory | None = None

    def startService(self) -> None:
        if self.demo is not None:
            log.warn(
                "DEMO MODE: no Asterisk configured; calls come from the embedded SIMULATED PBX, not a real phone system"
            )
        d = self.plugins.startup(self.config, self)
        d.addErrback(self._plugin_startup_failed)
        super().startService()

    def _plugin_startup_failed(self, failure: Any) -> None:
        log.failure("A plugin failed to start; stopping the server", failure)
        if self.reactor.running:
            self.reactor.stop()

    def stopService(self) -> Any:
        d = super().stopService()
        if self.bridge is not None:
            self.bridge.stop()

        def shutdown(result: Any) -> Any:
            return self.plugins.shutdown().addBoth(lambda _: result)

        return d.addBoth(shutdown) if d is not None else shutdown(None)


def make_service(config: Config, reactor: Any = None) -> AppService:
    """Build every part of the server from ``config``; nothing runs until started."""
    if reactor is None:
        from twisted.internet import reactor as _reactor

        reactor = _reactor

    check_listen_security(config.server.listen, config.users)

    app = AppService(config, reactor)
    app.plugins = build_plugin_manager(config.plugins, config=config, clock=reactor)

    ami_conf = config.ami
    if config.demo or not ami_conf.host:
        from .demo.server import DemoPBXService

        demo = DemoPBXService(
            reactor=reactor,
            username=ami_conf.username,
            secret=ami_conf.secret,
            interface="127.0.0.1",
            port=0,
        )
        demo.setServiceParent(app)
        app.demo = demo
        endpoint: Any = _LateTCPEndpoint(reactor, "127.0.0.1", demo.listening_port)
    else:
        endpoint = TCP4ClientEndpoint(reactor, ami_conf.host, ami_conf.port, timeout=10)

    app.ami = AMIClient(
        endpoint,
        ami_conf.username,
        ami_conf.secret,
        auth=ami_conf.auth,
        clock=reactor,
        keepalive=ami_conf.keepalive,
        pong_timeout=ami_conf.pong_timeout,
        action_timeout=ami_conf.action_timeout,
    )
    app.model = CallModel(
        hangup_grace=config.calls.hangup_grace,
        max_age=config.calls.max_age,
        linger=config.calls.linger,
    )
    app.hub = Hub(ring_size=config.server.replay_ring)
    app.bridge = Bridge(
        config=config,
        ami=app.ami,
        model=app.model,
        plugins=app.plugins,
        hub=app.hub,
        clock=reactor,
    )
    app.client_factory = ClientFactory.from_config(config, app.hub, app.bridge, clock=reactor)
    for description in config.server.listen:
        endpoint_service = StreamServerEndpointService(serverFromString(reactor, description), app.client_factory)
        endpoint_service._raiseSynchronously = True
        endpoint_service.setServiceParent(app)
    app.ami.setServiceParent(app)
    return app

