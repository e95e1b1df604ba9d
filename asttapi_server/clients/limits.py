"""Connection-level limits: one budget for every listener, and how long a socket may do nothing useful.

A socket costs a file descriptor and some memory whether or not it ever
logs in, so a flood must run out of *its* budget before the server runs out
of descriptors. :class:`ConnectionBudget` is that budget, one per server,
counted by every listener alike: the JSON-lines ports (TCP, TLS, unix), the
web port (each HTTP connection, and the WebSocket it may become) and the
``[metrics]`` port. The rule, in order:

1. At most ``max_clients_per_address`` connections from one address (IPv6:
   one /64), whatever the listener.
2. At most ``capacity`` connections in all: ``max_clients``, or fewer when
   the open-files limit (``RLIMIT_NOFILE``, read at start) leaves less room
   after :data:`FD_RESERVE` descriptors kept for the AMI link, the
   listeners, logs and plugins. So the process never meets ``EMFILE``.
3. The web port may fill at most ``capacity`` minus a tenth: the rest is
   kept for the JSON-lines and metrics ports, so a new login and a probe
   still get in while the web port is flooded.
4. When a limit of 2 or 3 is reached, a newcomer displaces the oldest
   *stranger* (a connection that has not logged in; every HTTP connection
   is one) of the address holding the most strangers there, if that address
   holds more of them than the newcomer's address; else it is refused.
   Logged-in clients are never displaced. A flood from many addresses thus
   churns among its own sockets and cannot keep a new address out.

Deadlines (:class:`ConnectionLimits`): to log in (or, without ``[users]``, to
send a first request), to finish a TLS handshake, and to finish a line once
it has started (a slowloris trickling one byte at a time never finishes
one); the HTTP deadlines are the web listener's (``asttapi_server.web.http``).
Pure: the adapters call :meth:`ConnectionBudget.admit` / ``release`` /
``promote`` and close what :meth:`~ConnectionBudget.admit` says to displace.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

#: File descriptors kept out of the budget: AMI link, listeners, logs, the call store, plugins.
FD_RESERVE = 64


@dataclass(frozen=True)
class ConnectionLimits:
    """The ``[server]`` connection keys, with their defaults."""

    #: Connections at most, all addresses and listeners together; more are told so and closed.
    max_clients: int = 1000
    #: Connections at most from one source address (IPv6: one /64), all listeners together.
    max_clients_per_address: int = 50
    #: Seconds a connection may stay without a successful login (without users: without a request).
    login_timeout: float = 10.0
    #: Seconds a TLS client has to finish its handshake.
    handshake_timeout: float = 10.0
    #: Seconds a started request line may take to end with a newline.
    line_timeout: float = 30.0


def fd_capacity(open_files: int, max_clients: int) -> int:
    """Connections that fit in ``open_files`` descriptors with :data:`FD_RESERVE` kept back (at most ``max_clients``).

    A small limit (a test's, a container's) keeps half of itself back instead.
    """
    if open_files < 0:  # unknown or unlimited
        return max_clients
    return max(1, min(max_clients, open_files - min(FD_RESERVE, open_files // 2)))


class Slot:
    """One admitted connection's place in the budget."""

    __slots__ = ("address", "web", "stranger", "displace", "held")

    def __init__(self, address: str, web: bool, displace: Callable[[], None]) -> None:
        self.address = address
        self.web = web
        self.stranger = True
        #: Called (once) when a newcomer takes this slot: the adapter closes its socket.
        self.displace = displace
        self.held = True


class _Strangers:
    """Strangers by address, oldest first, and the address holding the most of them."""

    __slots__ = ("by_address", "by_count", "top")

    def __init__(self) -> None:
        self.by_address: dict[str, list[Slot]] = {}
        self.by_count: dict[int, dict[str, None]] = {}  # n -> addresses holding n strangers, oldest first
        self.top = 0

    def count(self, address: str) -> int:
        slots = self.by_address.get(address)
        return len(slots) if slots else 0

    def _move(self, address: str, before: int, after: int) -> None:
        if before:
            bucket = self.by_count[before]
            del bucket[address]
            if not bucket:
                del self.by_count[before]
        if after:
            self.by_count.setdefault(after, {})[address] = None
            if after > self.top:
                self.top = after

    def add(self, slot: Slot) -> None:
        slots = self.by_address.setdefault(slot.address, [])
        slots.append(slot)
        self._move(slot.address, len(slots) - 1, len(slots))

    def remove(self, slot: Slot) -> None:
        slots = self.by_address.get(slot.address)
        if not slots or slot not in slots:
            return
        slots.remove(slot)
        self._move(slot.address, len(slots) + 1, len(slots))
        if not slots:
            del self.by_address[slot.address]

    def victim(self, newcomer: str) -> Slot | None:
        """The oldest stranger of the address with the most, if it has more than ``newcomer``'s address."""
        while self.top and self.top not in self.by_count:
            self.top -= 1
        if self.top <= self.count(newcomer):
            return None
        address = next(iter(self.by_count[self.top]))
        return self.by_address[address][0]


class ConnectionBudget:
    """Every connection of every listener, counted against one set of limits (see the module doc)."""

    def __init__(self, limits: ConnectionLimits = ConnectionLimits(), *, open_files: int = -1) -> None:
        self.limits = limits
        self.capacity = fd_capacity(open_files, limits.max_clients)
        self.total = 0
        self.web = 0
        self.per_address: dict[str, int] = {}
        self._strangers = _Strangers()
        self._web_strangers = _Strangers()
        self.refused = 0  # connections turned away, for logs and benchmarks
        self.displaced = 0  # strangers closed to make room for a newcomer

    def fit_open_files(self, open_files: int) -> None:
        """The open-files limit in force (read at start): the capacity shrinks to fit it."""
        self.capacity = fd_capacity(open_files, self.limits.max_clients)

    @property
    def web_capacity(self) -> int:
        """What the web port may fill: a tenth of the capacity is kept for the other listeners."""
        return max(1, self.capacity - max(1, self.capacity // 10)) if self.capacity > 1 else 1

    def admit(self, address: str, *, web: bool = False, displace: Callable[[], None] = lambda: None) -> Slot | str:
        """A slot for a new connection from ``address``, or the sentence saying why not.

        May displace strangers first (their ``displace`` is called).
        """
        limits = self.limits
        if self.per_address.get(address, 0) >= limits.max_clients_per_address:
            self.refused += 1
            return (f"{limits.max_clients_per_address} connections from your address are open already "
                    "(server.max_clients_per_address)")
        if web and self.web >= self.web_capacity and not self._make_room(self._web_strangers, address):
            self.refused += 1
            return f"the web listener has its maximum of {self.web_capacity} connections (server.max_clients)"
        if self.total >= self.capacity and not self._make_room(self._strangers, address):
            self.refused += 1
            return f"the server has its maximum of {self.capacity} clients (server.max_clients)"
        slot = Slot(address, web, displace)
        self.total += 1
        self.per_address[address] = self.per_address.get(address, 0) + 1
        self._strangers.add(slot)
        if web:
            self.web += 1
            self._web_strangers.add(slot)
        return slot

    def _make_room(self, strangers: _Strangers, address: str) -> bool:
        victim = strangers.victim(address)
        if victim is None:
            return False
        self.release(victim)
        self.displaced += 1
        victim.displace()
        return True

    def promote(self, slot: Slot) -> None:
        """The connection logged in (or, without users, made its first request): never displaced."""
        if slot.held and slot.stranger:
            slot.stranger = False
            self._strangers.remove(slot)
            self._web_strangers.remove(slot)

    def release(self, slot: Slot) -> None:
        """The connection closed (or was displaced); a second call is a no-op."""
        if not slot.held:
            return
        slot.held = False
        if slot.stranger:
            self._strangers.remove(slot)
            self._web_strangers.remove(slot)
        self.total -= 1
        if slot.web:
            self.web -= 1
        left = self.per_address.get(slot.address, 1) - 1
        if left > 0:
            self.per_address[slot.address] = left
        else:
            self.per_address.pop(slot.address, None)
