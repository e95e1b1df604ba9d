"""HTTP requests for plugins: one connection pool, one deadline per request, bounded answers.

The ``http_contacts`` plugin asks a CRM for every caller and ``call_webhooks``
pushes every call event; both talk to servers we do not control, from the
reactor thread. Twisted's :class:`~twisted.web.client.Agent` speaks the
protocol; :class:`HttpClient` adds what each of them needs:

* **a deadline** for the whole request (connect, TLS, headers and body), after
  which it is cancelled: a hung server costs one timeout, never a stuck call;
* **a bounded answer**: a body longer than ``max_bytes`` (by its
  Content-Length, or as it arrives) is abandoned, the connection aborted;
* **a pool**: persistent connections, a few per host, so a busy office does
  not pay a TCP and TLS handshake per call;
* **a private CA** (``ca_file``) for CRMs on an internal PKI, and the
  system's trust store otherwise (https needs ``asttapi-server[tls]``);
* **one kind of error**, :class:`HttpError`, whose ``kind`` says what went
  wrong (``timeout``, ``unreachable``, ``tls``, ``too_big``, ``protocol``) in
  words fit for one log line; no URL in it (it may hold a token): name the
  server with :func:`origin`.

Redirects are not followed: a search endpoint or a webhook receiver that
redirects is misconfigured, and following would send the plugin's headers
(API keys) to wherever the redirect points.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.error import ConnectError, ConnectingCancelledError, DNSLookupError, TimeoutError
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool, ResponseNeverReceived
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer
from zope.interface import implementer

from asttapi_server import __version__

__all__ = ["Answer", "HttpClient", "HttpError", "origin", "check_url"]

USER_AGENT = f"asttapi-server/{__version__}"


class HttpError(Exception):
    """A request that got no usable answer; ``kind`` is one of the words below, ``str()`` one line.

    ``sent``: the request may have reached the server (False only when no
    connection was made), which matters to whoever retries a POST.
    """

    KINDS = ("timeout", "unreachable", "tls", "too_big", "protocol")

    def __init__(self, kind: str, text: str, *, sent: bool = True) -> None:
        self.kind = kind
        self.sent = sent
        super().__init__(text)


@dataclass(frozen=True)
class Answer:
    """A response: status, headers (lower-case names) and the whole body."""

    code: int
    headers: Mapping[str, str]
    body: bytes


def origin(url: str) -> str:
    """``scheme://host:port`` of ``url``: what a log line may show (no user, path, query or token)."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{parts.hostname}:{port}"


def check_url(url: str, *, holds_secret: bool = False) -> str | None:
    """What is wrong with ``url`` as a plugin's HTTP target, or None (``holds_secret``: a token is in it)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a port out of range
    except ValueError as exc:
        return f"not a URL ({exc})"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "an http:// or https:// URL with a host"
    if parts.username or parts.password:
        return "a URL without user:password@ (put credentials in headers, from token_file)"
    if holds_secret and parts.scheme != "https":
        return "an https:// URL: {token} in a plain http:// one would cross the network readable"
    if parts.scheme == "https":
        try:
            import OpenSSL  # noqa: F401
            import service_identity  # noqa: F401
        except ImportError:
            return "an http:// URL, or install asttapi-server[tls] for https://"
    return None


def _trust_policy(ca_file: Path | None) -> Any:
    """The HTTPS policy: the system's trust store, or only the CA in ``ca_file``."""
    from twisted.web.client import BrowserLikePolicyForHTTPS
    from twisted.web.iweb import IPolicyForHTTPS

    if ca_file is None:
        return BrowserLikePolicyForHTTPS()
    from twisted.internet.ssl import Certificate, optionsForClientTLS

    root = Certificate.loadPEM(ca_file.read_bytes())

    @implementer(IPolicyForHTTPS)
    class PrivateCA:
        def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
            return optionsForClientTLS(hostname.decode("ascii"), trustRoot=root)

    return PrivateCA()


class _Body(Protocol):
    """Collects a response body up to ``limit`` bytes, then gives up on it."""

    def __init__(self, done: Deferred, limit: int) -> None:
        self.done = done
        self.limit = limit
        self.parts: list[bytes] = []
        self.size = 0

    def dataReceived(self, data: bytes) -> None:
        if self.done.called:
            return
        self.size += len(data)
        if self.size > self.limit:
            self.transport.stopProducing()
            self.done.errback(HttpError("too_big", f"the answer is longer than {self.limit} bytes"))
            return
        self.parts.append(data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if self.done.called:
            return
        from twisted.web.client import PotentialDataLoss, ResponseDone

        if reason is None or reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(b"".join(self.parts))
        else:
            self.done.errback(HttpError("protocol", f"the answer was cut off ({_why(reason)})"))

    def stop(self) -> None:
        if self.transport is not None:
            self.transport.stopProducing()


class HttpClient:
    """Requests with a deadline and a bounded answer over a shared connection pool."""

    def __init__(
        self,
        reactor: Any,
        *,
        timeout: float,
        max_bytes: int,
        ca_file: Path | None = None,
        max_per_host: int = 4,
    ) -> None:
        self.reactor = reactor
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.pool = _Pool(reactor, persistent=True)
        self.pool.maxPersistentPerHost = max_per_host
        self.pool.retryAutomatically = False  # a POST must not be sent twice behind our back
        self.agent = Agent(reactor, contextFactory=_trust_policy(ca_file), pool=self.pool,
                           connectTimeout=timeout)

    def request(
        self,
        method: str,
        url: str,
        headers: Iterable[tuple[str, str]] | Mapping[str, str] = (),
        body: bytes | None = None,
    ) -> Deferred:
        """Fires with an :class:`Answer` (any status), or fails with :class:`HttpError`.

        Cancelling the Deferred abandons the request (and its connection).
        """
        pairs = headers.items() if isinstance(headers, Mapping) else headers
        h = Headers({b"user-agent": [USER_AGENT.encode()]})
        for name, value in pairs:
            h.addRawHeader(name.encode("latin-1"), value.encode("latin-1"))
        producer = _Bytes(body) if body is not None else None
        state: dict[str, Any] = {"body": None, "cancelled": False}

        def cancel(_: Deferred) -> None:
            state["cancelled"] = True  # the result fails with CancelledError, not with what the cancel causes
            if state["body"] is not None:
                state["body"].stop()
            else:
                sent.cancel()

        result: Deferred = Deferred(cancel)
        sent = self.agent.request(method.encode("ascii"), url.encode("ascii"), h, producer)

        def answered(response: Any) -> None:
            if result.called or state["cancelled"]:
                response.deliverBody(_Discard())
                return
            length = response.length
            if length is not UNKNOWN_LENGTH and length > self.max_bytes:
                response.deliverBody(_Discard())
                result.errback(HttpError("too_big", f"the answer is {length} bytes, more than {self.max_bytes}"))
                return
            done: Deferred = Deferred()
            reader = state["body"] = _Body(done, self.max_bytes)
            response.deliverBody(reader)
            heads = {k.decode("latin-1").lower(): b", ".join(v).decode("latin-1")
                     for k, v in response.headers.getAllRawHeaders()}
            done.addCallbacks(lambda data: settle(Answer(response.code, heads, data)), settle)

        def settle(outcome: Any) -> None:
            if not result.called and not state["cancelled"]:
                result.callback(outcome) if not isinstance(outcome, Failure) else result.errback(outcome)

        def failed(failure: Failure) -> None:
            if not state["cancelled"]:
                settle(Failure(_classify(failure)))

        sent.addCallbacks(answered, failed)

        def late(value: Any, timeout: float) -> Any:
            if isinstance(value, Failure) and value.check(CancelledError):
                return Failure(HttpError("timeout", f"no answer within {timeout:g} s"))
            return value

        result.addTimeout(self.timeout, self.reactor, onTimeoutCancel=late)
        return result

    def close(self) -> Deferred:
        """Close the pooled connections (at shutdown)."""
        return self.pool.closeCachedConnections()


class _Pool(HTTPConnectionPool):
    """A pool that, once closed, keeps no connection a late response hands back."""

    closed = False

    def _putConnection(self, key: Any, connection: Any) -> None:
        if self.closed:
            connection.transport.loseConnection()
            return
        super()._putConnection(key, connection)

    def closeCachedConnections(self) -> Deferred:
        self.closed = True
        return super().closeCachedConnections()


class _Discard(Protocol):
    def makeConnection(self, transport: Any) -> None:
        super().makeConnection(transport)
        transport.stopProducing()


@implementer(IBodyProducer)
class _Bytes:
    """A request body already in memory, written at once (with its Content-Length)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.length = len(data)

    def startProducing(self, consumer: Any) -> Deferred:
        consumer.write(self.data)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


def _why(failure: Failure) -> str:
    text = failure.getErrorMessage().strip().splitlines()
    return (text[0] if text else failure.type.__name__)[:200]


def _classify(failure: Failure) -> HttpError:
    """One HttpError for whatever Agent failed with."""
    if failure.check(HttpError):
        return failure.value
    if failure.check(ResponseNeverReceived):
        reasons = getattr(failure.value, "reasons", []) or []
        for reason in reasons:
            if _is_tls(reason):
                return HttpError("tls", f"TLS failed ({_why(reason)})", sent=False)
        why = _why(reasons[0]) if reasons else "the connection closed"
        return HttpError("unreachable", f"no answer ({why})")
    if failure.check(TimeoutError):
        return HttpError("timeout", "could not connect in time", sent=False)
    if failure.check(DNSLookupError):
        return HttpError("unreachable", "the host name does not resolve", sent=False)
    if failure.check(ConnectingCancelledError):
        return HttpError("timeout", "cancelled while connecting", sent=False)
    if failure.check(CancelledError):
        return HttpError("timeout", "cancelled")
    if failure.check(ConnectError):
        return HttpError("unreachable", f"cannot connect ({_why(failure)})", sent=False)
    if _is_tls(failure):
        return HttpError("tls", f"TLS failed ({_why(failure)})", sent=False)
    return HttpError("protocol", _why(failure))


def _is_tls(failure: Failure) -> bool:
    try:
        from OpenSSL.SSL import Error as TLSError
    except ImportError:
        return False
    return bool(failure.check(TLSError))
