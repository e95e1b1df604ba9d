"""The configuration: one TOML file, command-line flags on top, frozen dataclasses out.

``load_config(path, overrides)`` reads the file with :mod:`tomllib`, lays the
overrides (dotted keys from the command line, e.g. ``{"ami.host": "pbx"}``)
over it, checks every key and returns a :class:`Config`. Anything wrong (an
unknown key, a wrong type, a missing required value, an endpoint string
Twisted cannot parse) raises :class:`~asttapi_server.errors.ConfigError`
whose ``str()`` is one line naming the file, the dotted key and what was
expected::

    asttapi.toml: key 'ami.port': expected an integer 1-65535, got 'abc'

With no AMI host anywhere the server runs on the embedded demo PBX
(``Config.demo`` is then true); if no ``[lines]`` are configured in demo mode
the demo's two phones become ``line_1`` (bob) and ``line_2`` (bobbett), so
``twistd -n asttapi`` with no options works out of the box.

Secrets never appear in an error: a wrong ``ami.secret`` or ``users.*.token``
is described by its type or length, never by its value. They may come from a
file (``ami.secret_file``, ``users.NAME.token_file``) or, for the AMI secret,
the environment (``ASTTAPI_AMI_SECRET``), so they do not show in ``ps``.

A relative path in the file is resolved once, here (:func:`resolve_path`):
secret files and an ``ssl:`` endpoint's key and certificate in systemd's
``$CREDENTIALS_DIRECTORY``, the call store in ``$STATE_DIRECTORY``, and
without systemd beside the configuration file.

Pure module: no reactor, no I/O beyond reading the file and the secret files
it names.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from asttapi_server.clients import hub as _hub, protocol as _clients
from asttapi_server.clients.auth import LoginLimits
from asttapi_server.clients.limits import ConnectionLimits
from asttapi_server.clients.session import MAX_LINES_PER_SESSION
from asttapi_server.core import model as _model
from asttapi_server.core.dialling import DialRule
from asttapi_server.core.grammar import MAX_LINES
from asttapi_server.errors import ConfigError
from asttapi_server import settings as setting
from asttapi_server.names import line_name_problem

__all__ = [
    "AMIConfig",
    "ServerConfig",
    "LineConfig",
    "UserConfig",
    "CallsConfig",
    "PluginsConfig",
    "WebConfig",
    "MetricsConfig",
    "ClusterConfig",
    "Config",
    "load_config",
    "DEMO_LINES",
    "OVERRIDE_FLAGS",
]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True)
class AMIConfig:
    host: str | None = None  # None -> demo PBX
    port: int = 5038
    username: str = "asttapi"
    secret: str = field(default="", repr=False)  # never in a log line
    auth: str = "md5"  # "md5" | "plain"
    keepalive: float = 20.0
    pong_timeout: float = 10.0
    action_timeout: float = 30.0
    originate_timeout: float = 30.0  # seconds a lineMakeCall rings the user's phone


@dataclass(frozen=True)
class ServerConfig:
    # Every default but listen's is written once, in the part that uses it (clients/*);
    # tests/foundation/test_config_defaults.py checks each against its part.
    listen: tuple[str, ...] = ("tcp:5039:interface=127.0.0.1",)
    max_line_bytes: int = _clients.MAX_LINE_BYTES
    send_buffer_bytes: int = _clients.SEND_BUFFER_BYTES
    replay_ring: int = _hub.RING_SIZE
    # Connection and login limits (docs/security.md); their defaults are written once,
    # where they are used: ConnectionLimits (clients/limits.py), LoginLimits (clients/auth.py).
    max_clients: int = ConnectionLimits.max_clients
    max_clients_per_address: int = ConnectionLimits.max_clients_per_address
    login_timeout: float = ConnectionLimits.login_timeout
    handshake_timeout: float = ConnectionLimits.handshake_timeout
    line_timeout: float = ConnectionLimits.line_timeout
    login_free_failures: int = LoginLimits.free_failures
    login_backoff: float = LoginLimits.backoff
    login_backoff_max: float = LoginLimits.backoff_max
    login_forget_after: float = LoginLimits.forget_after
    # Client limits (docs/security.md "Client floods"):
    replay_ring_bytes: int = _hub.RING_BYTES  # encoded bytes the replay ring may hold
    max_lines_per_session: int = MAX_LINES_PER_SESSION  # lines one connection may have open
    request_rate: float = _clients.REQUEST_RATE  # requests per second per connection, errors included
    request_burst: int = _clients.REQUEST_BURST  # requests a connection may send at once before the rate applies
    # requests per second of one user, all connections (before login: one address)
    user_request_rate: float = _clients.USER_REQUEST_RATE
    user_request_burst: int = _clients.USER_REQUEST_BURST  # what one user (address) may send at once


@dataclass(frozen=True)
class LineConfig:
    name: str
    channel: str
    context: str = "default"
    callerid: str | None = None
    # A device line (issue 15): its calls come from the channel events of this
    # device ("PJSIP/201"), not from the dialplan's TAPI UserEvents.
    device: str | None = None
    # How the line reaches numbers given as +49... or tel: URIs: its
    # [lines.NAME.dial] over the global [dial] (asttapi_server.core.dialling).
    dial: DialRule | None = None
    # The PBX the line belongs to ([pbx.NAME]); None: not pinned (with one PBX,
    # that one; with several, the first PBX whose TAPIEVENTs name it, core/lines.py).
    pbx: str | None = None


@dataclass(frozen=True)
class UserConfig:
    name: str
    token: str = field(repr=False)  # never in a log line
    lines: tuple[str, ...] = ("*",)


@dataclass(frozen=True)
class CallsConfig:
    # The defaults are the call model's own (core/model.py), written once there.
    hangup_grace: float = _model.DEFAULT_HANGUP_GRACE
    max_age: float = _model.DEFAULT_MAX_AGE
    linger: float = _model.DEFAULT_LINGER
    #: Where live calls are kept across a restart (asttapi_server/store.py), absolute.
    #: None: the default, ``asttapi-calls.json`` in ``$STATE_DIRECTORY`` or beside
    #: the configuration file (none in demo mode, whose PBX restarts with the
    #: server; service.state_file_path); "": no store.
    state_file: str | None = None
    # PBX-side limits (issue 11; see docs/security.md).
    max_calls: int = _model.DEFAULT_MAX_CALLS
    max_lines: int = MAX_LINES
    max_field_bytes: int = _model.DEFAULT_MAX_FIELD_BYTES

    def model_args(self) -> dict[str, Any]:
        """What ``CallModel(...)`` takes of this table (every key but ``state_file``), by name."""
        return {k: getattr(self, k) for k in _MODEL_KEYS}



#: The [calls] keys the call model takes (all but the store's file).
_MODEL_KEYS = ("hangup_grace", "max_age", "linger", "max_calls", "max_lines", "max_field_bytes")

@dataclass(frozen=True)
class PluginsConfig:
    #: None: ``enabled`` not set, so the demo PBX enables its sample contact
    #: plugins (service.plugins_config); ``()``: none, also on the demo PBX.
    enabled: tuple[str, ...] | None = None
    settings: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: _EMPTY)
    lookup_timeout: float = 2.0


@dataclass(frozen=True)
class WebConfig:
    """``[web]``: the browser page and JSON-RPC over WebSocket (see asttapi_server.web)."""

    listen: tuple[str, ...] = ()  # empty: no web listener
    allowed_origins: tuple[str, ...] = ()  # origins besides the page's own that may open /ws
    frame_ancestors: tuple[str, ...] = ()  # origins that may frame the page (CSP frame-ancestors)
    # True when listen is the demo's default, not asked for: a port that is taken only warns.
    default_listen: bool = False
    # HTTP deadlines (asttapi_server/web/http.py), also on the [metrics] listeners:
    request_timeout: float = 10.0  # seconds from a request's first byte until its answer is written
    idle_timeout: float = 15.0  # seconds a kept-alive connection (or a TLS handshake) may wait
    access_log: bool = False  # one (throttled) log line per request; probes are never logged


@dataclass(frozen=True)
class MetricsConfig:
    """``[metrics]``: /metrics, /healthz and /readyz (see asttapi_server.web.ops, docs/operations.md)."""

    enabled: bool = True  # false: nothing is counted and /metrics answers 404
    web: bool = True  # also serve the three paths on every web.listen
    listen: tuple[str, ...] = ()  # endpoints of their own that serve only those paths


@dataclass(frozen=True)
class ClusterConfig:
    """``[cluster]``: more than one server node sharing a Redis (asttapi_server.cluster, docs/scaling.md).

    Without the table nothing changes: one process, the state file, no Redis.
    """

    redis: Any  # asttapi_server.cluster.address.RedisAddress
    node: str  # unique per running node
    username: str | None = None  # an ACL user; None: the default user
    password: str | None = field(default=None, repr=False)  # from password_file; never in a log line
    sentinel_password: str | None = field(default=None, repr=False)  # from sentinel_password_file
    tls_ca_file: str | None = None  # rediss:// / sentinels://: the CA to trust (default: the system's)
    prefix: str = "asttapi"  # of every key; several clusters may share one Redis under different ones
    lease_ttl: float = 2.0  # a dead node's PBX links move after at most this long
    lease_renew: float = 0.5
    reply_timeout: float = 2.0  # a Redis command without a reply this long drops the connection
    stream_max_len: int = 100_000  # entries each PBX's event log keeps (about)
    stream_max_age: float = 3600.0  # seconds each PBX's event log keeps


#: The web listener of a demo run whose config does not set ``web.listen``.
DEMO_WEB_LISTEN = "tcp:8080:interface=127.0.0.1"


#: The name of the PBX an ``[ami]`` table configures (and of a store's calls written before ``[pbx.NAME]``).
DEFAULT_PBX = "default"
#: Most demo PBXs one server runs (``demo_pbxs``, ``--demo-pbxs``).
MAX_DEMO_PBXS = 5


@dataclass(frozen=True)
class Config:
    #: The first PBX (``pbxs``' first entry): what a single-PBX server reads.
    ami: AMIConfig = field(default_factory=AMIConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    lines: Mapping[str, LineConfig] = field(default_factory=lambda: _EMPTY)
    users: Mapping[str, UserConfig] = field(default_factory=lambda: _EMPTY)
    calls: CallsConfig = field(default_factory=CallsConfig)
    plugins: PluginsConfig = field(default_factory=PluginsConfig)
    web: WebConfig = field(default_factory=WebConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    cluster: ClusterConfig | None = None  # no [cluster]: one node, no Redis
    dial: DialRule | None = None  # [dial]; each line's own rule is LineConfig.dial
    demo: bool = False
    source: str | None = None
    #: Every PBX by name, in the file's order: ``[pbx.NAME]`` tables, or ``[ami]`` as ``"default"``.
    #: Empty only in a Config built by hand: then ``ami`` is the one PBX (see :meth:`pbx_configs`).
    pbxs: Mapping[str, AMIConfig] = field(default_factory=lambda: _EMPTY)

    def pbx_configs(self) -> Mapping[str, AMIConfig]:
        """Every PBX by name (``{"default": ami}`` for a Config without ``pbxs``)."""
        return self.pbxs or MappingProxyType({DEFAULT_PBX: self.ami})


#: The demo PBX's phones, used as lines when demo mode has no [lines]: two fed by
#: the dialplan's TAPI UserEvents, and alice's SIP phone, a device line fed by
#: Asterisk's own channel events (docs/device-lines.md) on a plain dialplan.
DEMO_LINES: Mapping[str, LineConfig] = MappingProxyType(
    {
        "line_1": LineConfig("line_1", "Local/bob@phones", "trunklocal"),
        "line_2": LineConfig("line_2", "Local/bobbett@phones", "trunklocal"),
        "line_3": LineConfig("line_3", "PJSIP/203", "plain-phones", device="PJSIP/203"),
    }
)

#: The phones of the demo's further PBXs (``demo_pbxs``): two dialplan lines each.
_DEMO_PEOPLE = ("carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy")


def demo_lines(pbxs: list[str]) -> dict[str, LineConfig]:
    """The demo's lines for these demo PBXs: :data:`DEMO_LINES` on the first (unpinned when it is the
    only one), and two dialplan lines of their own (``line_4``, ``line_5``, ...) on each further one."""
    if len(pbxs) <= 1:
        return dict(DEMO_LINES)
    lines = {name: replace(line, pbx=pbxs[0]) for name, line in DEMO_LINES.items()}
    number = len(lines)
    people = iter(_DEMO_PEOPLE)
    for pbx in pbxs[1:]:
        for _ in range(2):
            number += 1
            name = f"line_{number}"
            lines[name] = LineConfig(name, f"Local/{next(people)}@phones", "trunklocal", pbx=pbx)
    return lines


#: Which command-line flag sets which dotted key (for error messages).
OVERRIDE_FLAGS: Mapping[str, str] = MappingProxyType(
    {
        "ami.host": "--ami-host",
        "ami.port": "--ami-port",
        "ami.username": "--ami-username",
        "ami.secret": "--ami-secret",
        "demo_pbxs": "--demo-pbxs",
        "server.listen": "--listen",
        "web.listen": "--web-listen",
        "demo": "--demo",
    }
)


#: Shortest user token accepted; a short one is guessed long before backoff matters.
MIN_TOKEN_LENGTH = 16

#: Environment variable that gives the AMI secret (wins over the file's secret).
AMI_SECRET_ENV = "ASTTAPI_AMI_SECRET"

#: systemd's ``LoadCredential=`` files: copies readable by the service's user alone.
CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"
#: systemd's ``StateDirectory=`` (the first one when the unit names several).
STATE_ENV = "STATE_DIRECTORY"


def resolve_path(path: str, kind: str, source: str | None, environ: Mapping[str, str] | None = None) -> str:
    """Where a relative path of the configuration file points; an absolute one stays as it is.

    ``kind`` ``"secret"`` (``secret_file``, ``token_file``, a plugin's
    ``*_password_file``, the files an ``ssl:`` endpoint names): in
    ``$CREDENTIALS_DIRECTORY`` when systemd gives one (the unit's
    ``LoadCredential=NAME:...``), so one file works under the unit and by
    hand. ``"state"`` (``state_file`` and its default): in
    ``$STATE_DIRECTORY`` (``StateDirectory=``). Any other kind (a plugin's
    data files), and these without systemd: the folder of the configuration
    file ``source``, or the working directory when there is no file.
    """
    if os.path.isabs(path):
        return path
    env = os.environ if environ is None else environ
    systemd = env.get(CREDENTIALS_ENV if kind == "secret" else STATE_ENV, "").split(":")[0]
    base = systemd or (os.path.dirname(os.path.abspath(source)) if source else os.getcwd())
    return os.path.join(base, path)


#: The files an ``ssl:`` endpoint reads (clients/listen.py); resolved like secrets.
_TLS_FILES = ("privateKey", "certKey", "extraCertChain", "dhParameters")


def _tls_files_resolved(description: str, resolve: Callable[[str], str]) -> str:
    """``description`` with the relative file paths of an ``ssl:`` endpoint resolved; other kinds as given.

    Works on the raw segments (``\\:`` escapes a colon, as Twisted reads it), so
    nothing but those paths changes.
    """
    from asttapi_server.clients.auth import endpoint_segments, unescape_segment

    segments = endpoint_segments(description)
    if segments[0].strip().lower() != "ssl":
        return description
    positional = 0
    for i, raw in enumerate(segments[1:], 1):
        text = unescape_segment(raw)
        key, eq, value = text.partition("=")
        if not eq:
            positional += 1  # port, then privateKey
        if (eq and key.strip() in _TLS_FILES) or (not eq and positional == 2):
            path = resolve(value.strip() if eq else text.strip())
            escaped = path.replace("\\", "\\\\").replace(":", "\\:")
            segments[i] = f"{key.strip()}={escaped}" if eq else escaped
    return ":".join(segments)


# ---------------------------------------------------------------- checking


class _Reader:
    """Checks one table; knows where each value came from for the error line."""

    def __init__(self, source: str, cli: frozenset[str], path: str | None = None,
                 environ: Mapping[str, str] | None = None) -> None:
        self.source = source
        self.cli = cli
        self.path = path
        self.environ = environ

    def resolve(self, path: str, kind: str) -> str:
        """A path from the file, resolved by :func:`resolve_path`."""
        return resolve_path(path, kind, self.path, self.environ)

    def endpoints(self, data, prefix, key, default, **kwargs):
        """Server endpoint strings, checked by Twisted's parser once the TLS files in them are resolved
        (the command line's are left as given: relative to the working directory, as usual)."""
        value = data.get(key)
        if f"{prefix}.{key}" not in self.cli and isinstance(value, (str, list)):
            fix = lambda v: _tls_files_resolved(v, lambda p: self.resolve(p, "secret")) if isinstance(v, str) else v
            data = {**data, key: fix(value) if isinstance(value, str) else [fix(v) for v in value]}
        return self.strings(data, prefix, key, default, check=_check_endpoint, allow_single=True, **kwargs)

    def fail(self, key: str, expected: str, value: Any = ...) -> ConfigError:
        if key in self.cli:
            where = f"command line: {OVERRIDE_FLAGS.get(key, key)}"
        else:
            where = f"{self.source}: key '{key}'"
        return ConfigError(f"{where}: {setting.Expected(expected, value)}")

    def table(self, data: Mapping[str, Any], prefix: str, known: Mapping[str, Any]) -> None:
        for key in data:
            if key not in known:
                dotted = f"{prefix}.{key}" if prefix else key
                names = ", ".join(known) or "nothing"
                raise ConfigError(
                    f"{self.source}: unknown key '{dotted}' (expected one of: {names})"
                )

    # typed getters: the checks and their wording are asttapi_server.settings'

    def get(self, data, prefix, key, default, kind, /, *args, **kwargs):
        """``kind(data[key], ...)``, or ``default`` when the key is absent; a wrong value names its key."""
        dotted = f"{prefix}.{key}" if prefix else key
        if key not in data:
            return default
        try:
            return kind(data[key], *args, **kwargs)
        except setting.Expected as exc:
            raise self.fail(dotted, exc.what, exc.value) from None

    def string(self, data, prefix, key, default, *, required=False, empty_ok=False):
        if required and key not in data:
            raise ConfigError(
                f"{self.source}: key '{prefix}.{key}': expected a non-empty string, but it is missing"
            )
        return self.get(data, prefix, key, default, setting.string, empty_ok=empty_ok)

    def integer(self, data, prefix, key, default, lo, hi=None):
        text_ok = f"{prefix}.{key}" in self.cli
        return self.get(data, prefix, key, default, setting.integer, lo, hi, text_ok=text_ok)

    def number(self, data, prefix, key, default, *, positive=True):
        return self.get(data, prefix, key, default, setting.number, positive=positive)

    def boolean(self, data, prefix, key, default):
        return self.get(data, prefix, key, default, setting.boolean)

    def strings(self, data, prefix, key, default, *, check: Callable[[str], str | None] | None = None,
                what="a list of non-empty strings", allow_single=False, non_empty=False):
        return self.get(data, prefix, key, default, setting.strings, check=check, what=what,
                         allow_single=allow_single, non_empty=non_empty)


def read_secret_file(path: str | os.PathLike[str]) -> str:
    """The secret a file holds, surrounding whitespace (the last newline) stripped.

    The one reader of secret files (``ami.secret_file``, ``users.NAME.token_file``,
    plugins' ``*_password_file``): ValueError says why not, never what the file holds.
    """
    try:
        with open(path, encoding="utf-8") as f:
            value = f.read().strip()
    except OSError as exc:
        raise ValueError(f"cannot read {str(path)!r}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{str(path)!r} is not UTF-8 text") from None
    if not value:
        raise ValueError(f"{str(path)!r} is empty")
    return value


def _credential_hint(r: "_Reader", path: str) -> str:
    """For a file missing from systemd's credentials: the unit line that would bring it."""
    credentials = (os.environ if r.environ is None else r.environ).get(CREDENTIALS_ENV)
    if not credentials or os.path.dirname(path) != credentials.rstrip("/") or os.path.exists(path):
        return ""
    name = os.path.basename(path)
    return f" (not among the unit's credentials: add LoadCredential={name}:/etc/asttapi/{name})"


def _secret(r: "_Reader", data: Mapping[str, Any], prefix: str, key: str, file_key: str,
            default: str | None, *, required: bool = False) -> str | None:
    """A secret from ``key`` or from the file ``file_key`` names; never echoed in an error."""
    dotted, dotted_file = f"{prefix}.{key}", f"{prefix}.{file_key}"
    if key in data and file_key in data:
        raise ConfigError(f"{r.source}: keys '{dotted}' and '{dotted_file}': expected one of them, not both")
    if file_key in data:
        path = r.resolve(r.string(data, prefix, file_key, None), "secret")
        try:
            return read_secret_file(path)
        except ValueError as exc:
            raise ConfigError(f"{r.source}: key '{dotted_file}': {exc}{_credential_hint(r, path)}") from None
    if key not in data:
        if required:
            raise ConfigError(
                f"{r.source}: key '{dotted}': expected a non-empty string, but it is missing "
                f"(or give '{file_key}', a file holding it)"
            )
        return default
    value = data[key]
    if not isinstance(value, str) or (required and not value):
        kinds = {bool: "true or false", int: "an integer", float: "a number", list: "a list", dict: "a table"}
        got = "an empty string" if value == "" else kinds.get(type(value), "something else")
        raise r.fail(dotted, "a non-empty string (the value is not shown)", setting.Hidden(got))
    return value


class _NoReactor:
    """Stands in for a reactor while an endpoint string is only parsed."""


def _check_endpoint(description: str) -> str | None:
    """None if Twisted can parse the server endpoint string, else what was wrong."""
    from asttapi_server.clients.listen import server_endpoint

    example = "a Twisted server endpoint string such as 'tcp:5039:interface=127.0.0.1'"
    try:
        server_endpoint(_NoReactor(), description)
    except ImportError as exc:
        return f"{example} (it needs a missing module: {exc.name}; for ssl: install asttapi-server[tls])"
    except OSError as exc:
        return f"{example} (cannot read {exc.filename or 'a file it names'}: {exc.strerror})"
    except Exception as exc:  # ValueError, KeyError, TypeError, ... from the parser
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"{example} ({reason})"
    return None


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = data
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[last] = value


# ---------------------------------------------------------------- sections

_AMI_KEYS = {k: None for k in (
    "host", "port", "username", "secret", "auth", "keepalive", "pong_timeout",
    "action_timeout", "originate_timeout",
)}
_AMI_KEYS["secret_file"] = None
_SERVER_KEYS = {k: None for k in ("listen", "max_line_bytes", "send_buffer_bytes", "replay_ring")}
_SERVER_KEYS.update(dict.fromkeys(("replay_ring_bytes", "max_lines_per_session", "request_rate", "request_burst",
                                   "user_request_rate", "user_request_burst")))
_LINE_KEYS = {k: None for k in ("channel", "context", "callerid")}
_USER_KEYS = {k: None for k in ("token", "lines")}
_USER_KEYS["token_file"] = None
_LINE_KEYS["device"] = None
_LINE_KEYS["dial"] = None
_LINE_KEYS["pbx"] = None
_SERVER_NET_KEYS = (
    "max_clients", "max_clients_per_address", "login_timeout", "handshake_timeout", "line_timeout",
    "login_free_failures", "login_backoff", "login_backoff_max", "login_forget_after",
)
_SERVER_KEYS.update(dict.fromkeys(_SERVER_NET_KEYS))
_CALLS_KEYS = {k: None for k in ("hangup_grace", "max_age", "linger", "state_file", "max_calls", "max_lines", "max_field_bytes")}
_TOP_KEYS = {k: None for k in ("ami", "server", "lines", "users", "calls", "plugins", "demo", "web", "metrics",
                                "cluster", "dial", "pbx", "demo_pbxs")}
#: A PBX's name: a metric label, a log word, a key of the call store.
_PBX_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}\Z")


def _section(r: _Reader, data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise r.fail(name, f"a table [{name}]", value)
    return value


def _ami(r: _Reader, d: Mapping[str, Any], p: str = "ami") -> AMIConfig:
    r.table(d, p, _AMI_KEYS)
    dflt = AMIConfig()
    host = r.string(d, p, "host", None, empty_ok=True) or None
    auth = r.string(d, p, "auth", dflt.auth)
    if auth not in ("md5", "plain"):
        raise r.fail(f"{p}.auth", "\"md5\" or \"plain\"", auth)
    return AMIConfig(
        host=host.strip() if host else None,
        port=r.integer(d, p, "port", dflt.port, 1, 65535),
        username=r.string(d, p, "username", dflt.username),
        secret=_secret(r, d, p, "secret", "secret_file", dflt.secret),
        auth=auth,
        keepalive=r.number(d, p, "keepalive", dflt.keepalive),
        pong_timeout=r.number(d, p, "pong_timeout", dflt.pong_timeout),
        action_timeout=r.number(d, p, "action_timeout", dflt.action_timeout),
        originate_timeout=r.number(d, p, "originate_timeout", dflt.originate_timeout),
    )


def _server(r: _Reader, d: Mapping[str, Any]) -> ServerConfig:
    p = "server"
    r.table(d, p, _SERVER_KEYS)
    dflt = ServerConfig()
    return ServerConfig(
        listen=r.endpoints(d, p, "listen", dflt.listen, non_empty=True, what="an endpoint string or a list of them"),
        max_line_bytes=r.integer(d, p, "max_line_bytes", dflt.max_line_bytes, 1024),
        send_buffer_bytes=r.integer(d, p, "send_buffer_bytes", dflt.send_buffer_bytes, 1024),
        replay_ring=r.integer(d, p, "replay_ring", dflt.replay_ring, 0),
        **_server_limits(r, d),
        **_client_limits(r, d, p, dflt),
    )


def _server_limits(r: _Reader, d: Mapping[str, Any]) -> dict[str, Any]:
    """The connection and login limits of [server] (see docs/security.md)."""
    p, dflt = "server", ServerConfig()
    out: dict[str, Any] = {}
    for key in _SERVER_NET_KEYS:
        default = getattr(dflt, key)
        if isinstance(default, int):
            out[key] = r.integer(d, p, key, default, 1)
        else:
            out[key] = r.number(d, p, key, default)
    return out


def _client_limits(r: _Reader, d: Mapping[str, Any], p: str, dflt: ServerConfig) -> dict[str, Any]:
    """The [server] keys that bound what one client can cost (docs/security.md)."""
    return {
        "replay_ring_bytes": r.integer(d, p, "replay_ring_bytes", dflt.replay_ring_bytes, 0),
        "max_lines_per_session": r.integer(d, p, "max_lines_per_session", dflt.max_lines_per_session, 1),
        "request_rate": r.get(d, p, "request_rate", dflt.request_rate, setting.number,
                               what="a number of requests per second"),
        "request_burst": r.integer(d, p, "request_burst", dflt.request_burst, 1),
        "user_request_rate": r.get(d, p, "user_request_rate", dflt.user_request_rate, setting.number,
                                    what="a number of requests per second"),
        "user_request_burst": r.integer(d, p, "user_request_burst", dflt.user_request_burst, 1),
    }


def _pbxs(r: _Reader, data: Mapping[str, Any]) -> dict[str, AMIConfig]:
    """``[pbx.NAME]`` tables, or ``[ami]`` as the one PBX named ``default``; never both."""
    tables = data.get("pbx")
    if tables is None:
        return {DEFAULT_PBX: _ami(r, _section(r, data, "ami"))}
    if "ami" in data:
        raise ConfigError(
            f"{r.source}: keys 'ami' and 'pbx': expected [ami] (one PBX) or [pbx.NAME] tables (several), not both;"
            " move [ami] into a [pbx.NAME] table")
    if not isinstance(tables, dict) or not tables:
        raise r.fail("pbx", "[pbx.NAME] tables, one per Asterisk (host, port, username, secret, ...)", tables)
    pbxs = {}
    for name, table in tables.items():
        p = f"pbx.{name}"
        if not _PBX_NAME.match(name):
            raise ConfigError(f"{r.source}: key '{p}': expected a PBX name of letters, digits, '-' and '_'"
                              " (at most 32, starting with a letter or digit)")
        if not isinstance(table, dict):
            raise r.fail(p, f"a table [pbx.{name}] with at least 'host'", table)
        pbxs[name] = _ami(r, table, p)
    return pbxs


def _line_pbxs(r: _Reader, lines: dict[str, LineConfig], pbxs: Mapping[str, AMIConfig]) -> None:
    """Each line's ``pbx`` names a configured PBX; device lines name theirs when there are several."""
    for name, line in lines.items():
        if line.pbx is not None and line.pbx not in pbxs:
            raise ConfigError(f"{r.source}: key 'lines.{name}.pbx': expected one of the configured PBXs"
                              f" ({', '.join(pbxs)}), got {line.pbx!r}")
        if line.pbx is None and line.device and len(pbxs) > 1:
            raise ConfigError(f"{r.source}: key 'lines.{name}.pbx': a device line needs its PBX when there are"
                              f" several; expected one of {', '.join(pbxs)}")


def _demo_pbxs(r: _Reader, data: Mapping[str, Any], pbxs: dict[str, AMIConfig],
               lines: dict[str, LineConfig], demo: bool) -> tuple[dict[str, AMIConfig], dict[str, LineConfig]]:
    """``demo_pbxs = N``: N demo PBXs (``pbx1`` ... ``pbxN``), each with its own demo lines
    unless ``[lines]`` are configured."""
    count = r.get(data, "", "demo_pbxs", 1, setting.integer, 1, MAX_DEMO_PBXS, text_ok="demo_pbxs" in r.cli)
    if count == 1:
        return pbxs, lines
    if not demo:
        raise ConfigError(f"{r.source}: key 'demo_pbxs': only for the demo PBX (demo = true or no AMI host);"
                          " real PBXs are [pbx.NAME] tables")
    if "pbx" in data:
        raise ConfigError(f"{r.source}: keys 'demo_pbxs' and 'pbx': expected one of them: [pbx.NAME] tables"
                          " name the demo PBXs themselves")
    first = next(iter(pbxs.values()))
    names = [f"pbx{n}" for n in range(1, count + 1)]
    return {name: first for name in names}, lines


def _lines(r: _Reader, d: Mapping[str, Any], dial: Mapping[str, Any]) -> dict[str, LineConfig]:
    lines = {}
    for name, table in d.items():
        p = f"lines.{name}"
        problem = line_name_problem(name)
        if problem:
            raise ConfigError(f"{r.source}: key '{p}': expected {problem}")
        if not isinstance(table, dict):
            raise r.fail(p, f"a table [lines.{name}] with at least 'channel'", table)
        r.table(table, p, _LINE_KEYS)
        device = _line_device(r, table, p)
        lines[name] = LineConfig(
            name=name,
            channel=r.string(table, p, "channel", device, required=device is None),
            context=r.string(table, p, "context", "default"),
            callerid=r.string(table, p, "callerid", None),
            device=device,
            dial=_dial_rule(r, _over(dial, _line_dial(r, table, p)), f"{p}.dial"),
            pbx=r.string(table, p, "pbx", None),
        )
    return lines


def _line_device(r: _Reader, table: Mapping[str, Any], p: str) -> str | None:
    """``device`` of a line: one phone endpoint (``PJSIP/201``), the channel its click-to-dial rings too.

    One line, one source: a device line is fed by the device's channel
    events, so its ``channel`` (if given) must be that same device.
    """
    from asttapi_server.core.device_lines import normalise_device

    device = r.string(table, p, "device", None)
    if device is None:
        return None
    key = normalise_device(device)
    if key is None:
        raise r.fail(f"{p}.device", "a device as Tech/resource, e.g. \"PJSIP/201\" or \"SIP/bob\"", device)
    channel = table.get("channel")
    if isinstance(channel, str) and normalise_device(channel) != key:
        raise ConfigError(
            f"{r.source}: key '{p}.channel': a device line rings its own device; expected "
            f"{device!r} or no 'channel', got {channel!r}"
        )
    return device.strip()


def _users(r: _Reader, d: Mapping[str, Any]) -> dict[str, UserConfig]:
    users = {}
    for name, table in d.items():
        p = f"users.{name}"
        if not isinstance(table, dict):
            raise r.fail(p, f"a table [users.{name}] with at least 'token'", table)
        r.table(table, p, _USER_KEYS)
        token = _secret(r, table, p, "token", "token_file", None, required=True)
        if len(token) < MIN_TOKEN_LENGTH:
            where = "token_file" if "token_file" in table else "token"
            raise ConfigError(
                f"{r.source}: key '{p}.{where}': expected a token of at least {MIN_TOKEN_LENGTH} characters "
                f"(e.g. from `openssl rand -base64 24`), got one of {len(token)}"
            )
        users[name] = UserConfig(
            name=name,
            token=token,
            lines=r.strings(
                table, p, "lines", ("*",),
                what="a list of line names or glob patterns, e.g. [\"line_1\", \"sales_*\"]",
            ),
        )
    return users


def _calls(r: _Reader, d: Mapping[str, Any]) -> CallsConfig:
    p = "calls"
    r.table(d, p, _CALLS_KEYS)
    dflt = CallsConfig()
    return CallsConfig(
        hangup_grace=r.number(d, p, "hangup_grace", dflt.hangup_grace, positive=False),
        max_age=r.number(d, p, "max_age", dflt.max_age),
        linger=r.number(d, p, "linger", dflt.linger, positive=False),
        state_file=_state_file(r, d),
        max_calls=r.integer(d, p, "max_calls", dflt.max_calls, 1),
        max_lines=r.integer(d, p, "max_lines", dflt.max_lines, 1, 10000),
        max_field_bytes=r.integer(d, p, "max_field_bytes", dflt.max_field_bytes, 32, 1 << 20),
    )


def _state_file(r: _Reader, d: Mapping[str, Any]) -> str | None:
    """``[calls] state_file``: None for the default (service.state_file_path), "" for none, else absolute."""
    path = r.string(d, "calls", "state_file", None, empty_ok=True)
    return r.resolve(path, "state") if path else path


def _plugins(r: _Reader, d: Mapping[str, Any]) -> PluginsConfig:
    p = "plugins"
    dflt = PluginsConfig()
    settings: dict[str, Mapping[str, Any]] = {}
    for key, value in d.items():
        if key in ("enabled", "lookup_timeout"):
            continue
        if not isinstance(value, dict):
            raise ConfigError(
                f"{r.source}: unknown key 'plugins.{key}' (expected 'enabled', "
                f"'lookup_timeout' or a [plugins.{key}] table of that plugin's settings)"
            )
        settings[key] = MappingProxyType(dict(value))
    return PluginsConfig(
        enabled=r.strings(d, p, "enabled", dflt.enabled,
                          what="a list of plugin names, e.g. [\"crm_sql\"]"),
        settings=MappingProxyType(settings),
        lookup_timeout=r.number(d, p, "lookup_timeout", dflt.lookup_timeout),
    )


_DIAL_KEYS = {k: None for k in (
    "region", "country_code", "national_prefix", "international_prefix", "outside", "area_code",
    "own_numbers", "domains",
)}
_DIAL_PREFIX = re.compile(r"[0-9*#]*")
_DOMAIN_NAME = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)*[A-Za-z][A-Za-z0-9-]*")


def _dial_keys(r: _Reader, d: Mapping[str, Any], p: str) -> dict[str, Any]:
    """The checked keys of one ``[dial]`` table (global or a line's), without defaults."""
    r.table(d, p, _DIAL_KEYS)
    out: dict[str, Any] = {}
    for key in ("region", "country_code", "national_prefix", "international_prefix", "outside", "area_code"):
        if key not in d:
            continue
        value = r.string(d, p, key, None, empty_ok=key != "region")
        if key == "region":
            value = _known_region(r, f"{p}.region", value)
        elif key == "country_code" and not re.fullmatch(r"[1-9][0-9]{0,2}", value):
            raise r.fail(f"{p}.country_code", "a country calling code of 1-3 digits, e.g. \"49\"", value)
        elif key == "area_code" and not re.fullmatch(r"[0-9]*", value):
            raise r.fail(f"{p}.area_code", "digits after the country code, without the trunk prefix, e.g. \"30\"", value)
        elif not _DIAL_PREFIX.fullmatch(value):
            raise r.fail(f"{p}.{key}", "a prefix of digits, '*' and '#' (\"\" for none)", value)
        out[key] = value
    if "own_numbers" in d:
        own = r.strings(d, p, "own_numbers", (), what="a list of global number prefixes, e.g. [\"+49 30 1234 5\"]")
        prefixes = []
        for item in own:
            digits = re.sub(r"[-.() ]", "", item)
            if not re.fullmatch(r"\+[1-9][0-9]+", digits):
                raise r.fail(f"{p}.own_numbers", "global number prefixes starting with '+', e.g. \"+49 30 1234 5\"", item)
            prefixes.append(digits)
        out["own_numbers"] = tuple(prefixes)
    if "domains" in d:
        domains = r.strings(d, p, "domains", (), what="a list of domain names, e.g. [\"pbx.example.com\"]",
                            check=lambda v: None if _DOMAIN_NAME.fullmatch(v.rstrip(".")) else "a domain name")
        out["domains"] = tuple(v.lower().rstrip(".") for v in domains)
    return out


#: Keys that say where a PBX is: a line naming its own country leaves the global ones behind.
_WHERE_KEYS = ("region", "country_code", "national_prefix", "international_prefix", "area_code")


def _over(global_keys: Mapping[str, Any], line_keys: Mapping[str, Any]) -> dict[str, Any]:
    """A line's dial keys laid over the global ones."""
    if "region" in line_keys or "country_code" in line_keys:
        global_keys = {k: v for k, v in global_keys.items() if k not in _WHERE_KEYS}
    return {**global_keys, **line_keys}


def _line_dial(r: _Reader, table: Mapping[str, Any], p: str) -> dict[str, Any]:
    value = table.get("dial", {})
    if not isinstance(value, dict):
        raise r.fail(f"{p}.dial", f"a table [{p}.dial] of dial rule keys", value)
    return _dial_keys(r, value, f"{p}.dial")


def _known_region(r: _Reader, key: str, value: str) -> str:
    import phonenumbers

    code = value.strip().upper()
    if code not in phonenumbers.SUPPORTED_REGIONS:
        raise r.fail(key, "an ISO country code libphonenumber knows, e.g. \"DE\" or \"GB\"", value)
    return code


def _dial_rule(r: _Reader, keys: Mapping[str, Any], p: str) -> DialRule | None:
    """The rule ``keys`` give (a line's keys laid over the global ones); None for no keys.

    ``region`` fills in the country code and the national and international
    prefixes from libphonenumber's metadata; keys given win over it.
    """
    if not keys:
        return None
    values = {k: v for k, v in keys.items() if k != "region"}
    region = keys.get("region")
    if region is not None:
        import phonenumbers

        meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
        values.setdefault("country_code", str(meta.country_code))
        values.setdefault("national_prefix", meta.national_prefix or "")
        if "international_prefix" not in values:
            # "8~10": dial 8, wait for a tone, dial 10; the PBX's trunk does the waiting.
            preferred = (meta.preferred_international_prefix or meta.international_prefix or "").replace("~", "")
            if not re.fullmatch(r"[0-9]+", preferred):
                raise r.fail(f"{p}.international_prefix",
                             f"a prefix: region {region} has several international prefixes, so name the one to dial",
                             )
            values["international_prefix"] = preferred
    if "country_code" not in values:
        raise ConfigError(f"{r.source}: key '{p}': expected 'region' (e.g. \"DE\") or 'country_code', "
                          "so numbers of the PBX's own country can be dialled in their national form")
    return DialRule(**values)


_WEB_KEYS = {k: None for k in ("listen", "allowed_origins", "frame_ancestors", "request_timeout", "idle_timeout",
                                "access_log")}
_ORIGIN = re.compile(r"^https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?$")


def _check_origin(origin: str) -> str | None:
    if _ORIGIN.match(origin):
        return None
    return "an origin such as 'https://crm.example.com' or 'http://localhost:3000' (scheme, host, optional port; no path)"


def _web(r: _Reader, d: Mapping[str, Any], demo: bool) -> WebConfig:
    p = "web"
    r.table(d, p, _WEB_KEYS)
    default = "listen" not in d and demo
    listen = r.endpoints(
        d, p, "listen", (DEMO_WEB_LISTEN,) if default else (),
        what="an endpoint string or a list of them (an empty list turns the web listener off)",
    )
    origins = r.strings(d, p, "allowed_origins", (), check=_check_origin,
                        what="a list of origins, e.g. [\"https://crm.example.com\"]")
    ancestors = r.strings(d, p, "frame_ancestors", (), check=_check_origin,
                          what="a list of origins that may show the page in a frame, e.g. [\"https://crm.example.com\"]")
    dflt = WebConfig()
    return WebConfig(
        listen=listen,
        allowed_origins=tuple(o.lower() for o in origins),
        frame_ancestors=tuple(o.lower() for o in ancestors),
        default_listen=default,
        request_timeout=r.number(d, p, "request_timeout", dflt.request_timeout),
        idle_timeout=r.number(d, p, "idle_timeout", dflt.idle_timeout),
        access_log=r.boolean(d, p, "access_log", dflt.access_log),
    )


_METRICS_KEYS = {k: None for k in ("enabled", "web", "listen")}


def _metrics(r: _Reader, d: Mapping[str, Any]) -> MetricsConfig:
    p = "metrics"
    r.table(d, p, _METRICS_KEYS)
    return MetricsConfig(
        enabled=r.boolean(d, p, "enabled", True),
        web=r.boolean(d, p, "web", True),
        listen=r.endpoints(d, p, "listen", (), what="an endpoint string or a list of them"),
    )


_CLUSTER_KEYS = {k: None for k in (
    "redis", "node", "username", "password_file", "sentinel_password_file", "tls_ca_file", "prefix", "lease_ttl",
    "lease_renew", "reply_timeout", "stream_max_len", "stream_max_age",
)}
_KEY_PREFIX = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _cluster(r: _Reader, d: Mapping[str, Any]) -> ClusterConfig | None:
    """``[cluster]``: the Redis URL (asttapi_server.cluster.address), this node's name, the lease timing."""
    from asttapi_server.cluster.address import parse_redis_url
    from asttapi_server.cluster.lease import LeaseMachine

    if not d:
        return None
    p = "cluster"
    r.table(d, p, _CLUSTER_KEYS)
    dflt = ClusterConfig(redis=None, node="")
    if "redis" not in d:
        raise ConfigError(f"{r.source}: key 'cluster.redis': expected a Redis URL such as "
                          f"'redis://127.0.0.1:6379/0', but it is missing")
    redis = r.get(d, p, "redis", None, parse_redis_url)
    node = r.string(d, p, "node", None, required=True)
    problem = line_name_problem(node)
    if problem:
        raise r.fail("cluster.node", f"a node name (named like lines: {problem})", node)
    tls_ca_file = r.string(d, p, "tls_ca_file", None)
    if tls_ca_file is not None:
        if not redis.tls:
            raise ConfigError(f"{r.source}: key 'cluster.tls_ca_file': only for rediss:// or sentinels:// URLs")
        if not os.access(tls_ca_file, os.R_OK):
            raise ConfigError(f"{r.source}: key 'cluster.tls_ca_file': cannot read {tls_ca_file!r}")
    prefix = r.string(d, p, "prefix", dflt.prefix)
    if not _KEY_PREFIX.fullmatch(prefix):
        raise r.fail("cluster.prefix", "letters, digits, _ . - (at most 64)", prefix)
    ttl = r.number(d, p, "lease_ttl", dflt.lease_ttl)
    renew = r.number(d, p, "lease_renew", dflt.lease_renew)
    try:
        LeaseMachine(ttl, renew)
    except ValueError:
        raise ConfigError(
            f"{r.source}: keys 'cluster.lease_ttl' and 'cluster.lease_renew': expected a renewal interval well"
            f" under the lease's life (e.g. lease_ttl = 2.0, lease_renew = 0.5), got {ttl} and {renew}") from None
    return ClusterConfig(
        redis=redis,
        node=node,
        username=r.string(d, p, "username", None),
        password=_secret(r, d, p, "password", "password_file", None) if "password_file" in d else None,
        sentinel_password=(_secret(r, d, p, "sentinel_password", "sentinel_password_file", None)
                           if "sentinel_password_file" in d else None),
        tls_ca_file=tls_ca_file,
        prefix=prefix,
        lease_ttl=ttl,
        lease_renew=renew,
        reply_timeout=r.number(d, p, "reply_timeout", dflt.reply_timeout),
        stream_max_len=r.integer(d, p, "stream_max_len", dflt.stream_max_len, 100),
        stream_max_age=r.number(d, p, "stream_max_age", dflt.stream_max_age),
    )


# ---------------------------------------------------------------- entry point


def _read_file(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: cannot read the configuration file: it does not exist") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration file: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid TOML: the file is not UTF-8 text") from None


def load_config(
    path: str | None, overrides: Mapping[str, Any] = _EMPTY, environ: Mapping[str, str] | None = None
) -> Config:
    """Read *path* (TOML; None for no file), apply *overrides*, check, return a Config.

    *overrides* maps dotted keys (``"ami.host"``, ``"ami.port"``,
    ``"server.listen"``, ``"demo"``, ...) to values; ``None`` values are
    ignored, every other value wins over the file. Values from the command
    line may be strings where the file needs a number (``"5038"``).

    The AMI secret may come from ``$ASTTAPI_AMI_SECRET`` (*environ*, default
    ``os.environ``): it wins over the file, the command line wins over it.

    Raises ConfigError with a one-line message on any problem.
    """
    data = _read_file(path) if path else {}
    env_secret = (os.environ if environ is None else environ).get(AMI_SECRET_ENV)
    ami_table = data.get("ami")
    if isinstance(ami_table, dict):
        if overrides.get("ami.secret") is not None:
            ami_table.pop("secret_file", None)  # the command line wins over the file
        elif env_secret:
            ami_table.pop("secret_file", None)
            ami_table["secret"] = env_secret
    elif env_secret and ami_table is None and "pbx" not in data and overrides.get("ami.secret") is None:
        data["ami"] = {"secret": env_secret}
    source = path or "configuration"
    cli: set[str] = set()
    for dotted, value in overrides.items():
        if value is None:
            continue
        top = dotted.split(".", 1)[0]
        if top not in _TOP_KEYS:
            raise ConfigError(f"command line: unknown setting '{dotted}'")
        _set_dotted(data, dotted, value)
        cli.add(dotted)
    r = _Reader(source, frozenset(cli), path, environ)

    r.table(data, "", _TOP_KEYS)
    pbxs = _pbxs(r, data)
    server = _server(r, _section(r, data, "server"))
    dial = _dial_keys(r, _section(r, data, "dial"), "dial")
    lines = _lines(r, _section(r, data, "lines"), dial)
    users = _users(r, _section(r, data, "users"))
    calls = _calls(r, _section(r, data, "calls"))
    plugins = _plugins(r, _section(r, data, "plugins"))
    demo = r.boolean(data, "", "demo", False)
    hostless = [name for name, pbx in pbxs.items() if pbx.host is None]
    if hostless and len(hostless) < len(pbxs) and not demo:
        # One PBX without a host must not turn a real office's server into the demo.
        raise ConfigError(f"{r.source}: key 'pbx.{hostless[0]}.host': expected the Asterisk's host name or"
                          " address (the other PBXs have one; demo = true runs demo PBXs instead)")
    demo = demo or bool(hostless)
    configured_lines = bool(lines)
    pbxs, lines = _demo_pbxs(r, data, pbxs, lines, demo)
    _line_pbxs(r, lines, pbxs)
    web = _web(r, _section(r, data, "web"), demo)
    metrics = _metrics(r, _section(r, data, "metrics"))
    cluster = _cluster(r, _section(r, data, "cluster"))

    for user in users.values():
        for pattern in user.lines:
            if not any(ch in pattern for ch in "*?[") and lines and pattern not in lines:
                raise ConfigError(
                    f"{source}: key 'users.{user.name}.lines': expected names of "
                    f"configured [lines] or glob patterns, got {pattern!r}"
                )
    global_dial = _dial_rule(r, dial, "dial")
    if demo and not configured_lines:
        lines = {name: replace(line, dial=global_dial) for name, line in demo_lines(list(pbxs)).items()}

    return Config(
        ami=next(iter(pbxs.values())),
        pbxs=MappingProxyType(pbxs),
        server=server,
        lines=MappingProxyType(lines),
        users=MappingProxyType(users),
        calls=calls,
        plugins=plugins,
        web=web,
        metrics=metrics,
        cluster=cluster,
        dial=global_dial,
        demo=demo,
        source=path,
    )
