"""The connection to Redis: a small Twisted client over :mod:`.resp`.

Why our own and not a library (docs/scaling.md "The Redis client" has the
figures): txredisapi builds two Deferreds, a DeferredQueue entry and (with a
reply timeout) a DelayedCall per command, and ran 2-4x fewer fenced appends a
second than this client in the same process; it also reaches for the global
reactor (no injected clock), stops reconnecting for good after one refused
AUTH and verifies no TLS certificate unless handed a context. redis-py is
well kept but blocking: under Twisted it runs in threads (a thread hop per
command, a pool thread held by every blocking XREAD; 2-5x fewer appends) or
needs the whole server on the asyncio reactor. What we need of Redis is
small: commands, pipelining, EVALSHA, blocking stream reads, AUTH/ACL, TLS
and Sentinel discovery; RESP2 is a page of code (:mod:`.resp`) and the rest
is Twisted's own ``ClientService``, ``HostnameEndpoint`` and TLS layer.

* Commands are pipelined: :meth:`RedisClient.execute` writes at once and
  returns a Deferred; replies are matched in order (a deque of waiters, the
  AMP way). When the connection drops, every waiter fails with
  :class:`~asttapi_server.errors.RedisUnavailable` and new commands fail at
  once (no queue to grow while Redis is away): callers retry on their own
  timing (a lease machine, the log follower).
* A reply that takes longer than ``reply_timeout`` drops the connection (a
  half-open TCP connection would otherwise hold everything).
* Reconnection is Twisted's ``ClientService`` with capped backoff; the hello
  (AUTH, SELECT, and with Sentinel a ROLE check) runs in ``prepareConnection``,
  so a connection is handed out only once it is usable.
* With Sentinel (``sentinel://``) each connection attempt asks the Sentinels
  in turn for the master's address, connects there and checks it is a master
  (a stale answer during a fail-over is a failed attempt, retried). A
  ``-READONLY`` reply (the master was turned into a replica) drops the
  connection, so the next attempt finds the new master.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint, connectProtocol
from twisted.internet.error import ConnectError
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from zope.interface import implementer

from asttapi_server.errors import RedisReplyError, RedisUnavailable
from asttapi_server.names import log_text

from .address import RedisAddress
from .scripts import Script
from .resp import NEED_DATA, Reader, ReplyError, RespProtocolError, command

log = Logger(namespace="asttapi.cluster.redis")

#: Seconds a command may wait for its reply before the connection is dropped.
REPLY_TIMEOUT = 2.0
CONNECT_TIMEOUT = 2.0


class RedisProtocol(Protocol):
    """One connection: commands out in order, replies matched to their waiters in order."""

    def __init__(self, clock: Any, reply_timeout: float = REPLY_TIMEOUT,
                 on_lost: Callable[["RedisProtocol"], None] | None = None) -> None:
        self.clock = clock
        self.reply_timeout = reply_timeout
        self.on_lost = on_lost
        self.reader = Reader()
        self.connected_ = False
        self._waiting: deque[tuple[defer.Deferred, float]] = deque()
        self._watchdog: Any = None
        self._lost_reason = "not connected"

    def connectionMade(self) -> None:
        self.connected_ = True
        # Commands are small and pipelined: without this, Nagle holds a command back until the
        # one before it is acknowledged (tens of ms with delayed ACKs) and every append waits.
        try:
            self.transport.setTcpNoDelay(True)
        except Exception:  # (a transport without the option: a test's, a unix socket)
            pass

    def execute(self, *args: Any, timeout: float | None = None) -> defer.Deferred:
        """Send one command; the Deferred fires with its reply or fails
        (:class:`RedisReplyError`, :class:`RedisUnavailable`)."""
        if not self.connected_:
            return defer.fail(RedisUnavailable(f"Redis: {self._lost_reason}"))
        d: defer.Deferred = defer.Deferred()
        self._waiting.append((d, self.clock.seconds() + (self.reply_timeout if timeout is None else timeout)))
        self.transport.write(command(*args))
        if self._watchdog is None:
            self._arm()
        return d

    def dataReceived(self, data: bytes) -> None:
        reader = self.reader
        try:
            reader.feed(data)
        except RespProtocolError as e:
            self._drop(f"not speaking RESP ({e})")
            return
        readonly = False
        while True:
            reply = reader.next()
            if reply is NEED_DATA:
                break
            if not self._waiting:
                self._drop("a reply nobody asked for")
                return
            d, _deadline = self._waiting.popleft()
            if isinstance(reply, ReplyError):
                readonly = readonly or reply.code == "READONLY"
                d.errback(RedisReplyError(str(reply)))
            else:
                d.callback(reply)
        self._rearm()
        if readonly:
            self._drop("the server is a replica now (READONLY)")

    def _arm(self) -> None:
        if self._waiting and self.connected_:
            delay = max(0.0, self._waiting[0][1] - self.clock.seconds())
            self._watchdog = self.clock.callLater(delay, self._check)

    def _rearm(self) -> None:
        if self._watchdog is not None and self._watchdog.active():
            self._watchdog.cancel()
        self._watchdog = None
        self._arm()

    def _check(self) -> None:
        self._watchdog = None
        if self._waiting and self._waiting[0][1] <= self.clock.seconds():
            self._drop("no reply in time")
        else:
            self._arm()

    def _drop(self, why: str) -> None:
        self._lost_reason = why
        if self.connected_:
            self.transport.abortConnection()

    def connectionLost(self, reason: Any = None) -> None:
        self.connected_ = False
        if self._watchdog is not None and self._watchdog.active():
            self._watchdog.cancel()
        self._watchdog = None
        waiting, self._waiting = self._waiting, deque()
        if self._lost_reason == "not connected":
            self._lost_reason = "the server closed it"
        error = RedisUnavailable(f"Redis connection lost ({self._lost_reason}); the command may or may not"
                                 " have been carried out")
        for d, _deadline in waiting:
            d.errback(error)
        if self.on_lost is not None:
            self.on_lost(self)


async def hello(protocol: RedisProtocol, *, username: str | None, password: str | None, db: int,
                name: str | None, master: bool) -> None:
    """Make a fresh connection usable: AUTH, SELECT, CLIENT SETNAME; with ``master``, check ROLE."""
    if password is not None:
        args = ("AUTH", username, password) if username else ("AUTH", password)
        try:
            await protocol.execute(*args)
        except RedisReplyError as e:
            raise RedisUnavailable(f"Redis refused AUTH{f' as {username!r}' if username else ''}: {e}") from None
    if db:
        await protocol.execute("SELECT", db)
    if name:
        await protocol.execute("CLIENT", "SETNAME", name)
    if master:
        role = await protocol.execute("ROLE")
        if not role or role[0] != b"master":
            raise RedisUnavailable("the server Sentinel named is not a master (a fail-over under way?)")
    elif not (password is not None or db or name):
        # One round trip whatever was configured: a connection is usable only
        # once a Redis has answered on it (over TLS: after the handshake
        # verified the server; a TCP connect alone proves nothing).
        await protocol.execute("PING")


@implementer(IStreamClientEndpoint)
class TLSEndpoint:
    """``endpoint`` with TLS on top (``wrapClientTLS``, but the TLS layer's timers run on
    ``reactor``: Twisted's own wrapper takes the global reactor)."""

    def __init__(self, reactor: Any, creator: Any, endpoint: Any) -> None:
        self.reactor = reactor
        self.creator = creator
        self.endpoint = endpoint

    def connect(self, protocolFactory: Any) -> defer.Deferred:
        from twisted.protocols.tls import TLSMemoryBIOFactory

        tls = TLSMemoryBIOFactory(self.creator, True, protocolFactory, clock=self.reactor)
        return self.endpoint.connect(tls).addCallback(lambda protocol: protocol.wrappedProtocol)


def _endpoint(reactor: Any, host: str, port: int, timeout: float, tls: Callable[[str], Any] | None) -> Any:
    """TCP to ``host:port`` (names resolved, IPv6 too), with TLS for ``host`` when ``tls`` is given."""
    endpoint: Any = HostnameEndpoint(reactor, host, port, timeout=timeout)
    return endpoint if tls is None else TLSEndpoint(reactor, tls(host), endpoint)


@implementer(IStreamClientEndpoint)
class SentinelEndpoint:
    """Connects to the master the Sentinels name for ``service``: asks each in turn, first answer wins.

    A Sentinel that answered is asked first next time.
    """

    def __init__(self, reactor: Any, sentinels: Sequence[tuple[str, int]], service: str, *,
                 tls: Callable[[str], Any] | None = None, username: str | None = None,
                 password: str | None = None, timeout: float = CONNECT_TIMEOUT) -> None:
        self.reactor = reactor
        self.sentinels = list(sentinels)
        self.service = service
        self.tls = tls
        self.username = username
        self.password = password
        self.timeout = timeout
        self.master: tuple[str, int] | None = None

    async def ask(self) -> tuple[str, int]:
        """The master's address, from the first Sentinel that knows it."""
        problems = []
        for i, (host, port) in enumerate(list(self.sentinels)):
            protocol = None
            try:
                protocol = await connectProtocol(_endpoint(self.reactor, host, port, self.timeout, self.tls),
                                                 RedisProtocol(self.reactor, self.timeout))
                await hello(protocol, username=self.username, password=self.password, db=0, name=None, master=False)
                answer = await protocol.execute("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
            except Exception as e:  # the next Sentinel may do better
                problems.append(f"{host}:{port}: {e}")
                continue
            finally:
                if protocol is not None and protocol.transport is not None:
                    protocol.transport.loseConnection()
            if not answer or len(answer) != 2:
                problems.append(f"{host}:{port}: does not know {self.service!r}")
                continue
            if i:
                self.sentinels.insert(0, self.sentinels.pop(i))
            return answer[0].decode("ascii", "replace"), int(answer[1])
        raise ConnectError(string=f"no Sentinel named the master of {self.service!r}: " + "; ".join(problems))

    def connect(self, protocolFactory: Any) -> defer.Deferred:
        async def go() -> Any:
            self.master = await self.ask()
            return await _endpoint(self.reactor, *self.master, self.timeout, self.tls).connect(protocolFactory)

        return defer.ensureDeferred(go())


class _Factory(Factory):
    def __init__(self, client: "RedisClient") -> None:
        self.client = client

    def buildProtocol(self, addr: Any) -> RedisProtocol:
        return RedisProtocol(self.client.reactor, self.client.reply_timeout, on_lost=self.client._lost)


class RedisClient(Service):
    """A self-reconnecting connection to the cluster's Redis (one server or Sentinel's master).

    ``tls_options``: for ``rediss://``/``sentinels://``, a function from a
    host name to Twisted's client TLS options (``optionsForClientTLS``);
    :func:`tls_options_from` builds one from a CA file. ``on_connect`` is
    called with nothing each time a connection becomes usable (a follower
    re-checks the log's continuity then).
    """

    def __init__(self, reactor: Any, address: RedisAddress, *, username: str | None = None,
                 password: str | None = None, sentinel_password: str | None = None,
                 tls_options: Callable[[str], Any] | None = None, name: str | None = None,
                 reply_timeout: float = REPLY_TIMEOUT, connect_timeout: float = CONNECT_TIMEOUT,
                 retry: Callable[[int], float] | None = None) -> None:
        if address.tls and tls_options is None:
            raise ValueError(f"{address} needs tls_options")
        self.reactor = reactor
        self.address = address
        self.username = username
        self.password = password
        self.sentinel_password = sentinel_password
        self.tls_options = tls_options if address.tls else None
        self.client_name = name
        self.reply_timeout = reply_timeout
        self.connect_timeout = connect_timeout
        self.retry = retry or backoffPolicy(initialDelay=0.05, maxDelay=1.0, factor=2.0)
        self.on_connect: list[Callable[[], None]] = []
        self._protocol: RedisProtocol | None = None
        self._service: ClientService | None = None
        self._scripts_loaded: set[str] = set()
        self.connections = 0  # usable connections made so far (tests, metrics)

    # -- life --------------------------------------------------------------------

    def endpoint(self) -> Any:
        a = self.address
        if a.sentinel:
            assert a.service is not None
            return SentinelEndpoint(self.reactor, a.hosts, a.service, tls=self.tls_options,
                                    password=self.sentinel_password, timeout=self.connect_timeout)
        host, port = a.hosts[0]
        return _endpoint(self.reactor, host, port, self.connect_timeout, self.tls_options)

    def startService(self) -> None:
        super().startService()
        self._service = ClientService(self.endpoint(), _Factory(self), retryPolicy=self.retry,
                                      clock=self.reactor, prepareConnection=self._prepare)
        self._service.startService()

    def stopService(self) -> defer.Deferred:
        super().stopService()
        service, self._service = self._service, None
        self._protocol = None
        if service is None:
            return defer.succeed(None)
        # On the next turn: a stop asked from inside the ClientService's own callbacks (a
        # failed connection preparation while Redis restarts) would re-enter its state
        # machine, which refuses ("attempting to reentrantly run _Client.stop").
        done: defer.Deferred = defer.Deferred()
        self.reactor.callLater(0, lambda: service.stopService().chainDeferred(done))
        return done

    def _prepare(self, protocol: RedisProtocol) -> defer.Deferred:
        async def go() -> None:
            try:
                await hello(protocol, username=self.username, password=self.password, db=self.address.db,
                            name=self.client_name, master=self.address.sentinel)
            except Exception as e:
                log.warn("Redis {address}: connection not usable: {error}", address=str(self.address),
                         error=log_text(e))
                protocol.transport.abortConnection()
                raise
            self._protocol = protocol
            self._scripts_loaded.clear()
            self.connections += 1
            for callback in list(self.on_connect):
                try:
                    callback()
                except Exception:
                    log.failure("Redis on_connect callback failed")

        return defer.ensureDeferred(go())

    def _lost(self, protocol: RedisProtocol) -> None:
        if self._protocol is protocol:
            self._protocol = None

    @property
    def connected(self) -> bool:
        return self._protocol is not None and self._protocol.connected_

    def when_connected(self) -> defer.Deferred:
        """Fires once a usable connection exists (at once if there is one)."""
        if self.connected:
            return defer.succeed(self)
        if self._service is None:
            return defer.fail(RedisUnavailable("the Redis client is not running"))
        d = self._service.whenConnected()
        d.addCallback(lambda _p: self)
        return d

    def disconnect(self) -> None:
        """Drop the current connection (tests; a reconnect follows)."""
        if self._protocol is not None:
            self._protocol.transport.abortConnection()

    # -- commands ----------------------------------------------------------------

    def execute(self, *args: Any, timeout: float | None = None) -> defer.Deferred:
        """One command on the current connection; fails at once with RedisUnavailable without one."""
        protocol = self._protocol
        if protocol is None:
            return defer.fail(RedisUnavailable(f"not connected to Redis {self.address}"))
        return protocol.execute(*args, timeout=timeout)

    def run(self, script: Script, keys: Sequence[Any], args: Sequence[Any] = ()) -> defer.Deferred:
        """Run ``script`` (EVALSHA; EVAL once if this server does not have it yet)."""
        protocol = self._protocol
        if protocol is None:
            return defer.fail(RedisUnavailable(f"not connected to Redis {self.address}"))
        if script.sha not in self._scripts_loaded:
            d = protocol.execute("EVAL", script.source, len(keys), *keys, *args)
            d.addCallback(self._loaded, script.sha)
            return d
        d = protocol.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        d.addErrback(self._noscript, protocol, script, keys, args)
        return d

    def _loaded(self, result: Any, sha: str) -> Any:
        self._scripts_loaded.add(sha)
        return result

    def _noscript(self, failure: Any, protocol: RedisProtocol, script: Script, keys: Sequence[Any],
                  args: Sequence[Any]) -> Any:
        # SCRIPT FLUSH or a restarted server without the cache: load it again, once.
        if failure.check(RedisReplyError) and str(failure.value).startswith("NOSCRIPT"):
            self._scripts_loaded.discard(script.sha)
            d = protocol.execute("EVAL", script.source, len(keys), *keys, *args)
            d.addCallback(self._loaded, script.sha)
            return d
        return failure


def tls_options_from(ca_file: str | None) -> Callable[[str], Any]:
    """host -> Twisted client TLS options that verify the server's certificate and name.

    ``ca_file``: PEM certificate(s) to trust (a private CA); None: the system's trust store.
    """
    from twisted.internet import ssl

    if ca_file is not None:
        with open(ca_file, "rb") as f:
            trust: Any = ssl.Certificate.loadPEM(f.read())
    else:
        trust = ssl.platformTrust()

    def options(host: str) -> Any:
        return ssl.optionsForClientTLS(host, trustRoot=trust)

    return options


class ReadLoop:
    """Blocking reads (XREAD BLOCK) one after another on a connection of their own.

    Subclasses write :meth:`read_once`; it is awaited again and again while
    running. Redis away: try again in 50 ms (the client reconnects meanwhile);
    anything else is logged and retried after 0.5 s. :meth:`stop` drops the
    connection, which ends a read that is blocked.
    """

    what = "reading"

    def __init__(self, client: RedisClient, clock: Any) -> None:
        self.client = client
        self.clock = clock
        self.running = False
        self._loop: defer.Deferred | None = None

    def start(self) -> None:
        self.running = True
        self._loop = defer.ensureDeferred(self._run())

    def stop(self) -> defer.Deferred:
        self.running = False
        loop, self._loop = self._loop, None
        self.client.disconnect()
        return loop if loop is not None else defer.succeed(None)

    async def read_once(self) -> None:
        raise NotImplementedError

    async def _run(self) -> None:
        from twisted.internet import task

        while self.running:
            try:
                await self.client.when_connected()
                if self.running:
                    await self.read_once()
            except RedisUnavailable:
                if self.running:
                    await task.deferLater(self.clock, 0.05, lambda: None)
            except Exception:
                log.failure("{what} failed; trying again", what=self.what)
                if self.running:
                    await task.deferLater(self.clock, 0.5, lambda: None)
