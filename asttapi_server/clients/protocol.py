"""The Twisted side of the client protocol: framing, limits, backpressure.

:class:`ClientProtocol` splits bytes into lines (``\\n``, optionally
``\\r\\n``), hands each to :mod:`codec` and its :class:`Session`, and writes
what the session sends. It registers itself as a streaming producer with its
transport, so the transport tells it (``pauseProducing``) when the kernel
socket buffer and the transport's own buffer are full; from then on lines are
queued here and counted, and a client whose queue passes
``send_buffer_bytes`` is disconnected with a logged reason. Nobody else waits
for it: the hub's ``send`` only appends to a queue.

While a WebSocket's output is paused it is not read either: a client that
does not read what it is sent cannot make the server answer its pings.
Large answers (a line's calls) are queued as a stream and encoded as the
transport takes them (:meth:`ClientProtocol.send_stream`), so a fast reader
gets them whole and a slow one costs no more than its queue.

Connection limits and deadlines (:mod:`limits`: one budget for every
listener, login, TLS handshake and unfinished-line timeouts) live in the
``_admit``/``_arm_deadlines``/``_partial_*`` methods below; request budgets
(the connection's own, and its user's or address's shared one,
:mod:`budgets`) in ``_within_rate``/``_shared_take``/``spend_frame``.
Reading stops for any of three reasons (:meth:`ClientProtocol._hold_input`):
over the request rate, waiting for the shared budget, output paused.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IHandshakeListener, INegotiated, IPushProducer, IReactorTime
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.logger import Logger
from zope.interface import implementer

from asttapi_server.clients import codec
from asttapi_server.clients.auth import Authenticator, LoginGate, LoginLimits, User, address_key
from asttapi_server.clients.budgets import SharedBucket, SharedBudgets
from asttapi_server.clients.codec import Batch, Reject
from asttapi_server.clients.hub import Hub
from asttapi_server.clients.limits import ConnectionBudget, ConnectionLimits, Slot
from asttapi_server.clients.ratelimit import TokenBucket
from asttapi_server.clients.session import MAX_LINES_PER_SESSION, Session, Telephony
from asttapi_server.names import log_text
from asttapi_server.throttle import LogThrottle

# Defaults of the [server] keys of the same names (config.ServerConfig reads them here).
#: Longest request line, in bytes.
MAX_LINE_BYTES = 65536
#: Bytes queued for a slow client before it is cut off.
SEND_BUFFER_BYTES = 1 << 20
#: Requests per second of one connection, and how many it may send at once.
REQUEST_RATE, REQUEST_BURST = 50.0, 200
#: Requests per second of one user over all its connections (per address before login), and at once.
USER_REQUEST_RATE, USER_REQUEST_BURST = 200.0, 400


@implementer(IPushProducer, IHandshakeListener)
class ClientProtocol(Protocol):
    """One client connection."""

    log = Logger()
    factory: "ClientFactory"

    def __init__(self) -> None:
        self._buffer = b""
        self._queue: deque[bytes | Iterator[bytes]] = deque()
        self.queued = 0  # bytes waiting here because the transport is full
        self.paused = False
        self.closing = False
        self._errors: deque[float] = deque()
        self._abort_call: IDelayedCall | None = None
        self.session: Session | None = None
        self.peer = "?"
        self.address = "?"  # the bucket connection and login limits count in
        self._slot: Slot | None = None  # this connection's place in the factory's ConnectionBudget
        self._deadlines: list[IDelayedCall] = []  # login / handshake timers
        self._handshake_call: IDelayedCall | None = None
        self._partial_since: float | None = None  # when the unfinished line began
        self._partial_call: IDelayedCall | None = None
        self._bucket: TokenBucket | None = None
        self._shared: SharedBucket | None = None  # the user's (before login: the address's) budget
        self._limited: deque[float] = deque()
        self._holds: set[str] = set()  # why reading is paused: "rate", "shared", "output"
        self._rate_call: IDelayedCall | None = None  # ends the "rate" hold
        self._waiting: codec.Request | Reject | Batch | None = None  # a request waiting for the shared budget

    # -- connection ------------------------------------------------------

    def connectionMade(self) -> None:
        f = self.factory
        peer = self.transport.getPeer()
        self.peer = f"{getattr(peer, 'host', peer)}:{getattr(peer, 'port', '')}"
        host = getattr(peer, "host", None) or "unix"
        self.address = address_key(host)
        slot = getattr(self.transport, "slot", None)  # a WebSocket: its HTTP connection's place, taken over
        if slot is not None:
            self._slot = slot
            slot.displace = self._displaced
        elif not self._admit():
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
            logged_in=self._logged_in,
            stream=self.send_stream,
            charge=self._charge,
        )
        if f.authenticator.login_required:
            self._shared = f.shared.acquire(("address", self.address))
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
        self._waiting = None
        if self._abort_call is not None and self._abort_call.active():
            self._abort_call.cancel()
        self._abort_call = None
        if self._rate_call is not None and self._rate_call.active():
            self._rate_call.cancel()
        self._rate_call = None
        shared, self._shared = self._shared, None
        if shared is not None:
            shared.cancel(self._wake)
            self.factory.shared.release(shared)

    # -- input -------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self.closing:
            return
        limit = self.factory.max_line_bytes
        buf = self._buffer + data if self._buffer else data
        if self._holds:
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
            if not self._line(line):  # waits for the shared budget: from this line on, the rest waits
                self._hold(buf[start:])
                return
            if self._holds:  # over the request rate: the rest waits
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

    def _line(self, line: bytes) -> bool:
        """Handle one line; False if it waits for the shared budget (kept in ``_waiting``)."""
        try:
            msg = codec.decode_line(line)
            if msg is None:
                return True
            return self._dispatch(msg)
        except Exception as e:
            self._internal_error(e)
            return True

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

    def _dispatch(self, msg: codec.Request | Reject | Batch, *, shared_paid: bool = False) -> bool:
        """Spend the budgets for ``msg`` and hand it to the session; False if it waits for the shared budget."""
        assert self.session is not None
        if not shared_paid and not self._shared_take(msg):
            return False
        if not self._within_rate(msg):
            return True
        if self._slot is not None and self._slot.stranger and not self.factory.authenticator.login_required:
            self.factory.budget.promote(self._slot)  # without users, a first request is as good as a login
        if isinstance(msg, Reject):
            self._client_error()
            self.send(codec.encode_error(msg.id, msg.code, msg.message))
            return True
        work, shared = self.factory.work_clock, self._shared  # a login moves the connection to its user's
        started = work()
        if isinstance(msg, Batch):
            self.session.handle_batch(msg)
        else:
            self.session.handle(msg)
        if shared is not None:
            shared.charge_work(work() - started)
        return True

    def _shared_take(self, msg: codec.Request | Reject | Batch) -> bool:
        """A token of the user's (or address's) shared budget, or wait in its queue with ``msg`` kept."""
        shared = self._shared
        if shared is None:
            return True
        if not shared.take():
            self._waiting = msg
            shared.wait(self._wake)
            self._hold_input("shared")
            return False
        if isinstance(msg, Batch) and len(msg.items) > 1:
            shared.spend(len(msg.items) - 1)
        return True

    def _wake(self) -> None:
        """The shared budget set a token aside for this connection."""
        self._release_input("shared")

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
        bucket = self._own_bucket(now)
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

    def _own_bucket(self, now: float) -> TokenBucket:
        bucket = self._bucket
        if bucket is None:
            f = self.factory
            bucket = self._bucket = TokenBucket(f.request_rate, f.request_burst, now)
        return bucket

    def _charge(self, cost: float) -> None:
        """A request turned out large (a line's many calls): it costs ``cost`` more tokens of both budgets."""
        now = self.factory.clock.seconds()
        self._own_bucket(now).spend(now, cost)
        if self._shared is not None:
            self._shared.spend(cost)

    def spend_frame(self) -> None:
        """A WebSocket frame that starts no message (a continuation, ping, pong): one token of each budget.

        Never refused, only slowed: with no token left the connection is not
        read until one is due. Frames still cost once the connection closes
        (its goodbye sent, the peer's close awaited): a peer that floods then
        is not read again, and the close timeout ends it.
        """
        now = self.factory.clock.seconds()
        bucket = self._own_bucket(now)
        if not bucket.take(now):
            self._pause_reading(bucket.wait(now))
            return
        shared = self._shared
        if shared is not None and not shared.take():
            shared.wait(self._wake)
            self._hold_input("shared")

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
        if self._rate_call is None:
            self._hold_input("rate")
            self._rate_call = self.factory.clock.callLater(delay, self._rate_due)

    def _rate_due(self) -> None:
        self._rate_call = None
        self._release_input("rate")

    def _hold_input(self, reason: str) -> None:
        """Stop reading the client (the transport stops reading its socket) for ``reason``."""
        if not self._holds:
            self.transport.pauseProducing()
        self._holds.add(reason)

    def _release_input(self, reason: str) -> None:
        """``reason`` no longer holds: once nothing does, handle what waited, then read again."""
        if reason not in self._holds:
            return
        self._holds.discard(reason)
        if self._holds:
            return
        waiting, self._waiting = self._waiting, None
        if waiting is not None and not self.closing:
            try:
                self._dispatch(waiting, shared_paid=True)
            except Exception as e:
                self._internal_error(e)
            if self._holds:
                return
        self.transport.resumeProducing()
        if self._buffer and not self._holds and not self.closing:
            self.dataReceived(b"")

    def _stop_holding(self) -> None:
        """Closing: whatever held the input no longer matters (no request is handled any more)."""
        if self._rate_call is not None and self._rate_call.active():
            self._rate_call.cancel()
        self._rate_call = None
        self._waiting = None
        if self._shared is not None:
            self._shared.cancel(self._wake)
        if self._holds:
            self._holds.clear()
            self.transport.resumeProducing()

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

    def _admit(self) -> bool:
        """Take a place in the factory's budget (one for every listener), or turn the connection away."""
        f = self.factory
        slot = f.budget.admit(self.address, displace=self._displaced)
        if isinstance(slot, Slot):
            self._slot = slot
            return True
        refusal = slot
        f.log_limited("refused", self.address, "refused a connection from {address}: {reason}",
                      address=self.address, reason=refusal)
        f.cut_off("refused")
        self.closing = True
        self.transport.write(codec.encode_error(None, codec.CONNECTION_CLOSING, f"Connection refused: {refusal}; try again later"))
        self.transport.loseConnection()
        self._abort_call = f.clock.callLater(f.close_timeout, self._abort)
        return False

    def _displaced(self) -> None:
        """The budget gave this stranger's place to a newcomer (the server is full): close at once."""
        f = self.factory
        f.log_limited("displaced", self.address,
                      "closed {peer}, not logged in, to make room for a newer connection: the server is full",
                      peer=self.peer)
        f.cut_off("displaced")
        self.closing = True
        self._stop_timers()
        self.transport.write(codec.encode_error(
            None, codec.CONNECTION_CLOSING, "The server is full; a connection that had not logged in was closed"))
        self.transport.abortConnection()

    def _logged_in(self, user: User) -> None:
        """The session logged in: never displaced from now on, and its requests spend from its user's budget."""
        f = self.factory
        if self._slot is not None:
            f.budget.promote(self._slot)
        if user.name is not None:
            before, self._shared = self._shared, f.shared.acquire(("user", user.name))
            if before is not None:
                before.cancel(self._wake)
                f.shared.release(before)

    def _arm_deadlines(self) -> None:
        f = self.factory
        clock = f.clock
        if INegotiated.providedBy(self.transport):  # TLS: the handshake is still to come
            self._handshake_call = clock.callLater(f.limits.handshake_timeout, self._handshake_timed_out)
            self._deadlines.append(self._handshake_call)
        self._deadlines.append(clock.callLater(f.limits.login_timeout, self._login_timed_out))

    def _disarm(self) -> None:
        self._stop_timers()
        slot, self._slot = self._slot, None
        if slot is not None:
            self.factory.budget.release(slot)

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
        """No login in time; without users: no request in time (an idle stranger holds a place for nothing)."""
        f = self.factory
        if self.closing or self.session is None:
            return
        if f.authenticator.login_required:
            if self.session.user is not None:
                return
            what, message = "login", f"No login within {f.limits.login_timeout:g} seconds; closing the connection"
            code = codec.AUTH_ERROR
        else:
            if self._slot is None or not self._slot.stranger:
                return
            what, message = "request", f"No request within {f.limits.login_timeout:g} seconds; closing the connection"
            code = codec.CONNECTION_CLOSING
        f.log_limited("login", self.address,
                      "closing {peer}: no {what} within {timeout} s (server.login_timeout)",
                      peer=self.peer, what=what, timeout=f.limits.login_timeout)
        f.cut_off("login_timeout")
        self.close_with_error(code, message)

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

    def send_stream(self, chunks: Iterator[bytes]) -> None:
        """Queue a large answer, made chunk by chunk only as the transport takes them.

        Lines in it end with ``\\n`` as any; a chunk may end mid-line. Lines
        sent after it wait behind it, so the order is the order of the calls.
        """
        if self.closing:
            return
        self._queue.append(chunks)
        if not self.paused and len(self._queue) == 1:
            self._flush()

    def _flush(self) -> None:
        """Write what is queued until the transport is full (it calls pauseProducing) or the queue is empty."""
        queue = self._queue
        while queue and not self.paused and not self.closing:
            item = queue[0]
            if isinstance(item, bytes):
                queue.popleft()
                self.queued -= len(item)
                self.transport.write(item)  # may call pauseProducing
                continue
            try:
                chunk = next(item, None)
            except Exception as e:  # a bug in making the answer: end it, say so, keep the connection
                chunk = None
                queue.popleft()
                self._internal_error(e)
                continue
            if chunk is None:
                queue.popleft()
            else:
                self.transport.write(chunk)

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

    def reconfigure(self, auth: Any, revoked: set[str]) -> tuple[str | None, list[str]]:
        """A reload's users: the session takes its new rights, or this connection is closed with
        an AUTH error. Returns (the user closed for, or None; the lines cut)."""
        if self.session is None or self.closing:
            return None, []
        close, cut = self.session.reconfigure(auth, revoked)
        if close is None:
            return None, cut
        who, why = close
        self.factory.cut_off("reload")
        self.close_with_error(codec.AUTH_ERROR, why)
        return who, []

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
        self._stop_holding()  # read the peer's goodbye (a WebSocket close); frames still cost tokens
        while self._queue:  # hand everything to the transport; it flushes then closes
            item = self._queue.popleft()
            self.transport.write(item if isinstance(item, bytes) else b"".join(item))
        self.queued = 0
        self.transport.unregisterProducer()
        self.transport.loseConnection()
        self._abort_call = self.factory.clock.callLater(self.factory.close_timeout, self._abort)

    def _abort(self) -> None:
        self._abort_call = None
        self.transport.abortConnection()

    # -- IPushProducer (the transport calls these) ---------------------------

    def pauseProducing(self) -> None:
        """The transport is full: queue what is sent (a WebSocket: and stop reading it until it drains).

        Not on a bare TCP or TLS transport: TLS pauses its producer while it
        waits to *read* its handshake, and must keep reading to get there.
        """
        self.paused = True
        if getattr(self.transport, "reads_only_while_writable", False):
            self._hold_input("output")

    def resumeProducing(self) -> None:
        self.paused = False
        self._flush()
        if not self.paused:
            self._release_input("output")

    def stopProducing(self) -> None:
        self.closing = True

    # -- for transports that frame messages themselves (asttapi_server.web.ws) --

    def message_begun(self) -> None:
        """A message has begun arriving: it must be whole within server.line_timeout, as a line."""
        if not self.closing and self._partial_since is None:
            self._partial_begun()

    def message_received(self, message: bytes) -> None:
        """One whole message (a WebSocket text frame): handled as one line.

        Its first frame is paid by the request it holds; a blank one (no
        request) pays for its frame as a continuation would.
        """
        self._partial_since = None
        if self.closing:
            return
        limit = self.factory.max_line_bytes
        if len(message) > limit:
            self._line_too_long(limit)
            return
        if not message.strip():
            self.spend_frame()
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
        max_line_bytes: int = MAX_LINE_BYTES,
        send_buffer_bytes: int = SEND_BUFFER_BYTES,
        error_limit: int = 20,
        error_window: float = 10.0,
        close_timeout: float = 10.0,
        limits: ConnectionLimits | None = None,
        login_limits: LoginLimits | None = None,
        max_lines_per_session: int = MAX_LINES_PER_SESSION,
        request_rate: float = REQUEST_RATE,
        request_burst: int = REQUEST_BURST,
        user_request_rate: float = USER_REQUEST_RATE,
        user_request_burst: int = USER_REQUEST_BURST,
        budget: ConnectionBudget | None = None,
        work_clock: Callable[[], float] = time.thread_time,
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
        #: Every connection of every listener (this factory's, the web and metrics sites') counts here.
        self.budget = budget if budget is not None else ConnectionBudget(self.limits)
        #: Requests per user (per address before login), over all their connections (clients/budgets.py).
        self.shared = SharedBudgets(user_request_rate, user_request_burst, clock)
        #: Measures the reactor's CPU time a request took, charged to its shared budget (tests: a fake).
        #: The thread's CPU time, not the wall clock: a busy machine must not make requests dearer.
        self.work_clock = work_clock
        self.login_gate = LoginGate(self.authenticator, clock, login_limits or LoginLimits())
        self._log_throttle = LogThrottle()
        #: Connections closed by the server, by reason (asttapi_server.metrics; docs/operations.md).
        self.cut_offs: dict[str, int] = {}

    def reconfigure(self, users: Any, revoked: set[str]) -> list[str]:
        """A reload's ``[users]`` (``revoked``: users whose token changed): every connection is
        checked against them (sessions of a removed or re-tokened user are closed, lines a user
        may no longer open are closed); returns what changed, for the reload's log line."""
        self.authenticator.replace(users)
        closed: list[str] = []
        cut: list[str] = []
        for conn in tuple(self.connections):
            who, lines = conn.reconfigure(self.authenticator, revoked)
            if who is not None:
                closed.append(who)
            cut.extend(lines)
        out = []
        if closed:
            out.append("sessions closed: " + ", ".join(closed))
        if cut:
            out.append("lines closed: " + ", ".join(cut))
        return out

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
            user_request_rate=config.server.user_request_rate,
            user_request_burst=config.server.user_request_burst,
        )


def connection_limits(server: Any) -> ConnectionLimits:
    """The ConnectionLimits of a ``config.ServerConfig`` (keys it lacks keep their defaults)."""
    dflt = ConnectionLimits()
    return ConnectionLimits(**{k: getattr(server, k, getattr(dflt, k)) for k in vars(dflt)})


def login_limits(server: Any) -> LoginLimits:
    """The LoginLimits of a ``config.ServerConfig`` (``login_<field>`` keys; missing ones keep defaults)."""
    dflt = LoginLimits()
    return LoginLimits(**{k: getattr(server, "login_" + k, getattr(dflt, k)) for k in vars(dflt)})
