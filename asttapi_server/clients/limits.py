"""Connection-level limits: how many clients, and how long a socket may do nothing useful.

A socket costs a file descriptor and some memory whether or not it ever
logs in, so an unauthenticated flood must run out of *its* budget before the
server runs out of descriptors: at most ``max_clients`` connections in all
and ``max_clients_per_address`` from one address (IPv6: one /64), a deadline
to log in (when the server requires login), to finish a TLS handshake, and
to finish a line once it has started (a slowloris trickling one byte at a
time never finishes one). :class:`ConnectionPolicy` is the bookkeeping, pure;
:class:`~asttapi_server.clients.protocol.ClientProtocol` arms the timers.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ConnectionLimits:
    """The ``[server]`` connection keys, with their defaults."""

    #: Connections at most, all addresses together; more are told so and closed.
    max_clients: int = 1000
    #: Connections at most from one source address (IPv6: one /64).
    max_clients_per_address: int = 50
    #: Seconds a connection may stay without a successful login (login required only).
    login_timeout: float = 10.0
    #: Seconds a TLS client has to finish its handshake.
    handshake_timeout: float = 10.0
    #: Seconds a started request line may take to end with a newline.
    line_timeout: float = 30.0


class ConnectionPolicy:
    """Counts open connections per address; says whether one more may stay."""

    def __init__(self, limits: ConnectionLimits = ConnectionLimits()) -> None:
        self.limits = limits
        self.total = 0
        self.per_address: dict[str, int] = {}
        self.refused = 0  # connections turned away, for logs and benchmarks

    def admit(self, address: str) -> str | None:
        """Count a new connection from ``address``; or why it may not stay (then it is not counted)."""
        limits = self.limits
        if self.total >= limits.max_clients:
            self.refused += 1
            return f"the server has its maximum of {limits.max_clients} clients (server.max_clients)"
        here = self.per_address.get(address, 0)
        if here >= limits.max_clients_per_address:
            self.refused += 1
            return (
                f"{limits.max_clients_per_address} connections from your address are open already "
                "(server.max_clients_per_address)"
            )
        self.total += 1
        self.per_address[address] = here + 1
        return None

    def release(self, address: str) -> None:
        """An admitted connection closed."""
        self.total -= 1
        left = self.per_address.get(address, 1) - 1
        if left > 0:
            self.per_address[address] = left
        else:
            self.per_address.pop(address, None)
