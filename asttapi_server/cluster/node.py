"""One server node's part in the cluster: the pieces of :mod:`asttapi_server.cluster` built and
started together, with the few calls the rest of the server needs.

Built from ``[cluster]`` (:class:`asttapi_server.config.ClusterConfig`) and the
names of the PBXs; not wired into service.py yet (docs/scaling.md "Wiring",
after the per-PBX units of issue 25). What each node does:

* claims its node name (a lease of its own: two running processes with one
  ``node`` name would answer each other's requests), then wants every PBX's
  lease; ``on_active(pbx, tenure)`` / ``on_inactive(pbx, why)`` say when it
  starts and stops running a PBX's link. On every take-over it appends a gap
  marker first (what happened while nobody held the PBX is unknown) and
  settles the requests its predecessor left;
* :meth:`publish` appends a PBX's TAPI event for the holder (fenced);
  every node, the holder too, hears the events back from the log in one
  order: ``on_restart(epoch, seq)``, ``on_event(pbx, seq, event)``,
  ``on_gap(pbx, seq)`` (feed a :class:`~asttapi_server.clients.hub.Hub`:
  ``restart``, ``publish(event, seq)``, ``lose(seq - 1)``);
* :meth:`request` carries out a client's request on the PBX's active node,
  here or elsewhere; ``handler(pbx, op, args)`` is how this node carries
  one out when it holds the PBX;
* :meth:`call_state` and :meth:`once` for the holder's call state and
  once-per-call work.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger

from asttapi_server.core.events import TapiEvent
from asttapi_server.errors import ClusterError, StaleLease

from .client import RedisClient, tls_options_from
from .entries import EVENT, GAP, decode_event, encode_event
from .follow import Entry, Gap
from .keys import Keys
from .lease import Tenure
from .leases import LEASE_RENEW, LEASE_TTL, LeaseKeeper
from .log import STREAM_MAX_AGE, STREAM_MAX_LEN, EventAppender, LogFollower
from .requests import RequestForwarder, RequestServer
from .state import RedisCallState, run_once

log = Logger(namespace="asttapi.cluster")


def _ignore(*_args: Any) -> None:
    return None


class ClusterNode(Service):
    """See the module docstring. ``connect(name)`` makes a :class:`RedisClient` for one use
    (``name`` is its CLIENT SETNAME); the node makes four: commands, and one per blocking read."""

    def __init__(self, reactor: Any, connect: Callable[[str], RedisClient], *, node: str, pbxs: Iterable[str],
                 prefix: str = "asttapi", lease_ttl: float = LEASE_TTL, lease_renew: float = LEASE_RENEW,
                 stream_max_len: int = STREAM_MAX_LEN, stream_max_age: float = STREAM_MAX_AGE,
                 handler: Callable[[str, str, Mapping[str, Any]], Any] | None = None,
                 on_active: Callable[[str, Tenure], None] = _ignore,
                 on_inactive: Callable[[str, str], None] = _ignore,
                 on_restart: Callable[[str, int], None] = _ignore,
                 on_event: Callable[[str, int, TapiEvent], None] = _ignore,
                 on_gap: Callable[[str, int], None] = _ignore,
                 block: float = 1.0, now: Callable[[], float] = time.monotonic,
                 want: Iterable[str] | None = None) -> None:
        self.reactor = reactor
        self.node = node
        self.incarnation = f"{node}/{secrets.token_hex(4)}"
        self.keys = Keys(prefix)
        self.pbxs = sorted(set(pbxs))
        self.lease_ttl = lease_ttl
        self.lease_renew = lease_renew
        self.handler = handler
        self.on_active = on_active
        self.on_inactive = on_inactive
        self.on_restart = on_restart
        self.on_event = on_event
        self.on_gap = on_gap
        self.now = now
        #: The PBXs whose links this node offers to run (default: all of them).
        self.wanted = set(self.pbxs if want is None else want) & set(self.pbxs)
        self.client = connect(f"asttapi-{node}")
        self._follow_client = connect(f"asttapi-{node}-log")
        self._serve_client = connect(f"asttapi-{node}-requests")
        self._inbox_client = connect(f"asttapi-{node}-replies")
        self.clients = (self.client, self._follow_client, self._serve_client, self._inbox_client)
        self.appender = EventAppender(self.client, self.keys, reactor, max_len=stream_max_len,
                                      max_age=stream_max_age, retry_for=lease_ttl, now=now)
        self.follower = LogFollower(self._follow_client, self.keys, self.pbxs, on_restart=self._restarted,
                                    on_entry=self._entry, on_gap=self._gap, block=block, clock=reactor)
        self.forwarder = RequestForwarder(self.client, self._inbox_client, self.keys, node=node,
                                          incarnation=self.incarnation, clock=reactor, now=now, block=block)
        self.server = RequestServer(self.client, self._serve_client, self.keys, handler=self._handle,
                                    tenure_of=self.tenure, clock=reactor)
        self.presence = LeaseKeeper(self.client, reactor, key=self.keys.node(node), token_key=self.keys.node_token(node),
                                    holder=self.incarnation, ttl=lease_ttl, renew_every=lease_renew,
                                    on_change=self._presence, now=now)
        self.leases = {pbx: self._keeper(pbx) for pbx in self.pbxs}
        self.named = False
        self._waiters: list[defer.Deferred] = []

    @classmethod
    def from_config(cls, reactor: Any, config: Any, pbxs: Iterable[str], **kw: Any) -> "ClusterNode":
        """From ``[cluster]`` (:class:`asttapi_server.config.ClusterConfig`); ``kw``: the callbacks."""
        tls = tls_options_from(config.tls_ca_file) if config.redis.tls else None

        def connect(name: str) -> RedisClient:
            return RedisClient(reactor, config.redis, username=config.username, password=config.password,
                               sentinel_password=config.sentinel_password, tls_options=tls, name=name,
                               reply_timeout=config.reply_timeout)

        return cls(reactor, connect, node=config.node, pbxs=pbxs, prefix=config.prefix, lease_ttl=config.lease_ttl,
                   lease_renew=config.lease_renew, stream_max_len=config.stream_max_len,
                   stream_max_age=config.stream_max_age, **kw)

    def _keeper(self, pbx: str) -> LeaseKeeper:
        return LeaseKeeper(self.client, self.reactor, key=self.keys.lease(pbx), token_key=self.keys.token(pbx),
                           holder=self.incarnation, ttl=self.lease_ttl, renew_every=self.lease_renew,
                           on_change=lambda active, tenure, why: self._lease(pbx, active, tenure, why), now=self.now)

    # -- life ----------------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        for client in self.clients:
            client.startService()
        self.follower.start()
        self.forwarder.start()
        self.server.start()
        self.presence.want()

    async def started(self, timeout: float | None = None) -> None:
        """Returns once this node owns its name; a node named like a running one does not:
        after ``timeout`` seconds it raises ClusterError."""
        if self.named:
            return
        d: defer.Deferred = defer.Deferred()
        self._waiters.append(d)
        if timeout is not None:
            def too_late() -> None:
                if not d.called:
                    self._waiters.remove(d)
                    d.errback(ClusterError(f"node name {self.node!r} is in use by another running node"
                                           f" ({self.presence.holder_seen})"))
            timer = self.reactor.callLater(timeout, too_late)
            d.addBoth(lambda r: (timer.cancel() if timer.active() else None, r)[1])
        await d

    def stopService(self) -> defer.Deferred:
        super().stopService()

        async def stop() -> None:
            for keeper in self.leases.values():
                keeper.unwant()
            self.presence.unwant()
            await defer.DeferredList([self.follower.stop(), self.forwarder.stop(), self.server.stop()])
            # Let the releases go out before the connection closes (they are queued on it already).
            try:
                await self.client.execute("PING")
            except Exception:
                pass
            await defer.DeferredList([client.stopService() for client in self.clients])

        return defer.ensureDeferred(stop())

    def _presence(self, active: bool, tenure: Tenure | None, why: str) -> None:
        self.named = active
        if active:
            waiters, self._waiters = self._waiters, []
            for d in waiters:
                d.callback(None)
            for pbx in sorted(self.wanted):
                self.leases[pbx].want()
        else:
            log.error("Node {node}: lost its name in Redis ({why}); it stops running PBX links until it has it"
                      " back", node=self.node, why=why)
            for keeper in self.leases.values():
                keeper.unwant()

    # -- PBX leases ----------------------------------------------------------------------------

    def tenure(self, pbx: str) -> Tenure | None:
        """The tenure to act for ``pbx`` with, while this node holds it (else None). Check it
        right before every action sent to the PBX."""
        keeper = self.leases.get(pbx)
        return keeper.tenure if keeper is not None else None

    def holds(self, pbx: str) -> bool:
        return self.tenure(pbx) is not None

    def _lease(self, pbx: str, active: bool, tenure: Tenure | None, why: str) -> None:
        if active and tenure is not None:
            log.info("PBX {pbx}: this node runs its link now ({why})", pbx=pbx, why=why)
            self.appender.append(pbx, tenure, GAP, b"").addErrback(lambda f: None)
            defer.ensureDeferred(self.server.held(pbx)).addErrback(
                lambda f: log.failure("PBX {pbx}: settling earlier requests failed", f, pbx=pbx))
            self.on_active(pbx, tenure)
        elif not active:
            log.info("PBX {pbx}: this node stops running its link ({why})", pbx=pbx, why=why)
            self.server.released(pbx)
            self.on_inactive(pbx, why)

    # -- the event log --------------------------------------------------------------------------

    def publish(self, pbx: str, event: TapiEvent) -> defer.Deferred:
        """Append ``event`` to ``pbx``'s log (the holder only): fires with its seq; StaleLease if
        this node does not hold the PBX (nothing is written)."""
        tenure = self.tenure(pbx)
        if tenure is None:
            return defer.fail(StaleLease(f"this node does not hold PBX {pbx!r}"))
        return self.appender.append(pbx, tenure, EVENT, encode_event(event, self.incarnation))

    def _restarted(self, epoch: str, seq: int) -> None:
        self.on_restart(epoch, seq)

    def _entry(self, entry: Entry) -> None:
        if entry.kind == GAP:
            self.on_gap(entry.pbx, entry.seq)
            return
        try:
            event = decode_event(entry.data, self.incarnation)
        except ValueError as e:
            log.warn("PBX {pbx}: log entry seq {seq} is not an event ({error}); skipped", pbx=entry.pbx,
                     seq=entry.seq, error=str(e))
            return
        self.on_event(entry.pbx, entry.seq, event)

    def _gap(self, gap: Gap) -> None:
        self.on_gap(gap.pbx, gap.seq)

    # -- requests ---------------------------------------------------------------------------------

    async def request(self, pbx: str, op: str, args: Mapping[str, Any], timeout: float) -> Any:
        """Carry out a client's request on ``pbx``'s active node (here if this node holds it)."""
        if self.holds(pbx):
            return await defer.maybeDeferred(self._handle, pbx, op, args)
        return await self.forwarder.request(pbx, op, args, timeout)

    def _handle(self, pbx: str, op: str, args: Mapping[str, Any]) -> Any:
        if self.handler is None:
            raise ClusterError("this node carries out no requests")
        return self.handler(pbx, op, args)

    # -- state and once-per-call work ---------------------------------------------------------------

    def call_state(self, pbx: str, model: Any, *, delay: float = 0.25) -> RedisCallState:
        return RedisCallState(self.client, self.keys, pbx, model, self.reactor,
                              tenure_of=lambda: self.tenure(pbx), delay=delay)

    async def once(self, pbx: str, what: str) -> bool:
        """True if this node should do ``what`` for ``pbx`` now (holder, first claim)."""
        tenure = self.tenure(pbx)
        if tenure is None:
            return False
        try:
            return await run_once(self.client, self.keys, pbx, tenure, what)
        except StaleLease:
            return False
