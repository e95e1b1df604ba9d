"""HTTP connections of the web and metrics listeners: admitted, timed, throttled and quiet.

Twisted's ``HTTPChannel`` admits everyone, keeps an idle timer that every
byte restarts (a request trickled a byte at a time never ends), and logs a
line per timed-out client; ``Site`` logs every request and ``Request`` a
traceback per failed one. Here, per connection (:class:`WebChannel`):

* it takes a place in the server's one connection budget
  (``asttapi_server.clients.limits``) like every other connection, as a
  *stranger* (the web port's share, displaceable); over a limit the socket
  is closed as soon as it is accepted (:meth:`WebSite.buildProtocol`);
* a request must be in, and its answer written, within
  ``web.request_timeout`` seconds of its first byte: an absolute deadline
  that no trickle extends (then ``408``, or an abort while answering);
* a kept-alive connection waits at most ``web.idle_timeout`` seconds for its
  next request (and a TLS client that long for its handshake);
* a request body may hold at most :data:`MAX_BODY` bytes (nothing here takes
  one), kept in memory: a larger one gets ``413`` and the connection closes,
  where Twisted would have spooled it to a temporary file;
* every request spends a token of its address's shared request budget
  (``server.user_request_rate``, ``clients.budgets``), and more for the
  reactor time it took (a WebSocket handshake is handled here too): a
  pipelined or reconnecting flood waits, unread, instead of holding the
  reactor;
* nothing is logged per connection or per request: refusals and timeouts
  through the client factory's throttled ``log_limited`` (a line per
  address per minute), a failed request (a server bug) once a minute per
  kind of error, and the access log only when ``web.access_log`` is on, at
  most :data:`ACCESS_LOG_RATE` lines a second, never for ``/healthz``,
  ``/readyz`` or ``/metrics``, always by path, never with a query string.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger
from twisted.web import http, server

from asttapi_server.clients.auth import address_key
from asttapi_server.clients.budgets import SharedBucket
from asttapi_server.clients.limits import Slot
from asttapi_server.clients.ratelimit import TokenBucket
from asttapi_server.names import log_text
from asttapi_server.throttle import LogThrottle

log = Logger(namespace="asttapi_server.web.http")

#: Access log lines a second at most (bursts of ten times that); the rest are counted.
ACCESS_LOG_RATE = 10.0

#: Bytes of a request body at most: the site serves GET and HEAD only.
MAX_BODY = 65536

#: Paths whose requests are never logged: probes come every few seconds, forever.
PROBE_PATHS = frozenset({b"/healthz", b"/readyz", b"/metrics"})

_TOO_LARGE = (b"HTTP/1.1 413 Content Too Large\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n"
              b"Content-Length: %d\r\n\r\n%s")
_TIMED_OUT = (b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n"
              b"Content-Length: %d\r\n\r\n%s")


def _plain(template: bytes, text: str) -> bytes:
    body = text.encode("utf-8") + b"\n"
    return template % (len(body), body)


class WebChannel(http.HTTPChannel):
    """One HTTP connection (see the module doc)."""

    site: "WebSite"
    address = "?"
    _slot: Slot | None = None
    _shared: SharedBucket | None = None
    _deadline: Any = None
    _refused = False
    _waiter: Any = None  # a request waiting for a token of the shared budget

    def connectionMade(self) -> None:
        super().connectionMade()
        clients = self.site.clients
        if clients is None or self._slot is None:  # a bare site (tests): no budget
            return
        self._slot.displace = self._displaced
        self._shared = clients.shared.acquire(("address", self.address))

    def dataReceived(self, data: bytes) -> None:
        if self._refused:
            return
        if self._deadline is None and data and not self._handlingRequest:
            self._deadline = self.callLater(self.site.request_timeout, self._request_timed_out)
        super().dataReceived(data)

    def requestDone(self, request: Any) -> None:
        """The answer is written: the deadline ends (a pipelined request next starts its own)."""
        self._cancel_deadline()
        super().requestDone(request)

    def _cancel_deadline(self) -> None:
        deadline, self._deadline = self._deadline, None
        if deadline is not None and deadline.active():
            deadline.cancel()

    def _request_timed_out(self) -> None:
        self._deadline = None
        site = self.site
        if site.clients is not None:
            site.clients.log_limited(
                "http-timeout", self.address,
                "closing {peer}: an HTTP request did not arrive and get its answer within {timeout} s"
                " (web.request_timeout)", peer=self.address, timeout=site.request_timeout)
            site.clients.cut_off("request_timeout")
        if self._handlingRequest:  # answering already: nothing more can be said
            self.transport.abortConnection()
            return
        self._refused = True  # read nothing more
        self.transport.write(_plain(_TIMED_OUT, f"The request did not arrive within {site.request_timeout:g} seconds"))
        self._close_soon()

    def body_too_large(self) -> None:
        """A request body passed :data:`MAX_BODY`: 413, read nothing more, close."""
        if self._refused:
            return
        self._refused = True
        self._cancel_deadline()
        if self.site.clients is not None:
            self.site.clients.cut_off("oversize")
        self.transport.write(_plain(_TOO_LARGE, f"A request body may hold at most {MAX_BODY} bytes"))
        self._close_soon()

    def timeoutConnection(self) -> None:
        """Idle past ``web.idle_timeout``: close, without Twisted's log line per client."""
        self._close_soon()

    def _close_soon(self) -> None:
        """Close once what is written is sent; abort if that takes ``abortTimeout`` seconds."""
        if self.abortTimeout is not None and self._abortingCall is None:
            self._abortingCall = self.callLater(self.abortTimeout, self.forceAbortClient)
        self.loseConnection()

    def forceAbortClient(self) -> None:
        self._abortingCall = None
        self.transport.abortConnection()

    def _displaced(self) -> None:
        """The budget gave this connection's place to a newcomer (the server is full)."""
        self._slot = None
        site = self.site
        if site.clients is not None:
            site.clients.log_limited("displaced", self.address,
                                     "closed an HTTP connection from {peer} to make room: the server is full",
                                     peer=self.address)
            site.clients.cut_off("displaced")
        self.transport.abortConnection()

    def wait_for_token(self, then: Any) -> bool:
        """Spend a token of the address's shared budget; without one, call ``then`` once it is due (False)."""
        shared = self._shared
        if shared is None or shared.take():
            return True
        self._waiter = then
        shared.wait(self._granted)
        return False

    def _granted(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter()

    def hand_over(self) -> Slot | None:
        """The connection becomes a WebSocket: stop every timer, give up the budgets, return the place held."""
        self._cancel_deadline()
        self._release_shared()
        slot, self._slot = self._slot, None
        return slot

    def _release_shared(self) -> None:
        shared, self._shared = self._shared, None
        if shared is not None:
            if self._waiter is not None:
                shared.cancel(self._granted)
                self._waiter = None
            self.site.clients.shared.release(shared)

    def connectionLost(self, reason: Any) -> None:
        self._cancel_deadline()
        if self.site.clients is not None:
            self._release_shared()
            slot, self._slot = self._slot, None
            if slot is not None:
                self.site.clients.budget.release(slot)
        super().connectionLost(reason)


class WebRequest(server.Request):
    """A request that waits for its address's budget, keeps a small body in memory and fails without a
    traceback per request."""

    _body = 0

    def gotLength(self, length: int | None) -> None:
        # Always in memory (Twisted spools a long or chunked body to a temporary file): at most MAX_BODY.
        super().gotLength(length if length is not None and length <= MAX_BODY else 0)

    def handleContentChunk(self, data: bytes) -> None:
        self._body += len(data)
        if self._body > MAX_BODY:
            body_too_large = getattr(self.channel, "body_too_large", None)
            if body_too_large is not None:
                body_too_large()
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        channel = self.channel
        wait_for_token = getattr(channel, "wait_for_token", None)
        if wait_for_token is not None and not wait_for_token(lambda: self._handle(command, path, version)):
            return  # the channel reads nothing more until this request is answered
        self._handle(command, path, version)

    def _handle(self, command: bytes, path: bytes, version: bytes) -> None:
        """Handle the request; the reactor time it took is charged to its address's budget."""
        shared = getattr(self.channel, "_shared", None)  # before a WebSocket upgrade gives it up
        clients = self.channel.site.clients
        if shared is None or clients is None:
            super().requestReceived(command, path, version)
            return
        started = clients.work_clock()
        super().requestReceived(command, path, version)
        shared.charge_work(clients.work_clock() - started)

    def processingFailed(self, reason: Any) -> Any:
        """A server bug reached by a request: 500, and one log line a minute per kind of error."""
        held = self.site.failures.allow(reason.type, self.site.reactor.seconds())
        if held is not None:
            log.failure("an HTTP request for {path} failed ({held} more like it since the last report)",
                        reason, path=log_text(self.path.decode("utf-8", "replace")), held=held)
        body = b"<html><head><title>Processing Failed</title></head><body><b>Processing Failed</b></body></html>"
        self.setResponseCode(http.INTERNAL_SERVER_ERROR)
        self.setHeader(b"content-type", b"text/html")
        self.setHeader(b"content-length", b"%d" % len(body))
        self.write(body)
        self.finish()
        return reason


class WebSite(server.Site):
    """A ``Site`` of :class:`WebChannel` s and :class:`WebRequest` s (see the module doc).

    ``clients`` is the server's ``ClientFactory``: its connection budget,
    shared request budgets, throttled log and cut-off counts are the ones
    every listener uses (None: a bare site, for tests). ``web`` says the
    connections count in the web port's share of the budget (the metrics
    port's do not).
    """

    protocol = WebChannel
    requestFactory = WebRequest
    displayTracebacks = False
    noisy = False  # the listener logs the one line that matters

    def __init__(self, root: Any, *, clients: Any = None, web: bool = True, request_timeout: float = 10.0,
                 idle_timeout: float = 15.0, access_log: bool = False, reactor: Any = None) -> None:
        if reactor is None and clients is not None:
            reactor = clients.clock
        super().__init__(root, requestFactory=WebRequest, timeout=idle_timeout, reactor=reactor)
        self.clients = clients
        self.web = web
        self.request_timeout = request_timeout
        self.access_log = access_log
        self.failures = LogThrottle()
        self._log_bucket = TokenBucket(ACCESS_LOG_RATE, ACCESS_LOG_RATE * 10, self.reactor.seconds())
        self._not_logged = 0

    def buildProtocol(self, addr: Any) -> Any:
        """A channel with its place in the budget; over a limit, None: Twisted closes the socket at once.

        A refusal costs an accept and a close, no transport, timer or write:
        a flood of connections from one address over its cap is cheap.
        """
        address = address_key(getattr(addr, "host", None) or "unix")
        slot = None
        clients = self.clients
        if clients is not None:
            slot = clients.budget.admit(address, web=self.web)
            if not isinstance(slot, Slot):
                clients.log_limited("refused", address, "refused an HTTP connection from {address}: {reason}",
                                    address=address, reason=slot)
                clients.cut_off("refused")
                return None
        channel = super().buildProtocol(addr)
        channel.address = address
        channel._slot = slot
        return channel

    def log(self, request: Any) -> None:
        """The access log line of a request, if ``web.access_log`` is on (never a probe's)."""
        if not self.access_log or request.path in PROBE_PATHS:
            return
        if not self._log_bucket.take(self.reactor.seconds()):
            self._not_logged += 1
            return
        skipped, self._not_logged = self._not_logged, 0
        log.info(
            "{peer} {method} {path} {code}{more}",
            peer=getattr(request.getClientAddress(), "host", "?"),
            method=log_text(request.method.decode("ascii", "replace")),
            path=log_text(request.path.decode("utf-8", "replace")),
            code=request.code,
            more=f" ({skipped} requests not logged: over {ACCESS_LOG_RATE:g} lines a second)" if skipped else "",
        )
