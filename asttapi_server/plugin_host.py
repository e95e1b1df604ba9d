"""Finding, configuring and safely calling plugins.

:func:`build_plugin_manager` builds one :class:`PluginHost` per application
(never a module-global manager). The host calls every hook implementation on
its own, so a plugin that raises is logged with its name and skipped while the
event flow goes on, and it runs contact lookups concurrently with a timeout so
a slow CRM only ever costs the screen pop, never the call events.

Discovery, for each name in ``[plugins] enabled``, first match wins:

1. an entry point of that name in the group ``asttapi_server.plugins``
   (installed packages; the bundled plugins are declared there too);
2. the bundled package ``asttapi_plugins.NAME`` when installed;
3. ``NAME.py`` (or ``NAME/__init__.py``) in the search paths, by default the
   checkout's ``plugins/`` folder: drop a file there.

Configuration convention: the loaded object (normally a module) may define
``configure(settings: dict, config) -> plugin``. If it does, it is called with
the plugin's table from ``[plugins.NAME]`` and the whole ``Config`` (``None``
in tests), and the object it returns is registered; anything it raises stops
start-up with a :class:`PluginError` naming the plugin. Without ``configure``
the object itself is registered and must have no settings.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pluggy
from twisted.internet.defer import CancelledError, Deferred, DeferredList, maybeDeferred, succeed
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from asttapi_server import hookspecs
from asttapi_server.idents import wanted_name
from asttapi_server import settings as setting
from asttapi_server.config import DEFAULT_PBX, read_secret_file, resolve_path as config_resolve_path
from asttapi_server.directory import DirectoryIndex
from asttapi_server.errors import PluginError
from asttapi_server.throttle import LogThrottle
from asttapi_server.hookspecs import hookimpl

__all__ = [
    "ENTRY_POINT_GROUP",
    "PluginHost",
    "Settings",
    "blocking",
    "build_plugin_manager",
    "bundled_plugin_dir",
    "hookimpl",
    "resolve_path",
]

log = Logger(namespace="asttapi_server.plugin_host")

ENTRY_POINT_GROUP = "asttapi_server.plugins"
BUNDLED_PACKAGE = "asttapi_plugins"
#: Plugins that are always registered, whatever ``enabled`` says.
BUILTIN_PLUGINS = {"tapi_userevent": "asttapi_server.mappings.tapi_userevent"}
#: A built-in module may define ``builtin_plugin(config)``: what it returns is
#: registered instead of the module, and nothing when it returns None (the
#: device-line mapping, registered only when some line has a ``device``).
BUILTIN_PLUGINS["channel_events"] = "asttapi_server.mappings.channel_events"

DEFAULT_LOOKUP_TIMEOUT = 2.0
SHUTDOWN_TIMEOUT = 5.0
#: A plugin failing in the same hook again is reported at most this often (seconds).
ERROR_LOG_INTERVAL = 60.0
#: Lookups of one blocking plugin that may still run past their timeout; while
#: that many do, the plugin is skipped, so a hung CRM cannot take every thread.
MAX_OVERDUE_PER_PLUGIN = 2

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_BLOCKING_ATTR = "asttapi_blocking"

#: run_in_thread(function) -> Deferred firing with function()'s result.
ThreadRunner = Callable[[Callable[[], Any]], Deferred]


def _one_line(exc: BaseException) -> str:
    """An exception's text on one line, for the single line start-up shows."""
    return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__


def blocking(function: Callable) -> Callable:
    """Mark a hook implementation as blocking: the host calls it in its plugin thread pool.

    Only ``asttapi_lookup_contact`` honours it. The function must not touch
    the reactor or return a Deferred.
    """
    setattr(function, _BLOCKING_ATTR, True)
    return function


def bundled_plugin_dir() -> Path | None:
    """The folder holding the bundled plugins: the installed package, else the checkout's ``plugins/``."""
    try:
        spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    checkout = Path(__file__).resolve().parent.parent / "plugins"
    if (checkout / "__init__.py").is_file() and (checkout.parent / "asttapi_server").is_dir():
        return checkout
    return None


def resolve_path(value: str | Path, config: Any = None, kind: str = "file") -> Path:
    """A path from a plugin setting, by the configuration's one rule (``config.resolve_path``):
    relative to the config file's folder; a secret from systemd's credentials under the unit."""
    return Path(config_resolve_path(str(Path(value).expanduser()), kind, getattr(config, "source", None)))


class Settings:
    """Typed reading of a plugin's settings table, for ``configure``.

    Each getter removes the key it read; :meth:`done` then rejects what is
    left, so a misspelled key stops start-up instead of being ignored. Errors
    are ValueErrors whose text names the key; the host adds the plugin's name.
    The checks and their wording are :mod:`asttapi_server.settings`', the
    same as the configuration file's.
    """

    def __init__(self, settings: Mapping[str, Any], config: Any = None) -> None:
        self._left = dict(settings)
        self._config = config

    def _take(self, key: str, default: Any, kind: Callable[..., Any], **kwargs: Any) -> Any:
        """Pop ``key`` and check it with one of :mod:`asttapi_server.settings`' checks."""
        value = self._left.pop(key, default)
        if value is None:
            return None
        try:
            return kind(value, **kwargs)
        except setting.Expected as exc:
            raise ValueError(f"setting {key!r}: {exc}") from None

    def str(self, key: str, default: Any = None) -> Any:
        return self._take(key, default, setting.string, empty_ok=True)

    def number(self, key: str, default: float) -> float:
        return self._take(key, default, setting.number, positive=False, what="a number")

    def required(self, key: str, what: str) -> str:
        """A string that must be given; ``what`` says what it is when it is missing."""
        value = self.str(key)
        if not value:
            raise ValueError(f"setting {key!r}: {what} is missing")
        return value

    def login(self, user_key: str, password_file_key: str) -> tuple[str | None, str | None]:
        """(user, password) from a user setting and a password file setting: both or neither."""
        user = self.str(user_key) or None
        password = self.secret_file(password_file_key)
        if user and password is None:
            raise ValueError(f"setting {password_file_key!r}: needed with {user_key} (a file holding the password)")
        if password is not None and not user:
            raise ValueError(f"setting {user_key!r}: needed with {password_file_key}")
        return user, password

    def seconds(self, key: str, default: float, minimum: float) -> float:
        """A number of seconds from ``minimum`` up."""
        return self._take(key, default, setting.number, minimum=minimum)

    def integer(self, key: str, default: int, lo: int, hi: int | None = None) -> int:
        return self._take(key, default, setting.integer, lo=lo, hi=hi)

    def boolean(self, key: str, default: bool) -> bool:
        return self._take(key, default, setting.boolean)

    def strings(self, key: str, default: Sequence[str] | None) -> tuple[str, ...] | None:
        """One string or a non-empty list of them (``default`` None: an optional key, None when absent)."""
        return self._take(key, None if default is None else list(default), setting.strings, allow_single=True,
                          non_empty=True, what="a string or a list of non-empty strings")

    def table(self, key: str) -> dict[str, Any]:
        return self._take(key, {}, setting.table)

    def secret_file(self, key: str) -> str | None:
        """The secret held in the file ``key`` names (relative to the config file), or None when
        ``key`` is not set. An error names the file and why, never what it holds."""
        path = self.str(key)
        if path is None:
            return None
        try:
            return read_secret_file(resolve_path(path, self._config, "secret"))
        except ValueError as exc:
            raise ValueError(f"setting {key!r}: {exc}") from None

    def tables(self, key: str) -> list[dict[str, Any]]:
        """A list of tables: ``[[plugins.NAME.KEY]]`` in the config file (one table alone is a list of one)."""
        value = self._left.pop(key, [])
        items = [value] if isinstance(value, Mapping) else value
        if not isinstance(items, list) or not all(isinstance(v, Mapping) for v in items):
            raise ValueError(f"setting {key!r}: {setting.Expected(f'[[...{key}]] tables', value)}")
        return [dict(v) for v in items]

    def paths(self, key: str) -> list[Path]:
        """A path or a list of paths, relative to the config file; each must exist."""
        items = self._take(key, [], setting.strings, allow_single=True, what="a path or a list of paths")
        return [self._existing_file(key, v) for v in items]

    def file(self, key: str) -> Path | None:
        """An existing file (relative to the config file), or None when ``key`` is not set."""
        value = self.str(key)
        return None if value is None else self._existing_file(key, value)

    def _existing_file(self, key: str, value: str) -> Path:
        path = resolve_path(value, self._config)
        if not path.is_file():
            raise ValueError(f"setting {key!r}: file {str(path)!r} does not exist")
        return path

    def demo_data(self, table: str, *, configured: bool, needs: str) -> bool:
        """Read ``demo``: may the plugin use its bundled, invented demo data?

        The rule for every plugin that ships sample data: it needs a real
        source (``needs``, e.g. "database") or ``demo = true``; on the demo
        PBX (``config.demo``: no ``[ami] host``) it may without asking. So a
        config copied for a real PBX never pops invented contacts silently:
        it stops start-up with one line instead. ``configured``: a real
        source was given; then the answer is False. Call it last, before
        :meth:`done`.
        """
        value = self._take("demo", None, setting.boolean)
        if configured:
            if value:
                raise ValueError(f"setting 'demo': true would ignore the {needs} given; remove one of them")
            return False
        if value or (value is None and getattr(self._config, "demo", False)):
            return True
        self.done()  # a misspelt source ("cvs") is the better message
        raise ValueError(
            f"no data to read: set {needs} in [{table}], or demo = true for the bundled "
            "invented demo contacts (used unasked only on the demo PBX); or remove the plugin "
            "from [plugins] enabled"
        )

    def done(self) -> None:
        if self._left:
            raise ValueError(f"unknown setting(s): {', '.join(sorted(self._left))}")


def build_plugin_manager(
    config_plugins: Any,
    *,
    config: Any = None,
    search_paths: Sequence[str | Path] | None = None,
    entry_points: Iterable[importlib.metadata.EntryPoint] | None = None,
    clock: Any = None,
    run_in_thread: ThreadRunner | None = None,
    builtins: bool = True,
) -> PluginHost:
    """Load, configure and register the enabled plugins; raise PluginError naming the first that fails.

    :param config_plugins: the ``[plugins]`` section (``enabled``, ``settings``,
        ``lookup_timeout``), normally ``config.plugins``.
    :param config: the whole ``Config`` handed to each plugin's ``configure``.
    :param search_paths: folders searched for ``NAME.py``; default: the bundled folder.
    :param entry_points: the entry points to search (default: those installed
        in the group ``asttapi_server.plugins``); for tests.
    :param clock: ``IReactorTime`` for lookup timeouts (default: the reactor).
    :param run_in_thread: how blocking lookups run (default: a thread pool of
        the host's own); for tests.
    :param builtins: register the built-in plugins (the TAPI UserEvent mapping).
    """
    enabled = list(dict.fromkeys(getattr(config_plugins, "enabled", ()) or ()))
    settings_by_name: Mapping[str, Mapping[str, Any]] = getattr(config_plugins, "settings", None) or {}
    timeout = getattr(config_plugins, "lookup_timeout", DEFAULT_LOOKUP_TIMEOUT)
    if search_paths is None:
        bundled = bundled_plugin_dir()
        search_paths = [bundled] if bundled is not None else []
    if entry_points is None:
        entry_points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    entry_points = list(entry_points)

    host = PluginHost(lookup_timeout=timeout, clock=clock, run_in_thread=run_in_thread)
    if builtins:
        for name, module in BUILTIN_PLUGINS.items():
            builtin = importlib.import_module(module)
            make = getattr(builtin, "builtin_plugin", None)
            builtin = make(config) if make is not None else builtin
            if builtin is not None:
                host.register(builtin, name)
    for name, settings in settings_by_name.items():
        # An empty table (the example file's comment-only [plugins.NAME]) sets nothing to ignore.
        if settings and name not in enabled and name not in BUILTIN_PLUGINS:
            log.warn("Settings for plugin {plugin} ignored: it is not in [plugins] enabled", plugin=name)
    configured = []
    for name in enabled:
        if name in BUILTIN_PLUGINS and builtins:
            continue
        loaded = _load(name, entry_points=entry_points, search_paths=search_paths)
        configured.append((name, _configure(name, loaded, dict(settings_by_name.get(name, {})), config)))
    # pluggy calls the plugin registered last first; register backwards so
    # hook order is the order of `enabled` (earlier ones win contact lookups).
    for name, plugin in reversed(configured):
        host.register(plugin, name)
        log.info("Plugin {plugin} loaded", plugin=name)
    host.check()
    return host


def _load(name: str, *, entry_points: list, search_paths: Sequence[str | Path]) -> Any:
    if not _NAME.match(name):
        raise PluginError(f"plugin {name!r}: not a valid plugin name (letters, digits and _ only)")
    for ep in entry_points:
        if ep.name == name:
            try:
                return ep.load()
            except Exception as exc:
                raise PluginError(f"plugin {name!r}: cannot import {ep.value}: {_one_line(exc)}") from exc
    module_name = f"{BUNDLED_PACKAGE}.{name}"
    try:
        found = importlib.util.find_spec(module_name) is not None
    except (ImportError, ValueError):
        found = False
    if found:
        try:
            return importlib.import_module(module_name)
        except Exception as exc:
            raise PluginError(f"plugin {name!r}: cannot import {module_name}: {_one_line(exc)}") from exc
    for folder in search_paths:
        for candidate in (Path(folder) / f"{name}.py", Path(folder) / name / "__init__.py"):
            if candidate.is_file():
                return _load_file(name, candidate)
    where = ", ".join(str(p) for p in search_paths) or "no folder"
    raise PluginError(
        f"plugin {name!r} not found: no entry point {name!r} in group {ENTRY_POINT_GROUP!r}, "
        f"no module {module_name}, no {name}.py in {where}"
    )


def _load_file(name: str, path: Path) -> Any:
    module_name = f"_asttapi_plugin_{name}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"plugin {name!r}: cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise PluginError(f"plugin {name!r}: cannot import {path}: {type(exc).__name__}: {_one_line(exc)}") from exc
    return module


def _configure(name: str, loaded: Any, settings: dict[str, Any], config: Any) -> Any:
    configure = getattr(loaded, "configure", None)
    if not callable(configure):
        if settings:
            keys = ", ".join(sorted(settings))
            raise PluginError(f"plugin {name!r} takes no settings, but [plugins.{name}] has: {keys}")
        return loaded
    try:
        plugin = configure(settings, config)
    except Exception as exc:
        raise PluginError(f"plugin {name!r}: {_one_line(exc)}") from exc
    if plugin is None:
        raise PluginError(f"plugin {name!r}: configure() returned None instead of the plugin object")
    return plugin


class PluginHost:
    """The plugins of one application, and the only way the bridge calls them.

    Every method isolates plugins: an exception is logged with the plugin's
    name and that plugin is skipped. Methods that return a Deferred never
    errback (except :meth:`startup`, whose failure must stop start-up).
    """

    def __init__(
        self,
        *,
        lookup_timeout: float = DEFAULT_LOOKUP_TIMEOUT,
        clock: Any = None,
        run_in_thread: ThreadRunner | None = None,
    ) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.lookup_timeout = float(lookup_timeout)
        self.app: Any = None
        self._clock = clock
        self._run_in_thread = run_in_thread
        self._pool: Any = None
        self._overdue: dict[str, int] = {}
        self._error_log = LogThrottle(ERROR_LOG_INTERVAL)
        # Event name (compared form) -> the asttapi_map_ami_event implementations that declared it.
        self._mappers: dict[str, tuple[Any, ...]] = {}
        self._impl_cache: dict[str, list[Any]] = {}
        #: The hooks some registered plugin implements (kept at each registration): the bridge
        #: calls a per-event hook only when it is here, so a hook nobody implements costs nothing.
        self.implemented: frozenset[str] = frozenset()
        self._wanted: frozenset[str] = frozenset()
        #: ``fn(plugin, result, seconds)`` for each plugin's part of a contact
        #: lookup; result is "hit", "miss", "error" or "timeout" (asttapi_server.metrics).
        self.lookup_observer: Callable[[str, str, float], None] | None = None

    # -- registration --------------------------------------------------

    def register(self, plugin: Any, name: str) -> None:
        """Register an already configured plugin object under ``name``.

        Pluggy's order: a plugin registered later is called earlier (unless
        ``tryfirst``/``trylast`` say otherwise).
        """
        self._impl_cache.clear()
        try:
            self.pm.register(plugin, name=name)
        except ValueError as exc:  # name or object already registered
            raise PluginError(f"plugin {name!r}: {_one_line(exc)}") from exc
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin {name!r}: {_one_line(exc)}") from exc
        for hook_name in self._spec_names():
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                if impl.plugin_name == name and (impl.hookwrapper or impl.wrapper):
                    self.pm.unregister(name=name)
                    self._impl_cache.clear()
                    raise PluginError(f"plugin {name!r}: hook wrappers are not supported ({hook_name})")
        self._route()

    def check(self) -> None:
        """Fail on hook implementations that match no hook (a misspelled name)."""
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            name = self.pm.get_name(exc.plugin) or repr(exc.plugin)
            raise PluginError(f"plugin {name!r}: {_one_line(exc)}") from exc

    @property
    def names(self) -> list[str]:
        """Names of the registered plugins, in the order they are called (tryfirst/trylast aside)."""
        return [name for name, _ in reversed(self.pm.list_name_plugin())]

    def _spec_names(self) -> list[str]:
        return [n for n in dir(hookspecs) if n.startswith("asttapi_")]

    def _impls(self, hook_name: str) -> list[Any]:
        """The hook's implementations in call order, built once per registration
        (client_event runs per TAPI event: no list rebuilt, none when no plugin has it)."""
        impls = self._impl_cache.get(hook_name)
        if impls is None:
            # pluggy keeps implementations in reverse call order.
            impls = self._impl_cache[hook_name] = list(reversed(getattr(self.pm.hook, hook_name).get_hookimpls()))
        return impls

    def _call(self, impl: Any, hook_name: str, kwargs: Mapping[str, Any]) -> tuple[bool, Any]:
        """Call one implementation; (True, result), or (False, None) after logging its exception."""
        try:
            # map: no list comprehension (a Python call of its own) per hook call
            return True, impl.function(*map(kwargs.__getitem__, impl.argnames))
        except Exception:
            self._failed(impl.plugin_name, hook_name)
            return False, None

    def _route(self) -> None:
        names_by_plugin: dict[str, set[str]] = {}
        for impl in self._impls("asttapi_ami_event_names"):
            ok, names = self._call(impl, "asttapi_ami_event_names", {})
            if not ok or names is None:
                continue
            if isinstance(names, str) or not isinstance(names, Iterable):
                log.error("Plugin {plugin}: asttapi_ami_event_names returned {value!r}, not a list of names",
                          plugin=impl.plugin_name, value=names)
                continue
            names_by_plugin[impl.plugin_name] = {str(n) for n in names}
        mappers: dict[str, list[Any]] = {}
        declared: set[str] = set()
        for impl in self._impls("asttapi_map_ami_event"):
            wanted = names_by_plugin.get(impl.plugin_name)
            if not wanted:
                log.warn("Plugin {plugin} implements asttapi_map_ami_event but names no events "
                         "in asttapi_ami_event_names; it will never be called", plugin=impl.plugin_name)
                continue
            for event_name in wanted:
                # One case rule for event names (idents.wanted_name), as where the bytes are framed.
                mappers.setdefault(wanted_name(event_name), []).append(impl)
                declared.add(event_name)
        self._mappers = {name: tuple(impls) for name, impls in mappers.items()}
        self.implemented = frozenset(name for name in self._spec_names() if self._impls(name))
        self._wanted = frozenset(declared)

    # -- life cycle ----------------------------------------------------

    def startup(self, config: Any, app: Any) -> Deferred:
        """Run every ``asttapi_startup``; the Deferred fails with PluginError naming the first plugin that failed."""
        self.app = app
        calls: list[tuple[str, Deferred]] = []
        for impl in self._impls("asttapi_startup"):
            d = maybeDeferred(impl.function, *[{"config": config, "app": app}[a] for a in impl.argnames])
            calls.append((impl.plugin_name, d))

        def check(results: list[tuple[bool, Any]]) -> None:
            for (name, _), (ok, result) in zip(calls, results):
                if not ok:
                    log.failure("Plugin {plugin} failed to start", result, plugin=name)
                    raise PluginError(f"plugin {name!r} failed to start: {result.getErrorMessage()}")

        return DeferredList([d for _, d in calls], consumeErrors=True).addCallback(check)

    def shutdown(self) -> Deferred:
        """Run every ``asttapi_shutdown`` (errors logged), wait up to a few seconds, stop the thread pool."""
        waits = []
        for impl in self._impls("asttapi_shutdown"):
            name = impl.plugin_name
            d = maybeDeferred(impl.function, *[{"app": self.app}[a] for a in impl.argnames])
            if not d.called:
                d.addTimeout(SHUTDOWN_TIMEOUT, self._get_clock())
            d.addErrback(lambda f, name=name: log.failure("Plugin {plugin} failed to shut down", f, plugin=name))
            waits.append(d)
        done = DeferredList(waits, consumeErrors=True)
        done.addCallback(lambda _: self._release_pool())
        return done

    # -- the hooks the bridge calls ------------------------------------

    def wanted_event_names(self) -> frozenset[str]:
        """AMI ``Event:`` names some plugin maps; the bridge need not look at other events."""
        return self._wanted

    def mappers(self) -> dict[str, tuple[Any, ...]]:
        """Event name (compared form) -> the ``asttapi_map_ami_event`` implementations that
        declared it, in hook order: the plugins' part of the one route table
        (``asttapi_server.routes.Routes``), built by the bridge; pass a route's
        ``mappers`` back to :meth:`map_with`."""
        return dict(self._mappers)

    def map_ami_event(self, message: Any, now: float | None = None, pbx: str = DEFAULT_PBX,
                      calls: Any = None) -> list:
        """:meth:`map_with` the implementations that declared ``message``'s name (tests, tools:
        the bridge looks the name up once, in its route table). ``now``: the host's clock."""
        impls = self._mappers.get(wanted_name(message.name))
        if not impls:
            return []
        return self.map_with(impls, message, self._get_clock().seconds() if now is None else now, pbx, calls)

    def map_with(self, impls: Iterable[Any], message: Any, now: float, pbx: str = DEFAULT_PBX,
                 calls: Any = None) -> list:
        """The TAPI signals for one AMI event of the PBX ``pbx`` from ``impls`` (a route's
        mappers): the first plugin (in hook order) that returns a list wins. ``calls``: that
        PBX's call model's read-only view (``core.legs.CallsView``), handed to each plugin."""
        kwargs = {"message": message, "now": now, "app": self.app, "pbx": pbx, "calls": calls}
        for impl in impls:
            ok, result = self._call(impl, "asttapi_map_ami_event", kwargs)
            if not ok or result is None:
                continue
            if isinstance(result, (list, tuple)):
                return list(result)
            log.error("Plugin {plugin}: asttapi_map_ami_event returned {value!r}, not a list; ignored",
                      plugin=impl.plugin_name, value=result)
        return []

    def map_channel_list(self, messages: list, since: float | None, now: float | None = None,
                         pbx: str = DEFAULT_PBX, calls: Any = None) -> list:
        """Every plugin's TAPI signals for a resync's channel list of ``pbx``, in hook order (see the
        hookspec). ``now``: the host's clock unless given."""
        signals: list = []
        now = self._get_clock().seconds() if now is None else now
        kwargs = {"messages": messages, "since": since, "now": now, "app": self.app, "pbx": pbx,
                  "calls": calls}
        for impl in self._impls("asttapi_map_channel_list"):
            ok, result = self._call(impl, "asttapi_map_channel_list", kwargs)
            if not ok or result is None:
                continue
            if isinstance(result, (list, tuple)):
                signals.extend(result)
            else:
                log.error("Plugin {plugin}: asttapi_map_channel_list returned {value!r}, not a list; ignored",
                          plugin=impl.plugin_name, value=result)
        return signals

    def client_event(self, event: Any) -> Any:
        """``event`` after every plugin enriched it, or ``None`` if a plugin dropped it."""
        impls = self._impls("asttapi_client_event")
        if not impls:
            return event
        kwargs = {"event": event, "app": self.app}
        for impl in impls:
            ok, result = self._call(impl, "asttapi_client_event", kwargs)
            if not ok or result is None:
                continue
            if result is False:
                return None
            if type(result) is not type(event):
                log.error("Plugin {plugin}: asttapi_client_event returned {value!r}; ignored",
                          plugin=impl.plugin_name, value=result)
                continue
            kwargs["event"] = result
        return kwargs["event"]

    def call_finished(self, call: Any) -> None:
        """Tell every plugin the call is over; errors, also of returned Deferreds, are logged."""
        kwargs = {"call": call, "app": self.app}
        for impl in self._impls("asttapi_call_finished"):
            ok, result = self._call(impl, "asttapi_call_finished", kwargs)
            if ok and isinstance(result, Deferred):
                name = impl.plugin_name
                result.addErrback(lambda f, name=name: self._failed(name, "asttapi_call_finished", f))

    def directories(self) -> dict[str, DirectoryIndex]:
        """The plugins that keep a contact directory in memory (their ``directory``), by name: for /metrics."""
        return {name: plugin.directory for name, plugin in self.pm.list_name_plugin()
                if isinstance(getattr(plugin, "directory", None), DirectoryIndex)}

    def metrics(self) -> list:
        """Every plugin's metric families for a scrape (see the hookspec); a failing plugin is left out."""
        families: list = []
        kwargs = {"app": self.app}
        for impl in self._impls("asttapi_metrics"):
            ok, result = self._call(impl, "asttapi_metrics", kwargs)
            if not ok or result is None:
                continue
            try:
                families.extend(result)
            except Exception:
                self._failed(impl.plugin_name, "asttapi_metrics")
        return families

    @property
    def looks_up_contacts(self) -> bool:
        """Does any plugin implement ``asttapi_lookup_contact``? (No: no lookup, no miss signal.)"""
        return bool(self._impls("asttapi_lookup_contact"))

    def lookup_contact(self, number: str, callinfo: Mapping[str, Any] | None = None) -> Deferred:
        """Ask every plugin for the contact behind ``number`` at once.

        Fires with the first non-``None`` contact in hook order among the
        answers that arrived within ``lookup_timeout`` seconds, or ``None``;
        fires at the timeout at the latest, and never errbacks.
        """
        impls = self._impls("asttapi_lookup_contact")
        if not impls or not number:
            return succeed(None)
        return _ContactLookup(self, impls, number, callinfo or {}).start()

    # -- plumbing ------------------------------------------------------

    def _failed(self, plugin: str, hook: str, failure: Failure | None = None) -> None:
        """Log a plugin's exception with its name; the same plugin and hook at most once a minute."""
        failure = failure if failure is not None else Failure()
        suppressed = self._error_log.allow((plugin, hook), self._get_clock().seconds())
        if suppressed is None:
            return
        log.failure("Plugin {plugin} failed in {hook} and was skipped "
                    "({suppressed} more failures of it since the last report)",
                    failure, level=LogLevel.error, plugin=plugin, hook=hook, suppressed=suppressed)

    def _get_clock(self) -> Any:
        if self._clock is None:
            from twisted.internet import reactor

            self._clock = reactor
        return self._clock

    def _call_blocking(
        self, impl: Any, kwargs: Mapping[str, Any], cancelled: list[bool]
    ) -> tuple[Deferred, Callable[[], None]] | None:
        """Run a @blocking implementation in the pool.

        Returns the answer's Deferred and a function the lookup calls if it
        times out while the job still runs; or ``None`` when the plugin
        already has MAX_OVERDUE_PER_PLUGIN jobs running past their timeout
        (a hung backend), so it cannot take every thread of the pool.
        """
        name = impl.plugin_name
        if self._overdue.get(name, 0) >= MAX_OVERDUE_PER_PLUGIN:
            log.warn("Plugin {plugin} still has {count} lookups running past the timeout; "
                     "it is skipped until one returns", plugin=name, count=self._overdue[name])
            return None
        args = [kwargs[a] for a in impl.argnames]
        state = {"done": False, "overdue": False}

        def job() -> Any:
            if cancelled[0]:  # the lookup finished while this job was queued
                return None
            return impl.function(*args)

        def mark_overdue() -> None:
            if not state["done"] and not state["overdue"]:
                state["overdue"] = True
                self._overdue[name] = self._overdue.get(name, 0) + 1

        # The lookup cancels ``answer`` when it no longer needs it; the job
        # itself cannot be stopped and reports back to ``finished``.
        answer: Deferred = Deferred()

        def finished(result: Any) -> None:
            state["done"] = True
            if state["overdue"]:
                self._overdue[name] -= 1
            if not answer.called:
                if isinstance(result, Failure):
                    answer.errback(result)
                else:
                    answer.callback(result)
            elif isinstance(result, Failure):
                self._failed(name, "asttapi_lookup_contact", result)

        runner = self._run_in_thread or self._default_runner
        runner(job).addBoth(finished)
        return answer, mark_overdue

    def _default_runner(self, job: Callable[[], Any]) -> Deferred:
        from twisted.internet import reactor, threads
        from twisted.python.threadpool import ThreadPool

        if self._pool is None:
            blocking_plugins = {i.plugin_name for i in self._impls("asttapi_lookup_contact")
                                if getattr(i.function, _BLOCKING_ATTR, False)}
            size = max(8, 2 * (MAX_OVERDUE_PER_PLUGIN + 2) * len(blocking_plugins))
            self._pool = ThreadPool(minthreads=0, maxthreads=size, name="asttapi-plugins")
            self._pool.start()
            reactor.addSystemEventTrigger("during", "shutdown", self._stop_pool)
        return threads.deferToThreadPool(reactor, self._pool, job)

    def _stop_pool(self) -> None:
        """At the reactor's shutdown: join the workers."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.stop()

    def _release_pool(self) -> Deferred:
        """After :meth:`shutdown` (a reload's old host, or the service stopping): join the
        workers in a thread, so a plugin's blocking call still under way (a slow
        directory) does not freeze the reactor meanwhile."""
        pool, self._pool = self._pool, None
        if pool is None:
            return succeed(None)
        from twisted.internet import threads

        return threads.deferToThread(pool.stop)


_PENDING = object()


class _ContactLookup:
    """One lookup across all plugins: first answer in hook order, bounded by the timeout."""

    def __init__(self, host: PluginHost, impls: list[Any], number: str, callinfo: Mapping[str, Any]) -> None:
        self.host = host
        self.impls = impls
        self.kwargs = {"number": number, "callinfo": callinfo, "app": host.app}
        self.answers: list[Any] = [_PENDING] * len(impls)
        self.pending: dict[int, Deferred] = {}
        self.overdue_marks: dict[int, Callable[[], None]] = {}
        self.cancelled = [False]  # shared with queued thread jobs
        self.result: Deferred = Deferred(lambda d: self._finish(None))
        self.timer: Any = None
        self.started = 0.0

    def _observe(self, index: int, result: str) -> None:
        observer = self.host.lookup_observer
        if observer is not None:
            try:
                observer(self.impls[index].plugin_name, result, self.host._get_clock().seconds() - self.started)
            except Exception:
                log.failure("contact lookup observer failed")

    def start(self) -> Deferred:
        if self.host.lookup_observer is not None:
            self.started = self.host._get_clock().seconds()
        for index, impl in enumerate(self.impls):
            try:
                if getattr(impl.function, _BLOCKING_ATTR, False):
                    started = self.host._call_blocking(impl, self.kwargs, self.cancelled)
                    value = None
                    if started is not None:
                        value, self.overdue_marks[index] = started
                else:
                    value = impl.function(*[self.kwargs[a] for a in impl.argnames])
            except Exception:
                self.host._failed(impl.plugin_name, "asttapi_lookup_contact")
                self._observe(index, "error")
                self.answers[index] = None
                continue
            if isinstance(value, Deferred):
                self.pending[index] = value
                value.addBoth(self._arrived, index)
            else:
                self.answers[index] = answer = self._check(impl.plugin_name, value)
                self._observe(index, "miss" if answer is None else "hit")
        if self._decide():
            return self.result
        self.timer = self.host._get_clock().callLater(self.host.lookup_timeout, self._expire)
        return self.result

    def _arrived(self, outcome: Any, index: int) -> None:
        self.pending.pop(index, None)
        name = self.impls[index].plugin_name
        if isinstance(outcome, Failure):
            if self.result.called and outcome.check(CancelledError):
                return None  # not needed any more: counted as a timeout, or an earlier plugin answered
            self.host._failed(name, "asttapi_lookup_contact", outcome)
            self._observe(index, "error")
            if self.result.called:
                return None
            self.answers[index] = None
            self._decide()
            return None
        answer = self._check(name, outcome)
        self._observe(index, "miss" if answer is None else "hit")
        if self.result.called:
            return None
        self.answers[index] = answer
        self._decide()
        return None

    def _check(self, name: str, contact: Any) -> dict | None:
        if contact is None:
            return None
        if not isinstance(contact, Mapping):
            log.error("Plugin {plugin}: asttapi_lookup_contact returned {value!r}, not a dict; ignored",
                      plugin=name, value=contact)
            return None
        contact = dict(contact)
        contact.setdefault("source", name)
        try:
            json.dumps(contact)
        except (TypeError, ValueError):
            log.error("Plugin {plugin}: contact {value!r} is not JSON-serialisable; ignored", plugin=name, value=contact)
            return None
        return contact

    def _decide(self) -> bool:
        """Finish if the answer is already certain; True if finished."""
        for answer in self.answers:
            if answer is _PENDING:
                return False
            if answer is not None:
                self._finish(answer)
                return True
        self._finish(None)
        return True

    def _expire(self) -> None:
        self.timer = None
        slow = [self.impls[i].plugin_name for i, a in enumerate(self.answers) if a is _PENDING]
        log.warn("Contact lookup timed out after {timeout}s waiting for {plugins}",
                 timeout=self.host.lookup_timeout, plugins=", ".join(slow))
        for index in self.pending:
            self._observe(index, "timeout")
            if index in self.overdue_marks:
                self.overdue_marks[index]()
        answer = next((a for a in self.answers if a is not _PENDING and a is not None), None)
        self._finish(answer)

    def _finish(self, answer: dict | None) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        self.cancelled[0] = True
        if not self.result.called:
            self.result.callback(answer)
        for d in list(self.pending.values()):
            d.cancel()
        self.pending.clear()
