"""JSON-RPC over WebSocket: autobahn does RFC 6455, the TCP client code does the rest.

A WebSocket connection is the same client connection as a TCP one: its
:class:`WebSocketClient` builds the TCP listener's own per-connection object
(:class:`~asttapi_server.clients.protocol.ClientProtocol`, from the shared
:class:`~asttapi_server.clients.protocol.ClientFactory`) and connects it to a
:class:`_MessageTransport` instead of a socket. So the session, the hello,
login and rights, every method, resume, the error-flood limit, backpressure
(the connection is the TCP transport's streaming producer, as on a TCP
listener) and the cut-off of a client that never reads are the TCP code,
not a copy of it. This module adds only what differs:

* framing: one JSON-RPC message per text frame, each way (a received frame is
  handed over as one line; each line sent becomes one frame, without its
  ``\\n``);
* a message over ``server.max_line_bytes`` closes with the same JSON-RPC
  error as an over-long TCP line, then close code 1009; it is refused when
  its length is announced, before it is buffered;
* a binary frame closes with 1003 and a reason; invalid UTF-8 in a text frame
  closes with 1007 (autobahn checks it);
* every frame costs: the first frame of a message is paid by the request it
  holds, a close is free, every other one (a continuation, a ping, a pong,
  an empty message)
  spends a token of the connection's and its user's (or address's) request
  budget as a request would, and waits (the socket is not read) when there
  is none; a message may come in at most :data:`MAX_MESSAGE_FRAMES` frames;
* while the connection's output is paused (the client does not read) the
  socket is not read either and pings get no pong: pongs are written past
  the send queue, and a client that never read them grew the server by
  100 MB in seconds;
* autobahn logs a line per connection for what a peer does wrong (a refused
  Origin, invalid UTF-8, a dropped connection): its protocol logs through
  :class:`_QuietAutobahnLog` instead, at most one line per kind a minute;
  the refusals and closes that matter are logged by us, throttled;
* the handshake: the ``Origin`` a browser sends must be the origin the page
  was served from (the ``Host`` it asked for), or one of
  ``web.allowed_origins``; without ``[users]`` the ``Host`` must also be a
  loopback name, so a DNS-rebinding page cannot reach a server that asks for
  no login. A refused handshake gets HTTP 403 and one log line per origin per
  minute. Programs that send no ``Origin`` (not browsers) are let in, as on TCP.
"""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import autobahn.websocket.protocol as _autobahn_protocol
from autobahn.twisted.resource import WebSocketResource
from autobahn.util import encode_truncate
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.internet.interfaces import ISSLTransport
from twisted.logger import Logger

from asttapi_server.clients import codec
from asttapi_server.clients.limits import Slot
from asttapi_server.clients.protocol import ClientFactory, ClientProtocol
from asttapi_server.throttle import LogThrottle
from asttapi_server.names import log_text

#: RFC 6455 close codes we send.
CLOSE_POLICY = 1008  # the server hangs up after a JSON-RPC error (error flood, failed logins, ...)
CLOSE_TOO_BIG = 1009
CLOSE_UNSUPPORTED = 1003  # a binary frame

# Ours; autobahn's classes keep their own ``log`` (a txaio logger).
_log = Logger(namespace="asttapi_server.web.ws")

_DEFAULT_PORT = {"http": 80, "https": 443, "ws": 80, "wss": 443}

#: Frames one message may come in (browsers send one; a streaming client a few).
MAX_MESSAGE_FRAMES = 256

# autobahn pretty-prints its whole configuration for a debug line on every
# connection (WebSocketProtocol._connectionMade), whether or not anything
# logs debug: about 1 ms, half of a handshake, which a stranger repeats at
# will. In that module pformat feeds debug lines only (and Timings.__str__).
_autobahn_protocol.pformat = lambda _obj: "(not formatted)"  # type: ignore[attr-defined]


class _QuietAutobahnLog:
    """What autobahn's protocol logs through (its ``log``), instead of a txaio logger.

    autobahn writes a line per connection for things a peer controls: a
    failed handshake (info), a dropped or failed connection (warn), a TLS
    error (error). A stranger reconnecting in a loop turned that into
    hundreds of lines a second. Debug and info go nowhere; warnings (what
    peers do) pass at most once a minute, all together, and errors too,
    apart, each with the count held back: never a line per peer, which an
    attacker varies at will.
    """

    def __init__(self) -> None:
        self._throttle = LogThrottle()

    def _report(self, level: str, fmt: str, kw: dict[str, Any]) -> None:
        held = self._throttle.allow(level, time.monotonic())
        if held is None:
            return
        try:
            text = fmt.format(**kw)
        except (KeyError, IndexError, ValueError, AttributeError):
            text = fmt
        getattr(_log, level)("autobahn: {text}{more}", text=log_text(text),
                             more=f" ({held} more like it since the last report)" if held else "")

    def warn(self, fmt: str, **kw: Any) -> None:
        self._report("warn", fmt, kw)

    def error(self, fmt: str, **kw: Any) -> None:
        self._report("error", fmt, kw)

    critical = error

    def failure(self, fmt: str = "", failure: Any = None, **kw: Any) -> None:
        self._report("error", fmt or "{log_failure}", {**kw, "log_failure": failure})

    def info(self, fmt: str, **kw: Any) -> None:
        pass

    debug = trace = info


def _origin_key(scheme: str, netloc: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of ``scheme://netloc``, ws/wss folded to http/https."""
    scheme = {"ws": "http", "wss": "https"}.get(scheme.lower(), scheme.lower())
    if netloc.count(":") > 1 and not netloc.startswith("["):  # an IPv6 Host some clients send bare
        address, _, port_text = netloc.rpartition(":")
        netloc = f"[{address}]:{port_text}" if port_text.isdigit() else f"[{netloc}]"
    try:
        parts = urlsplit(f"{scheme}://{netloc}")
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host or scheme not in ("http", "https"):
        return None
    return scheme, host.lower(), port if port is not None else _DEFAULT_PORT[scheme]


def origin_key(origin: str) -> tuple[str, str, int] | None:
    """The comparable form of an ``Origin`` header, or None if it is not one."""
    scheme, sep, rest = origin.strip().partition("://")
    if not sep or "/" in rest:
        return None
    return _origin_key(scheme, rest)


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (a Host header's hostname)."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _MessageTransport:
    """What :class:`ClientProtocol` writes to, for a WebSocket.

    Each line written (``...\\n``) goes out as one text frame; a large
    answer written in pieces (``ClientProtocol.send_stream``) goes out as one
    fragmented message, a frame per piece. The producer calls go to the TCP
    (or TLS) transport underneath, so the kernel's buffer pauses the
    connection exactly as on a TCP listener.
    """

    #: ClientProtocol: while output is paused, stop reading too (no pong piles up unread).
    reads_only_while_writable = True

    def __init__(self, ws: "WebSocketClient") -> None:
        self._ws = ws
        self._last = b""
        self._in_message = False  # a fragmented message is being written

    @property
    def slot(self) -> Slot | None:
        """The connection's place in the budget, taken over from its HTTP connection."""
        return self._ws.slot

    def write(self, data: bytes) -> None:
        ws = self._ws
        if ws.state != WebSocketServerProtocol.STATE_OPEN:
            return  # closing or closed: nothing more may be sent
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            line = data[start:end]
            start = end + 1
            if self._in_message:
                if line:
                    ws.sendMessageFrame(line)
                ws.endMessage()
                self._in_message = False
            else:
                self._last = line
                ws.sendMessage(line, isBinary=False)
        if start < len(data):
            if not self._in_message:
                ws.beginMessage(isBinary=False)
                self._in_message = True
            ws.sendMessageFrame(data[start:])

    def loseConnection(self) -> None:
        """Close the WebSocket; the reason is the last JSON-RPC error sent."""
        self._ws.close_after_error(self._reason())

    def abortConnection(self) -> None:
        transport = self._ws.transport
        if transport is not None:
            transport.abortConnection()

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self._ws.transport.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        transport = self._ws.transport
        if transport is not None:
            transport.unregisterProducer()

    def pauseProducing(self) -> None:
        """Stop reading the client (as on TCP): frames already read wait, unparsed, in order."""
        self._ws.hold_input(True)

    def resumeProducing(self) -> None:
        self._ws.hold_input(False)

    def getPeer(self) -> Any:
        return self._ws.transport.getPeer()

    def getHost(self) -> Any:
        return self._ws.transport.getHost()

    def _reason(self) -> str:
        try:
            return str(json.loads(self._last)["error"]["message"])
        except (ValueError, KeyError, TypeError):
            return "closing"


class WebSocketClient(WebSocketServerProtocol):
    """One browser (or other WebSocket) client: frames in and out of a ClientProtocol."""

    factory: "WebSocketFactory"
    log = _QuietAutobahnLog()  # one for all connections: its throttle counts them together

    connection: ClientProtocol | None = None
    #: The place in the connection budget its HTTP connection held (None: not from the web site).
    slot: Slot | None = None
    _close_code = CLOSE_POLICY
    _denied = False
    _held: list[tuple[bytes, bool]] | None = None  # messages completed while input is paused
    _frames = 0  # frames of the message being received
    _consuming = False  # inside autobahn's frame loop

    # -- handshake -----------------------------------------------------------

    def onConnect(self, request: Any) -> None:
        f = self.factory
        host = str(request.headers.get("host", ""))
        secure = ISSLTransport.providedBy(self.transport)
        problem = f.refusal(request.origin, host, secure)
        if problem is not None:
            self._denied = True
            f.log_refusal(request.origin, self.transport.getPeer(), problem)
            raise ConnectionDeny(ConnectionDeny.FORBIDDEN, problem)
        return None

    def failHandshake(self, reason: str, code: int = 400, responseHeaders: Any = None) -> None:
        if not self._denied:  # autobahn's own refusals: its log line is fine
            super().failHandshake(reason, code, responseHeaders)
            return
        # ours: the throttled line is already logged; one line per refusal would flood
        self.wasClean = True  # a refusal on purpose: autobahn's drop is not worth a warning either
        self.wasNotCleanReason = reason
        self.sendHttpErrorResponse(code, reason, responseHeaders)
        self.dropConnection(abort=False)

    def onOpen(self) -> None:
        connection = self.factory.clients.buildProtocol(self.transport.getPeer())
        self.connection = connection
        connection.makeConnection(_MessageTransport(self))

    def displaced(self) -> None:
        """The budget gave this handshake's place to a newcomer (the server is full)."""
        if self.transport is not None:
            self.transport.abortConnection()

    # -- input ----------------------------------------------------------------

    def consumeData(self) -> None:
        """autobahn's frame loop, never entered twice: a hold released from inside it
        (the connection closing mid-frame) lets the running loop go on instead."""
        if self._consuming:
            return
        self._consuming = True
        try:
            super().consumeData()
        finally:
            self._consuming = False

    def processData(self) -> bool:
        """One step of autobahn's frame loop, none while the connection holds its input.

        What was read stays in autobahn's buffer, unparsed, and the socket is
        not read: a flood of frames waits in the client's own socket.
        """
        if self._held is not None:
            return False
        return super().processData()

    def onFrameBegin(self) -> None:
        """Every frame but a message's first spends from the request budgets (see the module doc)."""
        frame = self.current_frame
        first = frame.opcode in (1, 2) and not self.inside_message
        super().onFrameBegin()
        connection = self.connection
        if connection is None or first or frame.opcode == 8:  # the peer's close is always read
            return
        if frame.opcode == 0 and not connection.closing:
            self._frames += 1
            if self._frames > MAX_MESSAGE_FRAMES:
                self._too_big(f"A message in more than {MAX_MESSAGE_FRAMES} frames; closing the connection")
                return
        connection.spend_frame()

    def onMessageBegin(self, isBinary: bool) -> None:
        super().onMessageBegin(isBinary)
        self._frames = 1
        if self.connection is not None:  # a slowloris frame meets server.line_timeout
            self.connection.message_begun()

    def onMessageFrameBegin(self, length: int) -> None:
        super().onMessageFrameBegin(length)
        connection = self.connection
        if (connection is not None and not connection.closing
                and self.message_data_total_length > self.factory.clients.max_line_bytes):
            self._too_big(None)

    def _too_big(self, message: str | None) -> None:
        """Close with 1009 and the over-long line's goodbye (or ``message``); keep nothing of the message."""
        connection = self.connection
        assert connection is not None
        self._close_code = CLOSE_TOO_BIG
        # stop buffering this message: autobahn skips the data of a connection it failed
        self.failedByMe = True
        self.message_data = []
        if message is None:
            connection.message_too_long()
            return
        connection.factory.log_limited(
            "fragments", connection.address, "closing WebSocket client {peer}: a message in more than {n} frames",
            peer=log_text(connection.peer), n=MAX_MESSAGE_FRAMES)
        connection.factory.cut_off("oversize")
        connection.close_with_error(codec.CONNECTION_CLOSING, message)

    def onPing(self, payload: bytes) -> None:
        """No pong while the client does not read (output paused): it would pile up past the send queue."""
        connection = self.connection
        if connection is not None and (connection.paused or connection.closing):
            return
        super().onPing(payload)

    def hold_input(self, hold: bool) -> None:
        """The connection pauses (or resumes) its input: stop reading the socket.

        A message completed in the frame that paused it waits here; the
        bytes read after it wait unparsed in autobahn's buffer (at most one
        read's worth, since the socket is no longer read). On resume both
        are handed over in order, until the connection pauses again.
        """
        transport = self.transport
        if hold:
            if self._held is None:
                self._held = []
                if transport is not None:
                    transport.pauseProducing()
            return
        held, self._held = self._held, None
        if held is None:
            return
        if transport is not None:
            transport.resumeProducing()
        while held and self._held is None:
            self.onMessage(*held.pop(0))
        if held:  # paused again: the rest still waits, before anything newer
            self._held[:0] = held
        elif self._held is None and self.data and self.state in (self.STATE_OPEN, self.STATE_CLOSING):
            self.consumeData()  # the frames read before the pause

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        connection = self.connection
        if connection is None or connection.closing:
            return
        if self._held is not None:
            self._held.append((payload, isBinary))
            return
        if isBinary:
            # Throttled per address: a stranger can be closed and reconnect at once.
            connection.factory.log_limited(
                "binary-frame", connection.address,
                "closing WebSocket client {peer} ({user}): it sent a binary frame",
                peer=log_text(connection.peer),
                user=log_text(connection.session.username if connection.session else "?"),
            )
            self._close_code = CLOSE_UNSUPPORTED
            connection.factory.cut_off("binary_frame")
            connection.close_with_error(
                codec.CONNECTION_CLOSING,
                "Binary frames are not accepted: send each JSON-RPC message as a text frame",
            )
            return
        connection.message_received(payload)

    def onClose(self, wasClean: bool, code: Any, reason: Any) -> None:
        connection, self.connection = self.connection, None
        if connection is not None:
            connection.connectionLost(None)  # it releases the slot it took over
        elif self.slot is not None:  # refused before it opened
            self.factory.clients.budget.release(self.slot)
        self.slot = None

    # -- output ---------------------------------------------------------------

    def close_after_error(self, reason: str) -> None:
        """The ClientProtocol hangs up (after its last JSON-RPC error).

        ``sendCloseFrame``, not ``sendClose``: the latter allows applications
        only 1000 and 3000-4999, and these are the protocol's own codes.
        """
        self.sendCloseFrame(code=self._close_code, reasonUtf8=encode_truncate(reason, 123), isReply=False)


class WebSocketFactory(WebSocketServerFactory):
    """Builds :class:`WebSocketClient` s around one shared :class:`ClientFactory`.

    ``clients`` is the same factory the TCP listeners use: one hub, one set
    of connections, one set of limits for both transports.
    """

    protocol = WebSocketClient

    def __init__(
        self,
        clients: ClientFactory,
        *,
        allowed_origins: Iterable[str] = (),
        login_required: bool | None = None,
        auto_ping: float = 30.0,
        handshake_timeouts: bool = True,
    ) -> None:
        super().__init__(server="asttapi-server")
        self.clients = clients
        self.allowed = {k for k in map(origin_key, allowed_origins) if k is not None}
        self._login_required = login_required
        self._throttle = LogThrottle()
        options: dict[str, Any] = {
            "allowedOrigins": ["*"],  # we check Origin ourselves, against the Host the page came from
            "allowNullOrigin": True,  # "null" too (a sandboxed frame): refused by us, 403 and a throttled line
            "maxMessagePayloadSize": 0,  # ours, checked when a frame begins (outgoing events may be larger)
            "maxFramePayloadSize": 0,
            "utf8validateIncoming": True,
            "webStatus": False,  # a plain GET of /ws is an error, not a page naming autobahn's version
            "failByDrop": False,  # a clean close with a reason, not a dropped TCP connection
            "autoPingInterval": auto_ping,  # finds dead browsers (a laptop closed) and frees their session
            "autoPingTimeout": auto_ping / 2 if auto_ping else 0,
        }
        if not handshake_timeouts:  # tests on a Clock: autobahn's timers run on the global reactor
            options.update(openHandshakeTimeout=0, closeHandshakeTimeout=0)
        self.setProtocolOptions(**options)

    #: The slot of the HTTP connection being upgraded (set around WebSocketEndpoint.render).
    handed_over: Slot | None = None

    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)
        slot = self.handed_over
        if slot is not None and protocol is not None:
            protocol.slot = slot
            slot.displace = protocol.displaced
        return protocol

    @property
    def login_required(self) -> bool:
        """Asked each time: a configuration reload may add or remove ``[users]``."""
        if self._login_required is not None:
            return self._login_required
        return self.clients.authenticator.login_required

    def refusal(self, origin: str | None, host: str, secure: bool) -> str | None:
        """Why a handshake is refused, or None to accept it."""
        here = _origin_key("https" if secure else "http", host) if host else None
        if not self.login_required and (here is None or not is_loopback_host(here[1])):
            return (
                f"host {host[:100]!r} is not a loopback name and no [users] are configured "
                "(open the page as http://127.0.0.1:PORT/ or http://localhost:PORT/)"
            )
        if not origin:
            return None  # no Origin header: not a browser
        key = origin_key(origin)
        if key is not None and (key == here or key in self.allowed):
            return None
        return f"origin {origin[:100]!r} may not connect: it is not the page's origin and not in web.allowed_origins"

    def log_refusal(self, origin: str | None, peer: Any, problem: str) -> None:
        held = self._throttle.allow(origin, self.clients.clock.seconds())
        if held is None:
            return
        _log.warn(
            "refused a WebSocket from {peer} (HTTP 403): {problem}{more}",
            peer=getattr(peer, "host", peer),
            problem=problem,
            more=f" ({held} more refused since the last line)" if held else "",
        )


class WebSocketEndpoint(WebSocketResource):
    """``/ws``: hands the HTTP connection over to a :class:`WebSocketClient`."""

    def render(self, request: Any) -> Any:
        channel = request.channel
        slot = None
        if channel.transport is not None:
            # The HTTP channel no longer owns this connection: its deadlines
            # must not cut the WebSocket, its place in the connection budget
            # passes to the WebSocket, and the client connection registers
            # itself as the transport's producer in its place.
            hand_over = getattr(channel, "hand_over", None)
            slot = hand_over() if hand_over is not None else None
            channel.setTimeout(None)
            channel.transport.unregisterProducer()
        self._factory.handed_over = slot
        try:
            return super().render(request)
        finally:
            self._factory.handed_over = None
