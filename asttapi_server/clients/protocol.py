"""The Twisted side of the client protocol: framing, limits, backpressure.

:class:`ClientProtocol` splits bytes into lines (``\\n``, optionally
``\\r\\n``), hands each to :mod:`codec` and its :class:`Session`, and writes
what the session sends. It registers itself as a streaming producer with its
transport, so the transport tells it (``pauseProducing``) when the kernel
socket buffer and the transport's own buffer are full; from then on lines are
queued here and counted, and a client whose queue passes
``send_buffer_bytes`` is disconnected with a logged reason. Nobody else waits
for it: the hub's ``send`` only appends to a queue.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.logger import Logger
from zope.interface import implementer

from asttapi_server.clients import codec
from asttapi_server.clients.auth import Authenticator
from asttapi_server.clients.codec import Batch, Reject
from asttapi_server.clients.hub import Hub
from asttapi_server.clients.session import Session, Telephony


@implementer(IPushProducer)
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

    # -- connection ------------------------------------------------------

    def connectionMade(self) -> None:
        f = self.factory
        peer = self.transport.getPeer()
        self.peer = f"{getattr(peer, 'host', peer)}:{getattr(peer, 'port', '')}"
        self.session = Session(
            f.hub,
            f.telephony,
            f.authenticator,
            send=self.send,
            client_error=self._client_error,
            close=self.close_with_error,
            peer=self.peer,
        )
        f.connections.add(self)
        self.transport.registerProducer(self, True)
        self.send(self.session.hello())

    def connectionLost(self, reason: Any = None) -> None:
        self.closing = True
        if self.session is not None:
            self.session.close()
        self.factory.connections.discard(self)
        self._queue.clear()
        self.queued = 0
        self._buffer = b""
        if self._abort_call is not None and self._abort_call.active():
            self._abort_call.cancel()
        self._abort_call = None

    # -- input -------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self.closing:
            return
        limit = self.factory.max_line_bytes
        buf = self._buffer + data if self._buffer else data
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
        if self.closing:
            self._buffer = b""
            return
        rest = buf[start:]
        if len(rest) > limit + 1:  # + 1: the '\r' of a '\r\n' still to come
            self._line_too_long(limit)
            return
        self._buffer = rest

    def _line(self, line: bytes) -> None:
        assert self.session is not None
        msg = codec.decode_line(line)
        if msg is None:
            return
        if isinstance(msg, Reject):
            self._client_error()
            self.send(codec.encode_error(msg.id, msg.code, msg.message))
            return
        if isinstance(msg, Batch):
            self.session.handle_batch(msg)
            return
        self.session.handle(msg)

    def _line_too_long(self, limit: int) -> None:
        self.log.warn(
            "closing {peer} ({user}): a line is longer than {limit} bytes",
            peer=self.peer,
            user=self.session.username if self.session else "?",
            limit=limit,
        )
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
            self.log.warn(
                "closing {peer} ({user}): more than {n} errors in {window} seconds",
                peer=self.peer,
                user=self.session.username if self.session else "?",
                n=f.error_limit,
                window=f.error_window,
            )
            self.close_with_error(
                codec.CONNECTION_CLOSING,
                f"More than {f.error_limit} errors in {f.error_window:g} seconds; closing the connection",
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
        self.log.warn(
            "disconnecting {peer} ({user}): it does not read; {queued} bytes wait to be sent, "
            "over server.send_buffer_bytes = {limit}",
            peer=self.peer,
            user=self.session.username if self.session else "?",
            queued=self.queued,
            limit=self.factory.send_buffer_bytes,
        )
        self.closing = True
        if self.session is not None:
            self.session.close()
        self._queue.clear()
        self.queued = 0
        self.transport.unregisterProducer()
        self.transport.abortConnection()

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

    def message_received(self, message: bytes) -> None:
        """One whole message (a WebSocket text frame): handled as one line."""
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

        hub = Hub(ring_size=config.server.replay_ring)
        factory = ClientFactory(hub, bridge, users=config.users, clock=reactor,
                                max_line_bytes=config.server.max_line_bytes,
                                send_buffer_bytes=config.server.send_buffer_bytes)

    ``users`` maps names to ``config.UserConfig`` (or ``{"token", "lines"}``
    mappings); pass ``authenticator`` instead to share one.
    """

    protocol = ClientProtocol

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
        self.connections: set[ClientProtocol] = set()

    @classmethod
    def from_config(
        cls, config: Any, hub: Hub, telephony: Telephony, *, clock: IReactorTime | None = None
    ) -> "ClientFactory":
        """From ``config.Config``: ``server.max_line_bytes``, ``server.send_buffer_bytes``, ``users``."""
        return cls(
            hub,
            telephony,
            users=config.users,
            clock=clock,
            max_line_bytes=config.server.max_line_bytes,
            send_buffer_bytes=config.server.send_buffer_bytes,
        )
