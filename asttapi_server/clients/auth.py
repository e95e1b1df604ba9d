"""Who may connect and which lines they may open.

Users come from the config's ``[users.NAME]`` tables (``token``, ``lines``
glob patterns). Tokens are compared in constant time and never logged or put
in an exception. With no users configured nobody logs in, every line may be
opened, and :func:`check_listen_security` refuses any listen endpoint that is
not loopback-only.

Failed logins are limited per user *and* source address (:class:`LoginGuard`,
pure: the caller passes ``now``): after a few free failures every further
attempt of that user from that address must wait twice as long as the last,
up to a cap, and is refused without looking at the token until then. Nobody
else can make a user wait: a right token from an address that has no failures
for that user is always checked. Guessing is slowed all the same: once an
address, or a user, has used up its free failures (across users, or across
addresses), every pair it touches waits from its first failure on, and
invented user names wait per address. The log gets at most one line per
address per minute about them (:class:`LoginGate`).
"""

from __future__ import annotations

import hmac
import ipaddress
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import lru_cache
from typing import Any

from twisted.logger import Logger

from asttapi_server.errors import ConfigError
from asttapi_server.throttle import LogThrottle


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
        self.replace(users)

    def replace(self, users: Mapping[str, Any]) -> None:
        """Take a new set of users (a configuration reload); sessions keep their own ``User`` until re-checked."""
        new: dict[str, tuple[bytes, User]] = {}
        for name, cfg in users.items():
            token = cfg["token"] if isinstance(cfg, Mapping) else cfg.token
            lines = cfg.get("lines", ("*",)) if isinstance(cfg, Mapping) else cfg.lines
            new[name] = (token.encode("utf-8"), User(name, tuple(lines)))
        self._users = new

    def user(self, username: str) -> User | None:
        """The configured user of that name (no token check), or None."""
        entry = self._users.get(username)
        return entry[1] if entry is not None else None

    @property
    def login_required(self) -> bool:
        return bool(self._users)

    def authenticate(self, username: str, token: str) -> User | None:
        """The user if ``token`` is right, else ``None``.

        Compares in constant time; an unknown username costs the same
        comparison, so timing does not reveal which names exist.
        """
        entry = self._users.get(username)
        # surrogatepass: a lone surrogate ("\\ud800") is a wrong token, not a crash;
        # configured tokens come from TOML, which cannot hold one, so it never matches.
        given = token.encode("utf-8", "surrogatepass")
        if entry is None:
            hmac.compare_digest(given, b"\0" * max(len(given), 1))
            return None
        expected, user = entry
        if hmac.compare_digest(given, expected):
            return user
        return None

    def knows(self, username: str) -> bool:
        """True if ``username`` is configured (only those get a per-user failure count)."""
        return username in self._users


# -- failed logins ----------------------------------------------------------------


@dataclass(frozen=True)
class LoginLimits:
    """How failed logins are slowed down (``[server]`` ``login_*`` keys)."""

    #: Failures (per user and address; per address across users; per user across
    #: addresses) before any waiting is imposed.
    free_failures: int = 5
    #: Seconds to wait after the first failure past the free ones; doubles each time.
    backoff: float = 1.0
    #: The longest wait, in seconds.
    backoff_max: float = 300.0
    #: Seconds without a failure after which a user, an address or a pair starts afresh.
    forget_after: float = 900.0
    #: Pairs, addresses and users remembered at most (oldest forgotten first).
    max_tracked: int = 100_000


@lru_cache(maxsize=4096)
def address_key(host: str) -> str:
    """The bucket a source address counts in: the host, or its /64 for IPv6.

    One IPv6 customer usually holds a whole /64, so counting single addresses
    would let them rotate through 2**64 fresh budgets. Cached: every accepted
    connection asks, and parsing an address costs more than refusing it.
    """
    try:
        ip = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return host  # a unix socket ("unix") or something odd: one bucket
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


# Record fields: failures, time of the last failure, refused until.
_COUNT, _LAST, _UNTIL = 0, 1, 2


class LoginGuard:
    """Counts failed logins; says who must wait, and how long.

    Three counts, one rule each:

    * **user and address** (a pair, configured users only): the one that makes
      anybody wait. After ``free_failures`` failures of that user from that
      address, attempts of that pair are refused unchecked for a doubling
      wait. Only the user, or someone at the user's own address guessing the
      user's token, can fail a pair; a right token clears it.
    * **address** (across every user name tried from it): a user name that is
      not configured is refused unchecked while its address waits, so
      inventing names costs a guesser the same as one user's pair does, and
      costs the server no memory.
    * **user** (across addresses): never refuses anybody by itself.

    A guesser who has used up the free failures of an address (across users)
    or of a user (across addresses) gets none for a new pair: its first
    failure already imposes the wait, so each further address or user name
    buys one checked guess, then doubling waits. A right token from a pair
    with no failures is always checked, whatever the address or the user has
    seen: a stranger or a colleague behind the same NAT cannot keep a user out.

    Pure bookkeeping: every method takes ``now``.
    """

    def __init__(self, limits: LoginLimits = LoginLimits()) -> None:
        self.limits = limits
        # key -> [failures, time of the last failure, refused until]; insertion
        # order is recency (re-inserted on every failure), so eviction is O(1).
        # Keys: ("pair", user, address), ("addr", address), ("user", user).
        self._records: dict[tuple[str, ...], list[float]] = {}

    def _live(self, key: tuple[str, ...], now: float) -> list[float] | None:
        rec = self._records.get(key)
        if rec is not None and now - rec[_LAST] >= self.limits.forget_after:
            return None
        return rec

    def _gate(self, address: str, user: str | None) -> tuple[str, ...]:
        """The record whose wait refuses this attempt: the pair's, or (invented names) the address's."""
        return ("pair", user, address) if user is not None else ("addr", address)

    def retry_after(self, address: str, user: str | None, now: float) -> float | None:
        """Seconds until an attempt from ``address`` as ``user`` (None: a name that is not
        configured) is looked at, or None (now)."""
        rec = self._live(self._gate(address, user), now)
        wait = rec[_UNTIL] - now if rec is not None else 0.0
        return wait if wait > 0 else None

    def failed(self, address: str, user: str | None, now: float) -> float | None:
        """Record a failure; the wait it imposes on this user and address (or, for an
        invented name, this address) from now on, or None."""
        limits = self.limits
        addr = self._bump(("addr", address), now)
        if user is None:
            return self._wait(addr, limits.free_failures, now)
        pair = self._bump(("pair", user, address), now)
        counts = (self._bump(("user", user), now)[_COUNT], addr[_COUNT])
        # Has the address (across users) or the user (across addresses) used up its
        # free failures on other pairs? Then this pair gets none.
        hot = max(counts) - pair[_COUNT] >= limits.free_failures
        return self._wait(pair, 1 if hot else limits.free_failures, now)

    def _bump(self, key: tuple[str, ...], now: float) -> list[float]:
        rec = self._live(key, now)
        self._records.pop(key, None)
        if rec is None:
            rec = [0, now, now]
        rec[_COUNT] += 1
        rec[_LAST] = now
        self._records[key] = rec
        while len(self._records) > self.limits.max_tracked:
            del self._records[next(iter(self._records))]
        return rec

    def _wait(self, rec: list[float], free: int, now: float) -> float | None:
        """Set the record's wait after its failure number rec[0] (``free`` of them cost none)."""
        past = int(rec[_COUNT]) - free
        if past < 0:
            return None
        delay = min(self.limits.backoff_max, self.limits.backoff * 2.0 ** min(past, 64))
        rec[_UNTIL] = now + delay
        return delay

    def failures(self, address: str, user: str | None = None) -> int:
        """Failures counted for the address across users (or, given, the user across
        addresses): for logs and tests."""
        rec = self._records.get(("user", user) if user is not None else ("addr", address))
        return int(rec[_COUNT]) if rec else 0

    def pair_failures(self, address: str, user: str) -> int:
        """Failures of ``user`` from ``address`` since the last right token (or since they were forgotten)."""
        rec = self._records.get(("pair", user, address))
        return int(rec[_COUNT]) if rec else 0

    def succeeded(self, address: str, user: str) -> None:
        """A right token: this user's slate at this address is clean, and its failures
        (typos, as it turns out) no longer count against the address or the user."""
        pair = self._records.pop(("pair", user, address), None)
        if pair is None:
            return
        for key in (("addr", address), ("user", user)):
            rec = self._records.get(key)
            if rec is not None:
                rec[_COUNT] = max(0, rec[_COUNT] - pair[_COUNT])

    def __len__(self) -> int:
        return len(self._records)


def shown(text: str, limit: int = 64) -> str:
    """A client string as it may appear in a log line: ASCII-escaped, quoted, cut."""
    cut = text[:limit]
    return ascii(cut) + ("..." if len(text) > limit else "")


class LoginGate:
    """Authenticator + LoginGuard + a throttled log: what a ``login`` request meets.

    ``attempt`` answers ``(user, None)`` on success, ``(None, None)`` for a
    wrong user or token and ``(None, seconds)`` when this user at this address
    (or, for a name that is not configured, this address) must wait
    (:class:`LoginGuard`); while waiting the token is not looked at. Logs at most one line per
    address per ``log_interval`` seconds, with the count held back; never the
    token.
    """

    log = Logger()

    def __init__(self, authenticator: "Authenticator", clock: Any, limits: LoginLimits = LoginLimits(),
                 log_interval: float = 60.0) -> None:
        self.auth = authenticator
        self.clock = clock
        self.guard = LoginGuard(limits)
        self.throttle = LogThrottle(interval=log_interval, max_keys=4096)
        # Many addresses (a botnet) each get their line a minute; past
        # max_lines_per_interval lines in one interval the rest are only counted.
        self.log_interval = log_interval
        self.max_lines_per_interval = 60
        self._window_start = float("-inf")
        self._window_lines = 0
        self._window_held = 0

    def attempt(self, username: str, token: str, host: str) -> tuple[User | None, float | None]:
        now = self.clock.seconds()
        address = address_key(host)
        known = username if self.auth.knows(username) else None
        wait = self.guard.retry_after(address, known, now)
        if wait is not None:
            self._log(address, username, now, refused=True, wait=wait)
            return None, math.ceil(wait)
        user = self.auth.authenticate(username, token)
        if user is not None:
            self.guard.succeeded(address, username)
            return user, None
        wait = self.guard.failed(address, known, now)
        self._log(address, username, now, refused=False, wait=wait)
        return None, None

    def _log(self, address: str, username: str, now: float, *, refused: bool, wait: float | None) -> None:
        held = self.throttle.allow(address, now)
        if held is None:
            return
        if now - self._window_start >= self.log_interval:
            if self._window_held:
                self.log.warn("{held} more failed-login lines held back in the last {interval:g} s "
                              "(failures from too many addresses)", held=self._window_held,
                              interval=self.log_interval)
            self._window_start, self._window_lines, self._window_held = now, 0, 0
        if self._window_lines >= self.max_lines_per_interval:
            self._window_held += 1
            return
        self._window_lines += 1
        if refused:
            what = f"login refused without checking (too many failures; {math.ceil(wait or 0)} s to wait)"
        else:
            what = "login failed: unknown user or wrong token"
            if wait is not None:
                what += f"; further attempts wait {math.ceil(wait)} s"
        self.log.warn(
            "{what}, user {user} from {address} ({failures} failures counted; "
            "{held} such lines held back since the last)",
            what=what,
            user=shown(username),
            address=address,
            failures=self.guard.failures(address),
            held=held,
        )


# -- listen endpoints -----------------------------------------------------------


def endpoint_segments(description: str) -> list[str]:
    """A Twisted endpoint string cut at its colons, escapes kept (``\\:`` is a colon inside a segment)."""
    parts: list[str] = []
    cur = []
    it = iter(description)
    for ch in it:
        if ch == "\\":
            cur.append(ch + next(it, ""))
        elif ch == ":":
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def unescape_segment(segment: str) -> str:
    return re.sub(r"\\(.)", r"\1", segment)


def _split_endpoint(description: str) -> tuple[str, list[str], dict[str, str]]:
    """Split a Twisted endpoint string (``\\:`` escapes a colon)."""
    parts = [unescape_segment(p) for p in endpoint_segments(description)]
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
    # What a stranger on another machine would get: calls on a client listener; on a
    # metrics listener counts and state, which a server without users keeps on this machine.
    exposed = ("anyone could watch and place calls" if key != "metrics.listen" else
               "anyone could read its metrics and readiness, which a server without users shows "
               "only on this machine")
    for endpoint in endpoints:
        if not is_loopback_endpoint(endpoint):
            raise ConfigError(
                f"{key}: {endpoint!r} accepts connections from other machines, "
                f"but no [users.NAME] are configured, so {exposed}; "
                "add users with tokens, or listen on interface=127.0.0.1 only"
            )
