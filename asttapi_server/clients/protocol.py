"""The Twisted side of the client protocol: framing, limits, backpressure.

:class:`ClientProtocol` splits bytes into lines (``\\n``, optionally
``\\r\\n``), hands each to :mod:`codec` and its :class:`Session`, and writes
what the session sends. It registers itself as a streaming producer with its
transport, so the transport tells it (``pauseProducing``) when the kernel
socket buffer and the transport's own buffer are full; from then on lines are
queued here and counted, and a client whose queue passes
``send_buffer_bytes`` is disconnected with a logged reason. Nobody else waits
for it: the hub's ``send`` only appends to a queue.

Connection limits and deadlines (:mod:`limits`: clients in total and per
address, login, TLS handshake and unfinished-line timeouts) live in the
``_admit``/``_arm_deadlines``/``_partial_*`` methods below.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IHandshakeListener, INegotiated, IPushProducer, IReactorTime
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.logger import Logger
from zope.interface import implementer

from asttapi_server.clients import codec
from asttapi_server.clients.auth import Authenticator, LoginGate, LoginLimits, address_key
from asttapi_server.clients.codec import Batch, Reject
from asttapi_server.clients.hub import Hub
from asttapi_server.clients.limits import ConnectionLimits, ConnectionPolicy
from asttapi_server.clients.ratelimit import TokenBucket
from asttapi_server.clients.session import MAX_LINES_PER_SESSION, Session, Telephony
from asttapi_server.names import log_text
from asttapi_server.throttle import LogThrottle


@implementer(IPushProducer, IHandshakeListener)
class ClientProtocol(Protocol):
    """One client connection."""

    log = Logger()
    factory: "ClientFactory"

    def __init__(self) -> None:
        self._buffer = b""
        self._queue: deque[bytes] = deque()
        self.queued = 0  # bytes waiting here because the transport is full
        self.paused = False
        self.closing = False
        self._errors: deque[float] = deque()
        self._abort_call: IDelayedCall | None = None
        self.session: Session | None = None
        self.peer = "?"
        self.address = "?"  # the bucket connection and login limits count in
        self._admitted = False
        self._deadlines: list[IDelayedCall] = []  # login / handshake timers
        self._handshake_call: IDelayedCall | None = None
        self._partial_since: float | None = None  # when the unfinished line began
        self._partial_call: IDelayedCall | None = None
        self._bucket: TokenBucket | None = None
        self._limited: deque[float] = deque()
        self._held: IDelayedCall | None = None  # reading paused by the request rate

    # -- connection ------------------------------------------------------

    def connectionMade(self) -> None:
        f = self.factory
        peer = self.transport.getPeer()
        self.peer = f"{getattr(peer, 'host', peer)}:{getattr(peer, 'port', '')}"
        host = getattr(peer, "host", None) or "unix"
        if not self._admit(host):
            return
        self.session = Session(
            f.hub,
            f.telephony,
            f.authenticator,
            send=self.send,
            client_error=self._client_error,
            close=self._closed_by_session,
            peer=self.peer,
            login=lambda username, token: f.login_gate.attempt(username, token, host),
            max_lines=f.max_lines_per_session,
            now=f.clock.seconds,
            refusals=f.log_throttle,
        )
        f.connections.add(self)
        self.transport.registerProducer(self, True)
        self._arm_deadlines()
        self.send(self.session.hello())

    def connectionLost(self, reason: Any = None) -> None:
        self.closing = True
        if self.session is not None:
            self.session.close()
        self.factory.connections.discard(self)
        self._disarm()
        self._queue.clear()
        self.queued = 0
        self._buffer = b""
        if self._abort_call is not None and self._abort_call.active():
            self._abort_call.cancel()
        self._abort_call = None
        if self._held is not None and self._held.active():
            self._held.cancel()
        self._held = None

    # -- input -------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self.closing:
            return
        limit = self.factory.max_line_bytes
        buf = self._buffer + data if self._buffer else data
        if self._held is not None:
            self._hold(buf)
            return
        start = 0
        while not self.closing:
            end = buf.find(b"\n", start)
            if end < 0:
                break
            line = buf[start:end]
            start = end + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            if len(line) > limit:
                self._line_too_long(limit)
                return
            self._line(line)
            if self._held is not None:  # over the request rate: the rest waits
                self._hold(buf[start:])
                return
        if self.closing:
            self._buffer = b""
            return
        rest = buf[start:]
        if len(rest) > limit + 1:  # + 1: the '\r' of a '\r\n' still to come
            self._line_too_long(limit)
            return
        if not rest:
            self._partial_since = None
        elif start or self._partial_since is None:
            self._partial_begun()
        self._buffer = rest

    def _line(self, line: bytes) -> None:
        try:
            self._request(line)
        except Exception as e:
            self._internal_error(e)

    def _internal_error(self, e: Exception) -> None:
        """A bug reached by a client line: answer -32603, log it (throttled), keep the connection."""
        f = self.factory
        held = f.log_throttle.allow(("internal", type(e)), f.clock.seconds())
        if held is not None:
            self.log.failure(
                "a line from {peer} ({user}) failed ({held} more like it since the last report)",
                peer=log_text(self.peer),
                user=log_text(self.session.username if self.session else "?"),
                held=held,
            )
        if not self.closing:
            self.send(codec.encode_error(None, codec.INTERNAL_ERROR, "Internal error; the server log has the details"))

    def _request(self, line: bytes) -> None:
        assert self.session is not None
        msg = codec.decode_line(line)
        if msg is None:
            return
        if not self._within_rate(msg):
            return
        if isinstance(msg, Reject):
            self._client_error()
            self.send(codec.encode_error(msg.id, msg.code, msg.message))
            return
        if isinstance(msg, Batch):
            self.session.handle_batch(msg)
            return
        self.session.handle(msg)

    def _within_rate(self, msg: codec.Request | Reject | Batch) -> bool:
        """Spend a token of ``server.request_rate``; over it, answer -32003 instead.

        Errors cost the reactor as much as answers, so every line counts; a
        batch costs a token per request in it, and is refused whole (one
        -32003, ``id`` null) when the tokens left do not cover it.
        After a refusal the connection is not read until the next token is
        due, so a flood waits in the client's socket instead of costing the
        reactor a refusal per line. A client that keeps sending regardless
        (more than ``request_burst`` refused lines within ``error_window``
        seconds) is disconnected.
        """
        f = self.factory
        now = f.clock.seconds()
        bucket = self._bucket
        if bucket is None:
            bucket = self._bucket = TokenBucket(f.request_rate, f.request_burst, now)
        cost = len(msg.items) if isinstance(msg, Batch) else 1
        if all(bucket.take(now) for _ in range(cost)):
            return True
        limited = self._limited
        limited.append(now)
        while limited and limited[0] <= now - f.error_window:
            limited.popleft()
        if len(limited) > f.request_burst:
            self._flooding()
            return False
        self._pause_reading(bucket.wait(now))
        if isinstance(msg, codec.Request) and msg.notification:
            return False
        if isinstance(msg, Batch) and all(isinstance(m, codec.Request) and m.notification for m in msg.items):
            return False  # notifications only: no answer, as for one
        self.send(
            codec.encode_error(
                None if isinstance(msg, Batch) else msg.id,
                codec.RATE_LIMITED,
                f"Too many requests: at most {f.request_rate:g} per second (bursts of {f.request_burst:g});"
                " slow down and retry",
                {"retry_after": round(1.0 / f.request_rate, 3)},
            )
        )
        return False

    def _hold(self, backlog: bytes) -> None:
        """Keep unread lines while reading is paused; a backlog past what a
        paused transport can deliver (it stops reading) is a flood."""
        f = self.factory
        if len(backlog) > f.max_line_bytes + (1 << 16):
            self._flooding()
            return
        self._buffer = backlog

    def _pause_reading(self, delay: float) -> None:
        """Over the rate: read nothing until the next token; TCP holds the client's excess."""
        if self._held is None and not self.closing:
            self.transport.pauseProducing()
            self._held = self.factory.clock.callLater(delay, self._resume_reading)

    def _resume_reading(self) -> None:
        self._held = None
        if self.closing:
            return
        self.transport.resumeProducing()
        self.dataReceived(b"")

    def _flooding(self) -> None:
        f = self.factory
        f.log_limited(
            "flooding", self.address,
            "closing {peer} ({user}): it kept sending over server.request_rate = {rate}/s"
            " ({n} requests refused in {window} seconds)",
            peer=log_text(self.peer),
            user=log_text(self.session.username if self.session else "?"),
            rate=f.request_rate,
            n=len(self._limited),
            window=f.error_window,
        )
        self._buffer = b""
        f.cut_off("rate_limit")
        self.close_with_error(
            codec.CONNECTION_CLOSING,
            f"More than {f.request_burst} requests over the rate limit in {f.error_window:g} seconds;"
            " closing the connection",
        )

    def _line_too_long(self, limit: int) -> None:
        self.factory.log_limited(
            "long-line", self.address,
            "closing {peer} ({user}): a line is longer than {limit} bytes",
            peer=log_text(self.peer),
            user=log_text(self.session.username if self.session else "?"),
            limit=limit,
        )
        if not self.closing:
            self.factory.cut_off("oversize")
        self.close_with_error(
            codec.CONNECTION_CLOSING, f"Line longer than {limit} bytes; closing the connection"
        )

    def _client_error(self) -> None:
        f = self.factory
        now = f.clock.seconds()
        errors = self._errors
        errors.append(now)
        while errors and errors[0] <= now - f.error_window:
            errors.popleft()
        if len(errors) > f.error_limit and not self.closing:
            # Throttled per address: a stranger can be closed and reconnect at once.
            f.log_limited(
                "errors", self.address,
                "closing {peer} ({user}): more than {n} errors in {window} seconds",
                peer=log_text(self.peer),
                user=log_text(self.session.username if self.session else "?"),
                n=f.error_limit,
                window=f.error_window,
            )
            f.cut_off("errors")
            self.close_with_error(
                codec.CONNECTION_CLOSING,
                f"More than {f.error_limit} errors in {f.error_window:g} seconds; closing the connection",
            )

    # -- connection limits and deadlines ---------------------------------------

    def _admit(self, host: str) -> bool:
        """Count this connection against server.max_clients(_per_address), or turn it away."""
        f = self.factory
        self.address = address_key(host)
        refusal = f.policy.admit(self.address)
        if refusal is None:
            self._admitted = True
            return True
        f.log_limited("refused", self.address, "refused a connection from {address}: {reason}",
                      address=self.address, reason=refusal)
        f.cut_off("refused")
        self.closing = True
        self.transport.write(codec.encode_error(None, codec.CONNECTION_CLOSING, f"Connection refused: {refusal}; try again later"))
        self.transport.loseConnection()
        self._abort_call = f.clock.callLater(f.close_timeout, self._abort)
        return False

    def _arm_deadlines(self) -> None:
        f = self.factory
        clock = f.clock
        if INegotiated.providedBy(self.transport):  # TLS: the handshake is still to come
            self._handshake_call = clock.callLater(f.limits.handshake_timeout, self._handshake_timed_out)
            self._deadlines.append(self._handshake_call)
        if f.authenticator.login_required:
            self._deadlines.append(clock.callLater(f.limits.login_timeout, self._login_timed_out))

    def _disarm(self) -> None:
        self._stop_timers()
        if self._admitted:
            self._admitted = False
            self.factory.policy.release(self.address)

    def _stop_timers(self) -> None:
        """Closing: no deadline matters any more (close_timeout takes over)."""
        for call in self._deadlines:
            if call.active():
                call.cancel()
        self._deadlines.clear()
        if self._partial_call is not None and self._partial_call.active():
            self._partial_call.cancel()
        self._partial_call = None

    def handshakeCompleted(self) -> None:
        """IHandshakeListener: the TLS handshake is done in time."""
        if self._handshake_call is not None and self._handshake_call.active():
            self._handshake_call.cancel()

    def _handshake_timed_out(self) -> None:
        f = self.factory
        f.log_limited("handshake", self.address,
                      "closing {peer}: no TLS handshake within {timeout} s (server.handshake_timeout)",
                      peer=self.peer, timeout=f.limits.handshake_timeout)
        f.cut_off("handshake_timeout")
        self.closing = True
        self.transport.abortConnection()  # nothing can be said to it in the clear

    def _login_timed_out(self) -> None:
        f = self.factory
        if self.closing or self.session is None or self.session.user is not None:
            return
        f.log_limited("login", self.address,
                      "closing {peer}: no login within {timeout} s (server.login_timeout)",
                      peer=self.peer, timeout=f.limits.login_timeout)
        f.cut_off("login_timeout")
        self.close_with_error(
            codec.AUTH_ERROR, f"No login within {f.limits.login_timeout:g} seconds; closing the connection"
        )

    def _partial_begun(self) -> None:
        """A line has begun and not ended; it must end within server.line_timeout."""
        f = self.factory
        self._partial_since = f.clock.seconds()
        if self._partial_call is None:
            self._partial_call = f.clock.callLater(f.limits.line_timeout, self._partial_check)

    def _partial_check(self) -> None:
        # One timer per connection, re-armed lazily: cheaper than cancelling
        # and re-creating one for every chunk that ends mid-line.
        self._partial_call = None
        if self.closing or self._partial_since is None:
            return
        f = self.factory
        left = self._partial_since + f.limits.line_timeout - f.clock.seconds()
        if left > 0:
            self._partial_call = f.clock.callLater(left, self._partial_check)
            return
        f.log_limited("line", self.address,
                      "closing {peer} ({user}): a line did not end within {timeout} s (server.line_timeout)",
                      peer=self.peer, user=self.session.username if self.session else "?",
                      timeout=f.limits.line_timeout)
        self._buffer = b""
        f.cut_off("line_timeout")
        self.close_with_error(
            codec.CONNECTION_CLOSING,
            f"A request line did not end within {f.limits.line_timeout:g} seconds; closing the connection",
        )

    # -- output -------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Write one line now, or queue it while the transport is full."""
        if self.closing:
            return
        if not self.paused and not self._queue:
            self.transport.write(data)
            return
        self._queue.append(data)
        self.queued += len(data)
        if self.queued > self.factory.send_buffer_bytes:
            self._too_slow()

    def _too_slow(self) -> None:
        self.factory.log_limited(
            "slow", self.address,
            "disconnecting {peer} ({user}): it does not read; {queued} bytes wait to be sent, "
            "over server.send_buffer_bytes = {limit}",
            peer=log_text(self.peer),
            user=log_text(self.session.username if self.session else "?"),
            queued=self.queued,
            limit=self.factory.send_buffer_bytes,
        )
        self.factory.cut_off("slow_reader")
        self.closing = True
        self._stop_timers()
        if self.session is not None:
            self.session.close()
        self._queue.clear()
        self.queued = 0
        self.transport.unregisterProducer()
        self.transport.abortConnection()

    def _closed_by_session(self, code: int, message: str) -> None:
        if not self.closing:
            self.factory.cut_off("login_failures" if code == codec.AUTH_ERROR else "session")
        self.close_with_error(code, message)

    def close_with_error(self, code: int, message: str) -> None:
        """Send a last error (id null), then hang up once it is written.

        If the client does not read it within ``close_timeout`` seconds the
        connection is aborted.
        """
        if self.closing:
            return
        self.send(codec.encode_error(None, code, message))
        if self.closing:  # that send found the client too slow and aborted
            return
        self.closing = True
        self._stop_timers()
        if self.session is not None:
            self.session.close()
        while self._queue:  # hand everything to the transport; it flushes then closes
            self.transport.write(self._queue.popleft())
        self.queued = 0
        self.transport.unregisterProducer()
        self.transport.loseConnection()
        self._abort_call = self.factory.clock.callLater(self.factory.close_timeout, self._abort)

    def _abort(self) -> None:
        self._abort_call = None
        self.transport.abortConnection()

    # -- IPushProducer (the transport calls these) ---------------------------

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        queue = self._queue
        while queue and not self.paused and not self.closing:
            data = queue.popleft()
            self.queued -= len(data)
            self.transport.write(data)  # may call pauseProducing again

    def stopProducing(self) -> None:
        self.closing = True

    # -- for transports that frame messages themselves (asttapi_server.web.ws) --

    def message_begun(self) -> None:
        """A message has begun arriving: it must be whole within server.line_timeout, as a line."""
        if not self.closing and self._partial_since is None:
            self._partial_begun()

    def message_received(self, message: bytes) -> None:
        """One whole message (a WebSocket text frame): handled as one line."""
        self._partial_since = None
        if self.closing:
            return
        limit = self.factory.max_line_bytes
        if len(message) > limit:
            self._line_too_long(limit)
            return
        self._line(message)

    def message_too_long(self) -> None:
        """A message is announced longer than ``max_line_bytes``: the same goodbye as a long line."""
        if not self.closing:
            self._line_too_long(self.factory.max_line_bytes)


class ClientFactory(ServerFactory):
    """Builds a :class:`ClientProtocol` per connection.

    The service constructs it once per application and listens with it on
    every ``server.listen`` endpoint::

        hub = Hub.from_config(config)
        factory = ClientFactory(hub, bridge, users=config.users, clock=reactor,
                                max_line_bytes=config.server.max_line_bytes,
                                send_buffer_bytes=config.server.send_buffer_bytes)

    ``users`` maps names to ``config.UserConfig`` (or ``{"token", "lines"}``
    mappings); pass ``authenticator`` instead to share one.
    """

    protocol = ClientProtocol
    noisy = False  # no "Starting factory <... at 0x...>" in an admin's log ("Clients may connect on" says it)

    def __init__(
        self,
        hub: Hub,
        telephony: Telephony,
        authenticator: Authenticator | None = None,
        *,
        users: Mapping[str, Any] | None = None,
        clock: IReactorTime | None = None,
        max_line_bytes: int = 65536,
        send_buffer_bytes: int = 1 << 20,
        error_limit: int = 20,
        error_window: float = 10.0,
        close_timeout: float = 10.0,
        limits: ConnectionLimits | None = None,
        login_limits: LoginLimits | None = None,
        max_lines_per_session: int = MAX_LINES_PER_SESSION,
        request_rate: float = 50.0,
        request_burst: int = 200,
    ) -> None:
        if clock is None:
            from twisted.internet import reactor as clock  # type: ignore[no-redef]
        self.hub = hub
        self.telephony = telephony
        self.authenticator = authenticator if authenticator is not None else Authenticator(users or {})
        self.clock = clock
        self.max_line_bytes = max_line_bytes
        self.send_buffer_bytes = send_buffer_bytes
        self.error_limit = error_limit
        self.error_window = error_window
        self.close_timeout = close_timeout
        self.max_lines_per_session = max_lines_per_session
        self.request_rate = request_rate
        self.request_burst = request_burst
        # One for all connections, so many clients failing alike cost one log line a minute.
        self.log_throttle = LogThrottle()
        self.connections: set[ClientProtocol] = set()
        self.limits = limits or ConnectionLimits()
        self.policy = ConnectionPolicy(self.limits)
        self.login_gate = LoginGate(self.authenticator, clock, login_limits or LoginLimits())
        self._log_throttle = LogThrottle()
        #: Connections closed by the server, by reason (asttapi_server.metrics; docs/operations.md).
        self.cut_offs: dict[str, int] = {}

    def cut_off(self, reason: str) -> None:
        """Count one connection the server closes (or turns away) for ``reason``."""
        self.cut_offs[reason] = self.cut_offs.get(reason, 0) + 1

    def log_limited(self, kind: str, where: str, fmt: str, **kw: Any) -> None:
        """One log line per kind of trouble per address per minute, with the count held back."""
        held = self._log_throttle.allow((kind, where), self.clock.seconds())
        if held is not None:
            ClientProtocol.log.warn(fmt + " ({held} more held back)", held=held, **kw)

    @classmethod
    def from_config(
        cls, config: Any, hub: Hub, telephony: Telephony, *, clock: IReactorTime | None = None
    ) -> "ClientFactory":
        """From ``config.Config``: ``server.max_line_bytes``, ``server.send_buffer_bytes``, ``users``,
        and the connection, login and client limits of ``[server]``."""
        return cls(
            hub,
            telephony,
            users=config.users,
            clock=clock,
            max_line_bytes=config.server.max_line_bytes,
            send_buffer_bytes=config.server.send_buffer_bytes,
            limits=connection_limits(config.server),
            login_limits=login_limits(config.server),
            max_lines_per_session=config.server.max_lines_per_session,
            request_rate=config.server.request_rate,
            request_burst=config.server.request_burst,
        )


def connection_limits(server: Any) -> ConnectionLimits:
    """The ConnectionLimits of a ``config.ServerConfig`` (keys it lacks keep their defaults)."""
    dflt = ConnectionLimits()
    return ConnectionLimits(**{k: getattr(server, k, getattr(dflt, k)) for k in vars(dflt)})


def login_limits(server: Any) -> LoginLimits:
    """The LoginLimits of a ``config.ServerConfig`` (``login_<field>`` keys; missing ones keep defaults)."""
    dflt = LoginLimits()
    return LoginLimits(**{k: getattr(server, "login_" + k, getattr(dflt, k)) for k in vars(dflt)})
