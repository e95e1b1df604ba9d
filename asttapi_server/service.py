"""Composition: build the whole server as one Twisted ``MultiService``.

This is the only module that knows every part. Everything it builds takes its
collaborators as arguments, so tests can build the same graph around a
``MemoryReactor``/``Clock`` or a loopback demo PBX.
"""

from __future__ import annotations

import dataclasses
import gc
import os
from typing import Any

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from .ami.link import AMILink
from .bridge import Bridge
from .clients.auth import check_listen_security
from .clients.hub import Hub
from .clients.limits import FD_RESERVE, fd_capacity
from .listener import ClientListener, StartupError, _failed_now
from .clients.protocol import ClientFactory
from .config import DEFAULT_PBX, Config, load_config
from .core.control import CallControl
from .errors import AstTapiError
from .core.model import CallModel, Handles
from .mappings import channel_events
from .pbx import PBXUnit, Switchboard
from .plugin_host import build_plugin_manager
from .sdnotify import Notifier
from .store import DEFAULT_STATE_FILE, CallStore, default_state_path

log = Logger()

#: Bundled plugins a first run on the demo PBX enables (their defaults are sample data).
DEMO_PLUGINS = ("crm_sql", "outlook_contacts")


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
        self.bridge: Bridge | None = None  # the first PBX's (as ami, model, demo): see switchboard
        #: Every PBX's unit, and the Telephony of the sessions (asttapi_server.pbx).
        self.switchboard: Switchboard | None = None
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
        #: Freeze the heap for the collector when ready (:func:`settle_heap`); tap.py sets it:
        #: only the server's own process, never a test run that starts servers in its own.
        self.tune_gc = False

    def startService(self) -> None:
        # (The demo PBX says once, loudly, that it is a simulation.)
        # Plugins get a narrow context as ``app`` (asttapi_server.plugin_context): the
        # switchboard's, over every PBX.
        d = self.plugins.startup(self.config, self.plugin_app)
        failure = _failed_now(d, later=self._plugin_startup_failed)
        if failure is not None:
            raise StartupError(f"asttapi: {failure.getErrorMessage()}")
        super().startService()
        for unit in self.units():
            unit.link.add_state_observer(self._link_status)
        if self.reload_on_sighup:
            import signal

            self._previous_sighup = signal.signal(signal.SIGHUP, self._sighup)
        waits = [listener.whenListening() for listener in self.listeners + self.web_listeners + self.ops_listeners]
        DeferredList(waits, consumeErrors=True).addCallback(self._serving)

    def use_plugins(self, plugins: Any) -> Any:
        """A reload's plugin host, for everyone who calls plugins; returns the previous host,
        for the caller to shut down once nothing calls it any more."""
        previous, self.plugins = self.plugins, plugins
        if self.switchboard is not None:
            self.switchboard.use_plugins(plugins)  # contact lookups, route tables, event filters
        if self.metrics is not None:
            self.metrics.use_plugins(plugins)
        return previous

    @property
    def plugin_app(self) -> Any:
        """What the plugins get as ``app``: the switchboard's narrow context (config, clock,
        the calls of every PBX, drop and transfer on the call's PBX)."""
        return self.switchboard.plugin_context if self.switchboard is not None else self

    def _serving(self, _results: Any) -> None:
        """Every listener is up (or, for the demo's optional page, has said why not): tell systemd."""
        if self.running:
            self.notify_ready()

    def status_line(self) -> str:
        """systemd's ``STATUS=``: the PBX link and, while it is down, the last reason why
        (``AMILink.state_line``, which ``/readyz`` answers with too)."""
        units = self.units()
        if not units:
            link = "no PBX link"
        elif len(units) == 1:
            link = units[0].state_line
        else:  # "hq: PBX link up (pbx1:5038); branch: PBX link DOWN: <why>"
            link = "; ".join(f"{unit.name}: {unit.state_line}" for unit in units)
        refused = "; the last reload was refused, see the log" if self._reload_refused else ""
        return f"serving clients; {link}{refused}"

    def units(self) -> list[PBXUnit]:
        """Every PBX's unit, in the configuration's order."""
        return list(self.switchboard.units.values()) if self.switchboard is not None else []

    def notify_ready(self) -> None:
        """``READY=1`` with the status: at start, and at the end of every reload."""
        if self.tune_gc:
            settle_heap()
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
        for unit in self.units():
            unit.bridge.stop()

        def shutdown(result: Any) -> Any:
            return self.plugins.shutdown().addBoth(lambda _: result)

        return d.addBoth(shutdown) if d is not None else shutdown(None)


def settle_heap() -> None:
    """Take what the server holds once it is up out of the garbage collector's walks.

    Called when the server says READY (at start and at the end of every reload;
    ``AppService.tune_gc``, which only the server's own process turns on): a full
    collection, then ``gc.freeze()``. The parsed configuration, the plugins and
    their directories, Twisted and every module object then never again cost a
    full collection its walk (a pause of 50-110 ms at each full collection
    during a flood, docs/operations.md "Garbage collection"); the collector
    still walks what was made since. A reload unfreezes first, so whatever died
    since the last freeze is freed by this collection: what a freeze keeps from
    the collector lives at most until the next reload. The thresholds stay
    Python's own: many short pauses, not a few long ones (measured there).
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


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

    app.hub = Hub.from_config(config)
    app.switchboard = Switchboard(config, hub=app.hub, clock=reactor)
    for name, pbx in config.pbx_configs().items():
        app.switchboard.add(build_unit(app, name, pbx, config, demo_options=demo_options))
    first = app.switchboard.first
    assert first is not None
    # The first PBX's parts, by their single-PBX names (tests, tools).
    app.ami, app.model, app.bridge, app.demo = first.link, first.model, first.bridge, first.demo
    state_file = state_file_path(config, demo_mode)
    if state_file:
        # Before the listeners and the AMI clients: started first (the calls
        # are back before anyone asks), stopped last (the final write).
        app.store = CallStore(state_file, app.switchboard.models(), reactor,
                              on_restored=app.switchboard.adopt_restored)
        app.store.setServiceParent(app)
        for unit in app.switchboard.units.values():
            unit.bridge.on_change = app.store.changed
    app.client_factory = ClientFactory.from_config(config, app.hub, app.switchboard, clock=reactor)
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
    for unit in app.switchboard.units.values():
        unit.link.setServiceParent(app)
    return app


def build_unit(app: AppService, name: str, pbx: Any, config: Config, *,
               demo_options: dict | None = None) -> PBXUnit:
    """One PBX's unit: its demo PBX (demo mode; a child service of ``app`` at once), its AMI link
    (not yet a child: the caller adds it, last), its call model, core and bridge."""
    reactor = app.reactor
    board = app.switchboard
    demo = None
    if app.demo_mode:
        from .demo.server import DemoPBXService

        mine = [line for line in config.lines.values() if _line_pbx(line, config) == name]
        demo = DemoPBXService(
            reactor=reactor,
            username=pbx.username,
            secret=pbx.secret,
            interface="127.0.0.1",
            port=0,
            phones={line.channel: line.name for line in mine if not line.device},
            devices={line.device: line.name for line in mine if line.device},
            **(demo_options or {}),
        )
        if board.units or name != next(iter(config.pbx_configs())):
            demo.setName(f"demo-pbx-{name}")  # service names are unique within the app
        demo.setServiceParent(app)
        endpoint: Any = _LateTCPEndpoint(reactor, "127.0.0.1", demo.listening_port)
    else:
        endpoint = pbx_endpoint(reactor, pbx)
    link = AMILink(
        endpoint,
        pbx.username,
        pbx.secret,
        auth=pbx.auth,
        clock=reactor,
        keepalive=pbx.keepalive,
        pong_timeout=pbx.pong_timeout,
        action_timeout=pbx.action_timeout,
    )
    model = build_model(config, handles=board.handles)
    bridge = build_bridge(config, link, model, app.plugins, app.hub, reactor, pbx=pbx, name=name, owners=board.owners,
                          observe=False)
    if app.store is not None:
        bridge.on_change = app.store.changed
    return PBXUnit(name, pbx, link=link, model=model, bridge=bridge, demo=demo)


def pbx_endpoint(reactor: Any, pbx: Any) -> Any:
    """Where a real PBX's manager listens."""
    return TCP4ClientEndpoint(reactor, pbx.host, pbx.port, timeout=10)


def _line_pbx(line: Any, config: Config) -> str:
    """The PBX a configured line belongs to for the demo (an unpinned one: the first PBX's)."""
    return line.pbx or next(iter(config.pbx_configs()))


def build_model(config: Config, *, boot_id: str | None = None, handles: Handles | None = None) -> CallModel:
    """The call model with the ``[calls]`` limits; ``boot_id`` random unless given (tests);
    ``handles``: the server's one handle counter (every PBX's model shares it)."""
    # boot_id makes our Originate ChannelIds unique across restarts.
    return CallModel(boot_id=boot_id if boot_id is not None else os.urandom(4).hex(), handles=handles,
                     **config.calls.model_args())


def wanted_events(bridge: Bridge) -> frozenset[str]:
    """The AMI events worth decoding: the names of the bridge's one route table
    (``Bridge.routes``: the core's own events and those some plugin maps).

    Applied once, where the bytes are framed (the link's parser drops every
    other ``Event:`` block undecoded, comparing names by
    ``idents.wanted_name``: case-insensitively). Set again whenever
    ``Bridge.use_plugins`` built the table again (a reload).
    """
    return bridge.routes.names


def build_bridge(config: Config, link: Any, model: CallModel, plugins: Any, hub: Any, clock: Any, *,
                 pbx: Any = None, name: str = DEFAULT_PBX, owners: Any = None, observe: bool = True) -> Bridge:
    """The core (``CallControl`` around ``model``) of the PBX ``name`` (settings ``pbx``, default
    ``config.ami``) and its Twisted adapter, on ``link``'s events (``observe``: attached to it
    here; a :class:`~asttapi_server.pbx.PBXUnit` attaches itself)."""
    pbx = pbx if pbx is not None else config.ami
    control = CallControl(model, config.lines, originate_timeout=pbx.originate_timeout, pbx=name, owners=owners)
    bridge = Bridge(control=control, config=config, ami=link, plugins=plugins, hub=hub, clock=clock)
    link.set_event_filter(wanted_events(bridge))
    if observe:
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
                or channel_events.devices_by_pbx(new) != channel_events.devices_by_pbx(old)):
            new_plugins = build_plugin_manager(new_conf, config=new, clock=app.reactor)
    except AstTapiError as exc:
        return succeed(_refused(app, str(exc)))
    app.notifier.reloading()
    plugin_app = app.plugin_app
    started = new_plugins.startup(new, plugin_app) if new_plugins is not None else succeed(None)
    app._reloading = done = Deferred()

    def apply(_: Any) -> bool:
        app._reloading = None
        if new_plugins is not None:
            # (a new device-line mapping needs no hand-over: the call models keep their calls' facts)
            app.use_plugins(new_plugins).shutdown()
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


def give_bridge_config(app: AppService, config: Config, endpoint_of: Any = None) -> list[str]:
    """The one seam through which a reload hands the core its new lines (and settings):
    the switchboard (who owns which line, the plugins' ``app.config``), then every PBX's unit,
    which reconnects (given ``endpoint_of(pbx)``, a real PBX's endpoint) when its connection
    settings changed. Returns the names of the PBXs reconnecting."""
    app.config = config
    board = app.switchboard
    if board is None:
        return []
    board.reconfigure(config)
    pbxs = config.pbx_configs()
    reconnecting = []
    for name, unit in board.units.items():
        pbx = pbxs.get(name)
        if pbx is None:
            continue
        endpoint = endpoint_of(pbx) if endpoint_of is not None and pbx != unit.pbx else None
        if unit.reconfigure(config, pbx, endpoint):
            reconnecting.append(name)
    return reconnecting


def _apply(app: AppService, old: Config, new: Config) -> list[str]:
    """Users, rights, lines and the PBXs; returns what changed, for the log line.

    The root only orders the calls: the client factory checks its sessions,
    removed PBXs leave first (their lines out of service, their calls ended,
    while the line owners still know them), then every part gets the new
    configuration, then changed PBXs reconnect and added ones start.
    """
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
    if app.client_factory is not None:
        summary.extend(app.client_factory.reconfigure(new.users, set(removed) | set(retokened)))
    lines_added = sorted(set(new.lines) - set(old.lines))
    lines_removed = sorted(set(old.lines) - set(new.lines))
    lines_changed = sorted(n for n in set(old.lines) & set(new.lines) if old.lines[n] != new.lines[n])
    for what, names in (("lines added", lines_added), ("lines removed", lines_removed),
                        ("lines changed", lines_changed)):
        if names:
            summary.append(f"{what}: " + ", ".join(names))
    board = app.switchboard
    old_pbxs, new_pbxs = old.pbx_configs(), new.pbx_configs()
    gone = [name for name in old_pbxs if name not in new_pbxs]
    if board is not None:
        for name in gone:
            _remove_pbx(app, name)
    endpoint_of = None if app.demo_mode else (lambda pbx: pbx_endpoint(app.reactor, pbx))
    reconnecting = give_bridge_config(app, new, endpoint_of)
    if board is None:
        return summary
    for name in reconnecting:
        where = board.units[name].link.where
        summary.append(f"AMI link reconnecting to {where}" if len(new_pbxs) == 1 and len(old_pbxs) == 1
                       else f"PBX {name} reconnecting to {where}")
    fresh = [name for name in new_pbxs if name not in board.units]
    for name in fresh:
        _add_pbx(app, name, new_pbxs[name], new)
    if gone:
        summary.append("PBXs removed: " + ", ".join(gone))
    if fresh:
        summary.append("PBXs added: " + ", ".join(fresh))
    if (gone or fresh) and app.store is not None:
        app.store.reconfigure(board.models())
    first = board.first
    if first is not None:
        app.ami, app.model, app.bridge, app.demo = first.link, first.model, first.bridge, first.demo
    return summary


def _add_pbx(app: AppService, name: str, pbx: Any, config: Config) -> None:
    """A PBX the reload added: its unit joins the switchboard and its link starts."""
    unit = build_unit(app, name, pbx, config)
    app.switchboard.add(unit)
    unit.link.add_state_observer(app._link_status)
    unit.link.setServiceParent(app)  # starts it: the app is running


def _remove_pbx(app: AppService, name: str) -> None:
    """A PBX the reload removed: its lines out of service, its calls ended, its link stopped."""
    unit = app.switchboard.remove(name, app.reactor.seconds())
    if app.metrics is not None:
        app.metrics.unit_removed(unit)
    for service in (unit.link, unit.demo):
        if service is not None and service.parent is not None:
            service.disownServiceParent()
