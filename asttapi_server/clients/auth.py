"""Who may connect and which lines they may open.

Users come from the config's ``[users.NAME]`` tables (``token``, ``lines``
glob patterns). Tokens are compared in constant time and never logged or put
in an exception. With no users configured nobody logs in, every line may be
opened, and :func:`check_listen_security` refuses any listen endpoint that is
not loopback-only.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from asttapi_server.errors import ConfigError


@dataclass(frozen=True)
class User:
    """A logged-in (or, without users configured, anonymous) client identity."""

    name: str | None
    lines: tuple[str, ...]

    def may_open(self, line: str) -> bool:
        """True if one of the user's patterns matches ``line`` (case-sensitive glob)."""
        return any(fnmatchcase(line, pattern) for pattern in self.lines)

    def __repr__(self) -> str:  # never any secret in here
        return f"User({self.name!r})"


#: The identity of every client when no users are configured.
ANONYMOUS = User(None, ("*",))


class Authenticator:
    """Checks ``login`` against the configured users.

    ``users`` maps a name to anything with ``token`` and ``lines`` attributes
    (``config.UserConfig``) or to a ``{"token": ..., "lines": [...]}`` mapping.
    """

    def __init__(self, users: Mapping[str, Any]) -> None:
        self._users: dict[str, tuple[bytes, User]] = {}
        for name, cfg in users.items():
            token = cfg["token"] if isinstance(cfg, Mapping) else cfg.token
            lines = cfg.get("lines", ("*",)) if isinstance(cfg, Mapping) else cfg.lines
            self._users[name] = (token.encode("utf-8"), User(name, tuple(lines)))

    @property
    def login_required(self) -> bool:
        return bool(self._users)

    def authenticate(self, username: str, token: str) -> User | None:
        """The user if ``token`` is right, else ``None``.

        Compares in constant time; an unknown username costs the same
        comparison, so timing does not reveal which names exist.
        """
        entry = self._users.get(username)
        given = token.encode("utf-8")
        if entry is None:
            hmac.compare_digest(given, b"\0" * max(len(given), 1))
            return None
        expected, user = entry
        if hmac.compare_digest(given, expected):
            return user
        return None


# -- listen endpoints -----------------------------------------------------------


def _split_endpoint(description: str) -> tuple[str, list[str], dict[str, str]]:
    """Split a Twisted endpoint string (``\\:`` escapes a colon)."""
    parts: list[str] = []
    cur = []
    it = iter(description)
    for ch in it:
        if ch == "\\":
            cur.append(next(it, ""))
        elif ch == ":":
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    kind = parts[0].strip().lower()
    args: list[str] = []
    kwargs: dict[str, str] = {}
    for p in parts[1:]:
        key, eq, value = p.partition("=")
        if eq:
            kwargs[key.strip()] = value.strip()
        else:
            args.append(p.strip())
    return kind, args, kwargs


def is_loopback_endpoint(description: str) -> bool:
    """True if a server endpoint string listens on loopback only.

    ``tcp``, ``tcp6``, ``ssl`` and ``tls`` endpoints are loopback when their
    ``interface`` is a loopback address or ``localhost``; no interface means
    every interface. ``unix:`` sockets are local by nature. Anything else
    (systemd sockets, plugins) is treated as not loopback.
    """
    kind, _args, kwargs = _split_endpoint(description)
    if kind == "unix":
        return True
    if kind not in ("tcp", "tcp6", "ssl", "tls"):
        return False
    interface = kwargs.get("interface", "").strip("[]")
    if not interface:
        return False
    if interface == "localhost":
        return True
    try:
        return ipaddress.ip_address(interface).is_loopback
    except ValueError:
        return False


def check_listen_security(endpoints: Iterable[str], users: Mapping[str, Any], key: str = "server.listen") -> None:
    """Refuse to serve clients without login anywhere but loopback.

    The service calls this at start-up with ``config.server.listen`` and
    ``config.users`` (and with ``web.listen``, ``key`` naming it); raises
    :class:`ConfigError` naming the endpoint.
    """
    if users:
        return
    for endpoint in endpoints:
        if not is_loopback_endpoint(endpoint):
            raise ConfigError(
                f"{key}: {endpoint!r} accepts connections from other machines, "
                "but no [users.NAME] are configured, so anyone could watch and place calls; "
                "add users with tokens, or listen on interface=127.0.0.1 only"
            )
