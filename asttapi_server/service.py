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
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
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
from .clients.limits import FD_RESERVE, fd_capacity
from .clients.listen import server_endpoint
from .clients import codec
from .clients.protocol import ClientFactory
from .config import Config, load_config
from .core.control import CORE_EVENTS, CallControl
from .errors import AstTapiError
from .core.model import CallModel
from .mappings import channel_events
from .plugin_host import build_plugin_manager
from .sdnotify import Notifier
from .store import DEFAULT_STATE_FILE, CallStore, default_state_path

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
        self.announce(where)
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(port)

    def announce(self, where: str) -> None:
        """The log line saying what listens where (the admin's proof that it is up)."""
        log.info("Clients may connect on {description} ({where})", description=self.description, where=where)

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
        self.ops_listeners: list[ClientListener] = []  # [metrics] listen: /metrics, /healthz, /readyz only
        self.metrics: Any = None  # asttapi_server.metrics.Metrics, unless [metrics] enabled = false
        self.notifier = Notifier()
        #: Reads the configuration again (the file and the command line it came from); set by tap.py.
        self.config_loader: Any = None
        self.demo_mode = False
        self._reloading: Deferred | None = None
        #: Reload on SIGHUP (tap.py sets it: only a real twistd process owns its signals).
        self.reload_on_sighup = False
        self._previous_sighup: Any = None
        #: The last reload was refused: systemd's status says so until one works.
        self._reload_refused = False
        self._status_sent: str | None = None

    def startService(self) -> None:
        # (The demo PBX says once, loudly, that it is a simulation.)
        # Plugins get the bridge as ``app`` (hookspecs: app.config, app.clock, app.model).
        d = self.plugins.startup(self.config, self.bridge if self.bridge is not None else self)
        failure = _failed_now(d, later=self._plugin_startup_failed)
        if failure is not None:
            raise StartupError(f"asttapi: {failure.getErrorMessage()}")
        super().startService()
        if self.ami is not None:
            self.ami.add_state_observer(self._link_status)
        if self.reload_on_sighup:
            import signal

            self._previous_sighup = signal.signal(signal.SIGHUP, self._sighup)
        waits = [listener.whenListening() for listener in self.listeners + self.web_listeners + self.ops_listeners]
        DeferredList(waits, consumeErrors=True).addCallback(self._serving)

    def _serving(self, _results: Any) -> None:
        """Every listener is up (or, for the demo's optional page, has said why not): tell systemd."""
        if self.running:
            self.notify_ready()

    def status_line(self) -> str:
        """systemd's ``STATUS=``: the PBX link and, while it is down, the last reason why
        (``AMILink.state_line``, which ``/readyz`` answers with too)."""
        link = self.ami.state_line if self.ami is not None else "no PBX link"
        refused = "; the last reload was refused, see the log" if self._reload_refused else ""
        return f"serving clients; {link}{refused}"

    def notify_ready(self) -> None:
        """``READY=1`` with the status: at start, and at the end of every reload."""
        self._status_sent = self.status_line()
        self.notifier.ready(self._status_sent)

    def _sighup(self, signum: int, frame: Any) -> None:
        # In a signal handler: only hand the work to the reactor's thread.
        self.reactor.callFromThread(reload_from_file, self)

    def _link_status(self) -> None:
        text = self.status_line()
        if text != self._status_sent:  # a wrong secret fails the same way every retry
            self._status_sent = text
            self.notifier.status(text)

    def _plugin_startup_failed(self, failure: Any) -> None:
        log.failure("A plugin failed to start; stopping the server", failure)
        if self.reactor.running:
            self.reactor.stop()

    def stopService(self) -> Any:
        self.notifier.stopping()
        if self._previous_sighup is not None:
            import signal

            signal.signal(signal.SIGHUP, self._previous_sighup)
            self._previous_sighup = None
        d = super().stopService()
        if self.bridge is not None:
            self.bridge.stop()

        def shutdown(result: Any) -> Any:
            return self.plugins.shutdown().addBoth(lambda _: result)

        return d.addBoth(shutdown) if d is not None else shutdown(None)


def ensure_file_descriptors(max_clients: int) -> int:
    """Raise the soft open-files limit so max_clients fit; warn if the hard limit is lower.

    The connection budget is then sized to the limit in force
    (``clients.limits.fd_capacity``): a flood meets the budget (told so,
    closed, or displacing a stranger) and never the kernel's EMFILE, so
    clients already connected, the metrics probe and a new login keep
    working. Returns the soft limit in force (-1: unknown or unlimited).
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
    if soft == resource.RLIM_INFINITY:
        return -1
    if soft < need:
        log.warn(
            "server.max_clients = {max_clients} needs about {need} open files, but the limit is {soft} "
            "(ulimit -n; LimitNOFILE= under systemd): at most {fit} connections are admitted; "
            "lower max_clients or raise the limit",
            max_clients=max_clients, need=need, soft=soft, fit=fd_capacity(soft, max_clients),
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
    open_files = ensure_file_descriptors(config.server.max_clients)

    check_listen_security(config.metrics.listen, config.users, key="metrics.listen")
    demo_mode = config.demo or not config.ami.host
    app = AppService(config, reactor)
    app.demo_mode = demo_mode
    app.plugins = build_plugin_manager(plugins_config(config, demo_mode), config=config, clock=reactor)

    ami_conf = config.ami
    if demo_mode:
        from .demo.server import DemoPBXService

        demo = DemoPBXService(
            reactor=reactor,
            username=ami_conf.username,
            secret=ami_conf.secret,
            interface="127.0.0.1",
            port=0,
            phones={line.channel: line.name for line in config.lines.values() if not line.device},
            devices={line.device: line.name for line in config.lines.values() if line.device},
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
    app.client_factory.budget.fit_open_files(open_files)  # every listener's connections count in it
    if config.metrics.enabled:
        from .metrics import Metrics

        app.metrics = Metrics()
        app.metrics.attach(app)
    for description in config.metrics.listen:
        from .web.ops import OpsListener, make_ops_site

        listener = OpsListener(reactor, description, make_ops_site(app, app.metrics))
        listener.setServiceParent(app)
        app.ops_listeners.append(listener)
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


def plugins_config(config: Config, demo_mode: bool, *, quiet: bool = False) -> Any:
    """``[plugins]``; on the demo PBX with no ``[plugins] enabled`` (no file, or a file
    without the key) the bundled sample CRM and Outlook contacts, which know the demo
    callers. An explicit ``enabled = []`` turns contact lookups off there too."""
    plugins_conf = config.plugins
    if not demo_mode:
        return plugins_conf
    if plugins_conf.enabled is None:
        if not quiet:
            log.info("Demo mode: enabling the bundled plugins {names} with their sample data "
                     "([plugins] enabled is not set)", names=DEMO_PLUGINS)
        return dataclasses.replace(plugins_conf, enabled=DEMO_PLUGINS)
    if not plugins_conf.enabled and not quiet:
        log.info("Demo mode: no contact lookups: {source} sets [plugins] enabled = []; leave the key out "
                 "for the bundled sample CRM and contacts", source=config.source or "the configuration")
    return plugins_conf


def state_file_path(config: Config, demo_mode: bool) -> str:
    """Where the call store lives ("" for none): ``[calls] state_file``, else the default,
    ``asttapi-calls.json`` in ``$STATE_DIRECTORY`` (systemd's ``StateDirectory=``) or
    beside the configuration file (``config.resolve_path``).

    The demo PBX restarts with the server, so no call of its could survive;
    demo mode keeps a store only when one is configured.
    """
    state_file = config.calls.state_file
    if state_file is None:
        return "" if demo_mode else default_state_path(DEFAULT_STATE_FILE, config.source)
    return state_file


# -- reload (SIGHUP) ------------------------------------------------------------

#: Sections a reload cannot apply to a running server (listeners, bounds of live state).
RESTART_ONLY = ("server", "web", "calls", "metrics", "demo")


class ReloadRefused(AstTapiError):
    """The new configuration cannot be applied; the running one stays."""


def reload_from_file(app: AppService) -> Deferred:
    """SIGHUP: read the configuration again the way it was read at start, then :func:`reload`.

    Never fails: a refusal is one log line (and counted); the running
    configuration stays.
    """
    if app.config_loader is None:
        log.warn("Reload ignored: this server was not started from a configuration file")
        return succeed(False)
    try:
        new_config = app.config_loader()
    except AstTapiError as exc:
        return succeed(_refused(app, str(exc)))
    return reload(app, new_config)


def reload(app: AppService, new: Config) -> Deferred:
    """Apply ``new`` to the running server without dropping anyone; fires with True, or False if refused.

    What changes at once: users and tokens (sessions of a removed user, or
    of a changed token, are closed with an AUTH error; the others stay),
    line rights (a line a user may no longer open is closed for its
    sessions with ``LINE_CLOSE``), ``[lines]`` (through
    :func:`give_bridge_config`), ``[plugins]`` (the new ones start, then the
    old ones stop) and ``[ami]`` (the link reconnects, only when it changed).
    ``[server]``, ``[web]``, ``[calls]``, ``[metrics]`` and ``demo`` need a
    restart: a change there is named in the log and left for the next start.
    Anything refused (a listener the new users would leave unsafe, a plugin
    that fails to configure or start) changes nothing.
    """
    if app._reloading is not None:
        return succeed(_refused(app, "a reload is already in progress"))
    old = app.config
    try:
        check_listen_security(old.server.listen, new.users)
        check_listen_security(old.web.listen, new.users, key="web.listen")
        check_listen_security(old.metrics.listen, new.users, key="metrics.listen")
        if (new.demo or not new.ami.host) != app.demo_mode:
            raise ReloadRefused("switching between the demo PBX and a real one needs a restart")
        new_plugins = None
        new_conf = plugins_config(new, app.demo_mode, quiet=True)
        # Device lines come with their mapping plugin (plugin_host's built-ins).
        if (new_conf != plugins_config(old, app.demo_mode, quiet=True)
                or channel_events.devices_of(new) != channel_events.devices_of(old)):
            new_plugins = build_plugin_manager(new_conf, config=new, clock=app.reactor)
    except AstTapiError as exc:
        return succeed(_refused(app, str(exc)))
    app.notifier.reloading()
    plugin_app = app.bridge if app.bridge is not None else app
    started = new_plugins.startup(new, plugin_app) if new_plugins is not None else succeed(None)
    app._reloading = done = Deferred()

    def apply(_: Any) -> bool:
        app._reloading = None
        if new_plugins is not None:
            # (a new device-line mapping needs no hand-over: the call model keeps its calls' facts)
            app.plugins.take_plugins_of(new_plugins).shutdown()
            if app.bridge is not None:
                app.bridge.plugins = app.plugins  # whether any plugin looks contacts up now
            if app.ami is not None:
                app.ami.set_event_filter(wanted_events(app.plugins))
        summary = _apply(app, old, new)
        if new_plugins is not None:
            summary.append("plugins reloaded: " + ", ".join(app.plugins.names))
        if app.metrics is not None:
            app.metrics.on_reload(True)
        later = [name for name in RESTART_ONLY if getattr(old, name) != getattr(new, name)]
        log.info("Configuration reloaded from {source}: {summary}{later}",
                 source=new.source or "the command line", summary="; ".join(summary) or "nothing changed",
                 later=(f"; changes to [{'], ['.join(later)}] take effect at the next restart" if later else ""))
        app._reload_refused = False
        app.notify_ready()
        return True

    def failed(failure: Failure) -> bool:
        app._reloading = None
        if new_plugins is not None:
            new_plugins.shutdown()
        refused = _refused(app, failure.getErrorMessage())
        app.notify_ready()
        return refused

    started.addCallbacks(apply, failed).chainDeferred(done)
    return done


def _refused(app: AppService, why: str) -> bool:
    log.error("Reload refused, the running configuration stays: {why}", why=why)
    app._reload_refused = True
    app._link_status()
    if app.metrics is not None:
        app.metrics.on_reload(False)
    return False


def give_bridge_config(app: AppService, config: Config) -> None:
    """The one seam through which a reload hands the core its new lines (and settings)."""
    app.config = config
    if app.bridge is not None:
        app.bridge.reconfigure(config)


def _apply(app: AppService, old: Config, new: Config) -> list[str]:
    """Users, rights, lines and the AMI link; returns what changed, for the log line."""
    summary: list[str] = []
    added = sorted(set(new.users) - set(old.users))
    removed = sorted(set(old.users) - set(new.users))
    retokened = sorted(n for n in set(old.users) & set(new.users) if old.users[n].token != new.users[n].token)
    if added:
        summary.append("users added: " + ", ".join(added))
    if removed:
        summary.append("users removed: " + ", ".join(removed))
    if retokened:
        summary.append("tokens changed: " + ", ".join(retokened))
    factory = app.client_factory
    if factory is not None:
        factory.authenticator.replace(new.users)
        summary.extend(_recheck_sessions(factory, set(removed) | set(retokened)))
    lines_added = sorted(set(new.lines) - set(old.lines))
    lines_removed = sorted(set(old.lines) - set(new.lines))
    lines_changed = sorted(n for n in set(old.lines) & set(new.lines) if old.lines[n] != new.lines[n])
    for what, names in (("lines added", lines_added), ("lines removed", lines_removed),
                        ("lines changed", lines_changed)):
        if names:
            summary.append(f"{what}: " + ", ".join(names))
    give_bridge_config(app, new)
    if not app.demo_mode and new.ami != old.ami and app.ami is not None:
        a = new.ami
        app.ami.reconfigure(
            TCP4ClientEndpoint(app.reactor, a.host, a.port, timeout=10), a.username, a.secret, auth=a.auth,
            keepalive=a.keepalive, pong_timeout=a.pong_timeout, action_timeout=a.action_timeout,
        )
        summary.append(f"AMI link reconnecting to {app.ami.where}")
    return summary


def _recheck_sessions(factory: ClientFactory, revoked: set[str]) -> list[str]:
    """Every connected session against the new users: close the revoked, cut the lines no longer allowed."""
    auth = factory.authenticator
    closed: list[str] = []
    cut: list[str] = []
    for conn in tuple(factory.connections):
        session = conn.session
        if session is None or conn.closing or session.user is None:
            continue
        user = session.user
        if user.name is None:  # anonymous: no [users] before
            if auth.login_required:
                factory.cut_off("reload")
                conn.close_with_error(codec.AUTH_ERROR, "This server now requires a login; reconnect and log in")
                closed.append("(anonymous)")
            continue
        now = auth.user(user.name)
        if user.name in revoked or now is None:
            why = "was removed from" if now is None else "has a new token in"
            factory.cut_off("reload")
            conn.close_with_error(codec.AUTH_ERROR, f"User {user.name!r} {why} the configuration; log in again")
            closed.append(user.name)
            continue
        session.user = now
        for line in sorted(session.lines):
            if not now.may_open(line):
                session.revoke_line(line, "LINEERR_NOTOWNER",
                                    f"user {user.name!r} may no longer open line {line!r} (configuration reloaded)")
                cut.append(f"{line} for {user.name}")
    out = []
    if closed:
        out.append("sessions closed: " + ", ".join(closed))
    if cut:
        out.append("lines closed: " + ", ".join(cut))
    return out
