"""Composition: build the whole server as one Twisted ``MultiService``.

This is the only module that knows every part. Everything it builds takes its
collaborators as arguments, so tests can build the same graph around a
``MemoryReactor``/``Clock`` or a loopback demo PBX.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from .ami.link import AMILink
from .bridge import Bridge
from .clients.auth import check_listen_security
from .clients.hub import Hub
from .clients.listen import server_endpoint
from .clients.protocol import ClientFactory
from .config import Config
from .core.control import CORE_EVENTS, CallControl
from .core.model import CallModel
from .plugin_host import build_plugin_manager
from .store import DEFAULT_STATE_FILE, CallStore

log = Logger()

#: Bundled plugins a first run on the demo PBX enables (their defaults are sample data).
DEMO_PLUGINS = ("crm_sql", "outlook_contacts")


class StartupError(SystemExit, Exception):
    """Start-up cannot go on (a client port cannot be bound, a plugin failed to
    start); ``str()`` is the one line to show.

    Both bases on purpose. twistd's daemon runner catches ``Exception`` from
    ``startService``, sends its text to the waiting parent (which exits 1)
    and removes the pidfile; in the foreground (``twistd -n``) it reaches the
    top level, where Python prints a ``SystemExit``'s message as one line,
    no traceback, and exits 1. (twistd has redirected stderr to its log by
    then, so in both cases the line is in the log too.)
    """

    # twistd's daemon parent shows the first 100 bytes of
    # "module.Class: message"; the short form leaves them to the message.
    __module__ = "builtins"


def _failed_now(d: Deferred, later: Any) -> Any:
    """The Failure ``d`` holds already (then consumed), or None; a later failure goes to ``later``."""
    sync = True
    now: list[Any] = []

    def errback(failure: Any) -> None:
        if sync:
            now.append(failure)
        else:
            later(failure)

    d.addErrback(errback)
    sync = False
    return now[0] if now else None


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


class ClientListener(Service):
    """Listens for CRM/desktop clients on one endpoint string.

    Unlike ``StreamServerEndpointService`` it keeps the listening port public
    (``whenListening``), so tests and embedding code can use ``tcp:0``, and a
    port that cannot be bound stops start-up with one clear line
    (:class:`StartupError`): a server that cannot serve must not run.
    """

    #: False for a listener nobody asked for (the demo's web page): a port
    #: that is taken is then a warning, and the server runs on without it.
    required = True

    def __init__(self, reactor: Any, description: str, factory: Any) -> None:
        self.reactor = reactor
        self.description = description
        self.factory = factory
        self.port: Any = None
        self._waiting: list[Deferred] = []

    def whenListening(self) -> Deferred:
        """Fires with the ``IListeningPort`` once listening."""
        if self.port is not None:
            d: Deferred = Deferred()
            d.callback(self.port)
            return d
        d = Deferred()
        self._waiting.append(d)
        return d

    def startService(self) -> None:
        super().startService()
        try:
            endpoint = server_endpoint(self.reactor, self.description)
        except Exception as exc:  # a certificate that went away since the config check, ...
            raise StartupError(f"asttapi: cannot listen on {self.description}: {exc}") from None
        d = endpoint.listen(self.factory)
        d.addCallback(self._listening)
        failure = _failed_now(d, later=self._failed)
        if failure is not None:
            if not self.required:
                self._failed(failure)  # says so; the server runs on without this listener
                return
            # tcp:, ssl: and unix: endpoints fail here, synchronously: stop
            # start-up itself, so twistd exits non-zero (daemon or not).
            raise StartupError(self._cannot_listen(failure))

    def _listening(self, port: Any) -> None:
        self.port = port
        host = port.getHost()
        # A TCP/SSL port has host and port; a unix socket only its path.
        where = f"{host.host}:{host.port}" if hasattr(host, "port") else getattr(host, "name", host)
        if isinstance(where, bytes):
            where = where.decode("utf-8", "replace")
        log.info("Clients may connect on {description} ({where})", description=self.description, where=where)
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(port)

    def _cannot_listen(self, failure: Any) -> str:
        """The one line saying why; fails whoever waits in ``whenListening``."""
        error = failure.value
        why = failure.getErrorMessage()
        if isinstance(error, CannotListenError) and isinstance(error.socketError, OSError):
            why = error.socketError.strerror or str(error.socketError)  # "Address already in use"
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.errback(failure)
        return f"asttapi: cannot listen on {self.description}: {why}"

    def _failed(self, failure: Any) -> None:
        # Endpoints that bind later (none of Twisted's own): the reactor runs
        # already, so all we can do is say so and stop it.
        log.critical("{text}; stopping", text=self._cannot_listen(failure))
        if getattr(self.reactor, "running", False):
            self.reactor.stop()

    def stopService(self) -> Any:
        super().stopService()
        port, self.port = self.port, None
        if port is not None:
            return port.stopListening()
        return None


class AppService(MultiService):
    """The running server: its parts, reachable for tests and plugins."""

    def __init__(self, config: Config, reactor: Any) -> None:
        super().__init__()
        self.config = config
        self.reactor = reactor
        self.plugins: Any = None
        self.bridge: Bridge | None = None
        self.hub: Hub | None = None
        self.ami: AMILink | None = None
        self.demo: Any = None
        self.model: CallModel | None = None
        self.client_factory: ClientFactory | None = None
        self.store: CallStore | None = None
        self.listeners: list[ClientListener] = []
        self.web_listeners: list[ClientListener] = []  # the browser page and /ws (asttapi_server.web)

    def startService(self) -> None:
        # (The demo PBX says once, loudly, that it is a simulation.)
        d = self.plugins.startup(self.config, self)
        failure = _failed_now(d, later=self._plugin_startup_failed)
        if failure is not None:
            raise StartupError(f"asttapi: {failure.getErrorMessage()}")
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


#: File descriptors kept beyond server.max_clients: AMI link, listeners, logs, plugins.
FD_RESERVE = 64


def ensure_file_descriptors(max_clients: int) -> int:
    """Raise the soft open-files limit so max_clients fit; warn if the hard limit is lower.

    Below the limit, a flood meets server.max_clients (told so, closed) and
    never the kernel's EMFILE, so clients already connected keep working.
    Returns the soft limit in force.
    """
    try:
        import resource
    except ImportError:  # not POSIX
        return -1
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = max_clients + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < need:
        log.warn(
            "server.max_clients = {max_clients} needs about {need} open files, but the limit is {soft} "
            "(ulimit -n; LimitNOFILE= under systemd); lower max_clients or raise the limit",
            max_clients=max_clients, need=need, soft=soft,
        )
    return soft


def make_service(config: Config, reactor: Any = None, *, demo_options: dict | None = None) -> AppService:
    """Build every part of the server from ``config``; nothing runs until started.

    ``demo_options`` go to the demo PBX (e.g. ``timing``, ``autoplay``), for tests.
    """
    if reactor is None:
        from twisted.internet import reactor as _reactor

        reactor = _reactor

    check_listen_security(config.server.listen, config.users)
    check_listen_security(config.web.listen, config.users, key="web.listen")
    ensure_file_descriptors(config.server.max_clients)

    demo_mode = config.demo or not config.ami.host
    app = AppService(config, reactor)
    plugins_conf = config.plugins
    if demo_mode and config.source is None and not plugins_conf.enabled:
        # A newcomer's first run: pop the demo callers from the bundled sample
        # CRM and Outlook contacts, which know them.
        plugins_conf = dataclasses.replace(plugins_conf, enabled=DEMO_PLUGINS)
        log.info("Demo mode: enabling the bundled plugins {names} with their sample data", names=DEMO_PLUGINS)
    app.plugins = build_plugin_manager(plugins_conf, config=config, clock=reactor)

    ami_conf = config.ami
    if demo_mode:
        from .demo.server import DemoPBXService

        demo = DemoPBXService(
            reactor=reactor,
            username=ami_conf.username,
            secret=ami_conf.secret,
            interface="127.0.0.1",
            port=0,
            phones={line.channel: line.name for line in config.lines.values()},
            **(demo_options or {}),
        )
        demo.setServiceParent(app)
        app.demo = demo
        endpoint: Any = _LateTCPEndpoint(reactor, "127.0.0.1", demo.listening_port)
    else:
        endpoint = TCP4ClientEndpoint(reactor, ami_conf.host, ami_conf.port, timeout=10)

    app.ami = AMILink(
        endpoint,
        ami_conf.username,
        ami_conf.secret,
        auth=ami_conf.auth,
        clock=reactor,
        keepalive=ami_conf.keepalive,
        pong_timeout=ami_conf.pong_timeout,
        action_timeout=ami_conf.action_timeout,
    )
    app.model = build_model(config)
    app.hub = Hub.from_config(config)
    app.bridge = build_bridge(config, app.ami, app.model, app.plugins, app.hub, reactor)
    state_file = state_file_path(config, demo_mode)
    if state_file:
        # Before the listeners and the AMI client: started first (the calls
        # are back before anyone asks), stopped last (the final write).
        app.store = CallStore(state_file, app.model, reactor, on_restored=app.bridge.adopt_restored)
        app.store.setServiceParent(app)
        app.bridge.on_change = app.store.changed
    app.client_factory = ClientFactory.from_config(config, app.hub, app.bridge, clock=reactor)
    for description in config.server.listen:
        listener = ClientListener(reactor, description, app.client_factory)
        listener.setServiceParent(app)
        app.listeners.append(listener)
    if config.web.listen:
        from .web import add_web_listeners

        add_web_listeners(app, config, reactor)
    app.ami.setServiceParent(app)
    return app


def build_model(config: Config, *, boot_id: str | None = None) -> CallModel:
    """The call model with the ``[calls]`` limits; ``boot_id`` random unless given (tests)."""
    return CallModel(
        hangup_grace=config.calls.hangup_grace,
        max_age=config.calls.max_age,
        linger=config.calls.linger,
        # Makes our Originate ChannelIds unique across restarts.
        boot_id=boot_id if boot_id is not None else os.urandom(4).hex(),
        max_calls=config.calls.max_calls,
        max_lines=config.calls.max_lines,
        max_field_bytes=config.calls.max_field_bytes,
    )


def wanted_events(plugins: Any) -> frozenset[str]:
    """The AMI events worth decoding: the core's own and those some plugin maps.

    Declared once, here, and applied once, where the bytes are framed (the
    link's parser drops every other ``Event:`` block undecoded, comparing
    names by ``ami.parser.wanted_name``: case-insensitively).
    """
    return frozenset(CORE_EVENTS) | frozenset(plugins.wanted_event_names())


def build_bridge(config: Config, link: Any, model: CallModel, plugins: Any, hub: Any, clock: Any) -> Bridge:
    """The core (``CallControl`` around ``model``) and its Twisted adapter, attached to ``link``."""
    control = CallControl(model, config.lines, originate_timeout=config.ami.originate_timeout)
    bridge = Bridge(control=control, config=config, ami=link, plugins=plugins, hub=hub, clock=clock)
    link.set_event_filter(wanted_events(plugins))
    link.add_event_observer(bridge.on_ami_event)
    link.add_link_observer(bridge.on_link_state)
    return bridge


def state_file_path(config: Config, demo_mode: bool) -> str:
    """Where the call store lives ("" for none): ``[calls] state_file``, else the default.

    The demo PBX restarts with the server, so no call of its could survive;
    demo mode keeps a store only when one is configured.
    """
    state_file = config.calls.state_file
    if state_file is None:
        return "" if demo_mode else DEFAULT_STATE_FILE
    return state_file
