"""HTTP requests a plugin makes (CardDAV, a CRM's search, webhooks): Twisted's Agent, with the limits
every such client needs.

- **TLS verified by default**: ``https://`` checks the server's certificate
  and host name against the system's CAs, or against ``ca_file`` (a PEM
  bundle, for a company CA); there is no switch to turn the check off.
- **A deadline** for each request, from connecting to the last byte of the
  body: a server that stops answering costs ``timeout`` seconds, never a
  hung refresh.
- **A bounded body**: an answer longer than ``max_bytes`` (announced or
  received) is cut off and fails, so a broken or hostile server cannot
  fill the memory.
- **No redirects followed**: a 3xx is an answer like any other; the caller
  says where to look instead. Credentials never go to another host.
- **Connections kept or not**: one per request by default (what an HTTP/1.0
  server such as Radicale's needs); ``persistent=True`` keeps a few per host
  for clients that send many small requests (a CRM lookup per call, a
  webhook per call event), and keeps none once :meth:`HttpClient.close`
  was called.

Every failure is an :class:`~asttapi_server.errors.HttpError` whose text is
one line for the admin, without the credentials; its ``kind`` says what
failed and ``reason`` why, for a log line that names the server with
:func:`origin` (a URL's path may hold a token: Zammad's CTI endpoint).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from twisted.internet.defer import CancelledError, Deferred, TimeoutError as DeferredTimeout
from twisted.internet.error import ConnectError, ConnectingCancelledError, DNSLookupError, TimeoutError
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool, ResponseDone, ResponseNeverReceived
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer
from zope.interface import implementer

from asttapi_server.errors import HttpError

__all__ = ["HttpClient", "HttpResponse", "basic_auth", "check_url", "origin"]

_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


@dataclass(frozen=True)
class HttpResponse:
    code: int
    headers: Headers
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.headers.getRawHeaders(name)
        return values[0] if values else None


def check_url(url: str, key: str = "url", *, holds_secret: bool = False) -> str:
    """``url`` if it is an http:// or https:// URL with a host (ValueError naming ``key`` if not).

    https needs the TLS extra (pyOpenSSL, service_identity): said here, at start-up, not at the first request.
    ``holds_secret``: a token is in the URL, which then must be https.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"setting {key!r}: expected an http:// or https:// URL, got {url!r}")
    if parts.username or parts.password:
        raise ValueError(f"setting {key!r}: no user or password in the URL (use the settings for them)")
    if holds_secret and parts.scheme != "https":
        raise ValueError(f"setting {key!r}: a token in a plain http:// URL would cross the network readable; "
                         "use https://")
    try:
        parts.port
    except ValueError:
        raise ValueError(f"setting {key!r}: bad port in {url!r}") from None
    if parts.scheme == "https":
        try:
            import OpenSSL  # noqa: F401
            import service_identity  # noqa: F401
        except ImportError:
            raise ValueError(f"setting {key!r}: https needs pyOpenSSL and service_identity "
                             "(pip install 'asttapi-server[tls]')") from None
    return url


def origin(url: str) -> str:
    """``scheme://host:port`` of ``url``: what a log line may show of it (no user, path, query or token)."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{parts.hostname}:{port}"


def basic_auth(username: str, password: str) -> str:
    """The Authorization header value for HTTP basic authentication (RFC 7617, UTF-8)."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def _trust_root(ca_file: Path) -> Any:
    from twisted.internet.ssl import Certificate, trustRootFromCertificates

    blocks = _PEM.findall(ca_file.read_bytes())
    if not blocks:
        raise ValueError(f"setting 'ca_file': no PEM certificate in {str(ca_file)!r}")
    try:
        return trustRootFromCertificates([Certificate.loadPEM(block) for block in blocks])
    except Exception as exc:
        raise ValueError(f"setting 'ca_file': cannot read the certificates in {str(ca_file)!r}: {exc}") from None


@implementer(IBodyProducer)
class _Bytes:
    """A request body already in memory."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.length = len(data)

    def startProducing(self, consumer: Any) -> Deferred:
        consumer.write(self.data)
        d: Deferred = Deferred()
        d.callback(None)
        return d

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class _Discard(Protocol):
    """Takes a response body by stopping it: the connection is aborted, not kept for another request."""

    def makeConnection(self, transport: Any) -> None:
        super().makeConnection(transport)
        transport.stopProducing()


class _BoundedBody(Protocol):
    """Collects a response body up to ``limit`` bytes; more aborts the connection and fails."""

    def __init__(self, finished: Deferred, limit: int, what: str) -> None:
        self.finished = finished
        self.limit = limit
        self.what = what
        self.parts: list[bytes] = []
        self.size = 0

    def dataReceived(self, data: bytes) -> None:
        if self.finished.called:
            return
        self.size += len(data)
        if self.size > self.limit:
            self.transport.stopProducing()
            self.finished.errback(_error(self.what, "too_big", f"the answer is larger than {self.limit} bytes"))
            return
        self.parts.append(data)

    def connectionLost(self, reason: Failure = None) -> None:
        if self.finished.called:
            return
        if reason is None or reason.check(ResponseDone, PotentialDataLoss):
            self.finished.callback(b"".join(self.parts))
        else:
            self.finished.errback(_error(self.what, "protocol", "the connection broke while reading the answer"))


class HttpClient:
    """Requests to one server (an Agent and its connection pool); :meth:`close` when done.

    :param ca_file: PEM certificates to trust instead of the system's, for ``https://``.
    :param timeout: seconds a request may take, body included.
    :param max_bytes: the largest answer body accepted.
    :param headers: sent with every request (e.g. ``Authorization``; never logged).
    :param clock: what times the deadline (default: the reactor); for tests.
    :param persistent: keep up to ``max_per_host`` connections open between requests.
    """

    def __init__(self, *, reactor: Any = None, ca_file: Path | None = None, timeout: float = 10.0,
                 max_bytes: int = 16 << 20, headers: Mapping[str, str] | None = None, clock: Any = None,
                 persistent: bool = False, max_per_host: int = 2) -> None:
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = global_reactor
        self.reactor = reactor
        self.clock = clock if clock is not None else reactor
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.headers = dict(headers or {})
        # By default a connection per request: an HTTP/1.0 server (Radicale's WSGI server) closes
        # each after its answer, and a REPORT on a kept connection that the server had closed
        # meanwhile is not retried by the pool (not idempotent in its eyes). A sync makes few requests.
        self.pool = _Pool(reactor, persistent=persistent)
        self.pool.maxPersistentPerHost = max_per_host
        self.pool.retryAutomatically = False  # a POST must not be sent twice behind the caller's back
        policy = BrowserLikePolicyForHTTPS(trustRoot=_trust_root(ca_file)) if ca_file else BrowserLikePolicyForHTTPS()
        self.agent = Agent(reactor, contextFactory=policy, pool=self.pool, connectTimeout=timeout)

    def request(self, method: str, url: str, *, headers: Mapping[str, str] | None = None,
                body: bytes | None = None) -> Deferred:
        """Fires with an :class:`HttpResponse` (any status), or fails with HttpError (one line)."""
        what = f"{method} {_shown(url)}"
        sent = Headers({k: [v] for k, v in {**self.headers, **(headers or {})}.items()})
        producer = _Bytes(body) if body is not None else None
        result: Deferred = Deferred(lambda d: response_d.cancel())  # noqa: F821 - bound below
        # An address book named "Büro": the URL's non-ASCII characters percent-encoded (UTF-8).
        wire_url = quote(url, safe=":/?#[]@!$&'()*+,;=%~").encode("ascii")
        response_d = self.agent.request(method.encode("ascii"), wire_url, sent, producer)

        def got(response: Any) -> Deferred | None:
            if response.length is not UNKNOWN_LENGTH and response.length > self.max_bytes:
                response.deliverBody(_Discard())  # nothing read: the connection is dropped
                raise _error(what, "too_big", f"the answer is larger than {self.max_bytes} bytes")
            finished: Deferred = Deferred()
            reader = _BoundedBody(finished, self.max_bytes, what)
            response.deliverBody(reader)

            def cancel_body(d: Deferred) -> None:
                if reader.transport is not None:
                    reader.transport.stopProducing()

            body_d: Deferred = Deferred(cancel_body)
            finished.chainDeferred(body_d)
            body_d.addCallback(lambda data: HttpResponse(response.code, response.headers, data))
            return body_d

        response_d.addCallback(got)
        response_d.addErrback(_explain, what, self.timeout)
        response_d.chainDeferred(result)
        result.addTimeout(self.timeout, self.clock, onTimeoutCancel=lambda value, timeout: _timed_out(what, timeout))
        return result

    def close(self) -> Deferred:
        """Close any connection still open (on shutdown); no connection is kept after it."""
        return self.pool.closeCachedConnections()


class _Pool(HTTPConnectionPool):
    """A pool that, once closed, keeps no connection a late answer hands back."""

    closed = False

    def _putConnection(self, key: Any, connection: Any) -> None:
        if self.closed:
            connection.transport.loseConnection()
            return
        super()._putConnection(key, connection)

    def closeCachedConnections(self) -> Deferred:
        self.closed = True
        return super().closeCachedConnections()


def _error(what: str, kind: str, reason: str, *, sent: bool = True) -> HttpError:
    return HttpError(f"{what}: {reason}", kind=kind, reason=reason, sent=sent)


def _timed_out(what: str, timeout: float) -> Failure:
    return Failure(_error(what, "timeout", f"no complete answer within {timeout:g}s"))


def _explain(failure: Failure, what: str, timeout: float) -> Failure:
    """Any failure of a request as an HttpError of one line, with its kind."""
    if failure.check(HttpError, CancelledError, DeferredTimeout):
        return failure
    sent = not failure.check(ConnectError, DNSLookupError, ConnectingCancelledError, TimeoutError)
    answered = failure.check(ResponseNeverReceived) is None  # a broken answer, not none at all
    reasons = getattr(failure.value, "reasons", None) or []  # ResponseFailed, ResponseNeverReceived, ...
    if reasons and all(isinstance(r, Failure) and r.check(CancelledError) for r in reasons):
        return Failure(CancelledError())  # the caller (or the deadline) gave up on it
    inner = next((r for r in reasons if isinstance(r, Failure) and not r.check(CancelledError)), None)
    if inner is not None:
        failure = inner
    tls = _tls_text(failure)
    if tls is not None:
        return Failure(_error(what, "tls", tls, sent=False))
    text = " ".join(str(failure.getErrorMessage() or failure.type.__name__).split())
    if not sent:
        kind = "timeout" if failure.check(TimeoutError) else "unreachable"
        return Failure(_error(what, kind, text, sent=False))
    return Failure(_error(what, "protocol" if answered else "unreachable", text))


def _tls_text(failure: Failure) -> str | None:
    """A certificate problem in words (pyOpenSSL's error lists are unreadable)."""
    try:
        from OpenSSL.SSL import Error as TLSError
        from service_identity import VerificationError
    except ImportError:
        return None
    if failure.check(VerificationError):
        return "TLS: the server's certificate is for another host name"
    if not failure.check(TLSError):
        return None
    details = [str(part) for error in (failure.value.args[0] if failure.value.args else ())
               for part in (error if isinstance(error, tuple) else (error,))]
    text = " ".join(details).lower()
    if "certificate verify failed" in text:
        return "TLS: the server's certificate is not trusted (check ca_file)"
    return "TLS failed: " + (" ".join(details) or "handshake error")


def _shown(url: str) -> str:
    """``url`` for a log line: without a query string (it may hold a token)."""
    return url.split("?", 1)[0]
