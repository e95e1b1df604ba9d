"""Forwarded client requests: the asking node (:class:`RequestForwarder`) and the active node
(:class:`RequestServer`).

At most once: the active node claims a request (CLAIM, fenced by its lease:
a SET NX of the request's claim key to its tenure) *before* it sends
anything to Asterisk, and only the claimer acts. A node that takes a PBX
over looks at the requests of the last minutes: one nobody claimed it
carries out; one its predecessor claimed but never answered it answers with
an error ("may or may not have been carried out") and never sends again;
an answered one it leaves alone. A claim is refused once the request is
older than its ``ttl`` by Redis's clock, so no action starts after the
asking node gave up waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet import defer, task
from twisted.logger import Logger

from asttapi_server.errors import ActionTimeout, LinkDown, RedisUnavailable, StaleLease
from asttapi_server.names import log_text
from asttapi_server.throttle import LogThrottle

from . import scripts
from .client import ReadLoop, RedisClient
from .forward import (ACTION_NAMES, Pending, Request, answer_body, no_holder, orphan_body, parse_request, reply_of,
                      request_fields)
from .keys import Keys
from .lease import Tenure
from .leases import run_fenced

log = Logger(namespace="asttapi.cluster.requests")

#: Entries a request or reply stream keeps (about; MAXLEN ~).
REQUESTS_MAX_LEN = 10_000
#: How far back a new active node looks for requests (longer than any request's ttl).
RECOVER_WINDOW = 300.0
#: Seconds before the asking node's own deadline that a request stops being claimable.
CLAIM_MARGIN = 1.0
#: How long a claim key lives (it only has to outlive the request's ttl).
CLAIM_KEEP = 600.0


class RequestForwarder(ReadLoop):
    """The asking side: sends a request to the PBX's active node, waits for its answer.

    ``client``: commands; ``inbox``: a connection of its own for the blocking
    read of this node's reply stream.
    """

    def __init__(self, client: RedisClient, inbox: RedisClient, keys: Keys, *, node: str, incarnation: str,
                 clock: Any, now: Callable[[], float] = time.monotonic, block: float = 1.0) -> None:
        super().__init__(inbox, clock)
        self.commands = client
        self.keys = keys
        self.node = node
        self.now = now
        self.block_ms = int(block * 1000)
        self.pending = Pending(incarnation)
        self._waiters: dict[str, tuple[defer.Deferred, Any]] = {}
        self._position: bytes | None = None

    what = "Forwarded requests: reading answers"

    def stop(self) -> defer.Deferred:
        for request_id, (d, timer) in list(self._waiters.items()):
            if timer.active():
                timer.cancel()
            d.errback(RedisUnavailable("the node is stopping"))
        self._waiters.clear()
        return super().stop()

    async def request(self, pbx: str, op: str, args: Mapping[str, Any], timeout: float) -> Any:
        """Have PBX ``pbx``'s active node carry out ``op``; its result, or the error a client gets
        (TelephonyError; LinkDown when no node holds the PBX; ActionTimeout without an answer)."""
        if not self.running:
            raise RedisUnavailable("the cluster is not running")
        holder = await self.commands.execute("GET", self.keys.lease(pbx))
        if holder is None:
            raise no_holder(pbx)
        waiting = self.pending.new(op, self.now(), timeout)
        ttl_ms = max(0, int((timeout - CLAIM_MARGIN) * 1000))
        d: defer.Deferred = defer.Deferred()
        timer = self.clock.callLater(timeout, self._timed_out, waiting.id)
        self._waiters[waiting.id] = (d, timer)
        try:
            await self.commands.execute("XADD", self.keys.requests(pbx), "MAXLEN", "~", REQUESTS_MAX_LEN, "*",
                                      *request_fields(waiting, args, self.node, ttl_ms))
        except Exception:
            self._forget(waiting.id)
            raise
        return await d

    def _forget(self, request_id: str) -> tuple[defer.Deferred, Any] | None:
        self.pending.answered(request_id)
        waiter = self._waiters.pop(request_id, None)
        if waiter is not None and waiter[1].active():
            waiter[1].cancel()
        return waiter

    def _timed_out(self, request_id: str) -> None:
        waiting = self.pending.answered(request_id)
        waiter = self._waiters.pop(request_id, None)
        if waiter is not None:
            op = waiting.op if waiting is not None else "request"
            waiter[0].errback(ActionTimeout(f"no answer to {ACTION_NAMES.get(op, op)} from the PBX's active node"))

    async def read_once(self) -> None:
        key = self.keys.replies(self.node)
        if self._position is None:
            last = await self.client.execute("XREVRANGE", key, "+", "-", "COUNT", 1)
            self._position = last[0][0] if last else b"0-0"
        reply = await self.client.execute("XREAD", "COUNT", 1000, "BLOCK", self.block_ms, "STREAMS", key,
                                          self._position, timeout=self.block_ms / 1000 + self.client.reply_timeout)
        for _stream, entries in reply or ():
            for entry_id, raw in entries:
                self._position = entry_id
                self._answer({raw[i]: raw[i + 1] for i in range(0, len(raw) - 1, 2)})

    def _answer(self, fields: Mapping[bytes, bytes]) -> None:
        request_id = fields.get(b"id", b"").decode("utf-8", "replace")
        waiter = self._forget(request_id)
        if waiter is None:
            return  # timed out already, or for an earlier run of this node
        result, error = reply_of(fields.get(b"st", b""), fields.get(b"b", b""))
        if error is not None:
            waiter[0].errback(error)
        else:
            waiter[0].callback(result)


class RequestServer(ReadLoop):
    """The active node's side: reads the request streams of the PBXs it holds, claims, acts, answers.

    ``handler(pbx, op, args)`` carries a request out (a Deferred of the
    result; errors as the local request would raise them). ``tenure_of(pbx)``
    is the tenure while this node may act for the PBX, else None.
    """

    def __init__(self, client: RedisClient, reader: RedisClient, keys: Keys, *,
                 handler: Callable[[str, str, Mapping[str, Any]], Any],
                 tenure_of: Callable[[str], Tenure | None], clock: Any, block: float = 0.25) -> None:
        super().__init__(reader, clock)
        self.commands = client
        self.keys = keys
        self.handler = handler
        self.tenure_of = tenure_of
        self.block_ms = int(block * 1000)
        self._positions: dict[str, bytes] = {}
        self._throttle = LogThrottle()
        self.carried_out = 0
        self.orphaned = 0

    what = "Forwarded requests: reading"

    async def held(self, pbx: str) -> None:
        """This node now holds ``pbx``: settle its predecessor's requests, then serve the PBX's stream."""
        tenure = self.tenure_of(pbx)
        if tenure is None:
            return
        now_s, now_us = await self.commands.execute("TIME")
        since = int(now_s) * 1000 + int(now_us) // 1000 - int(RECOVER_WINDOW * 1000)
        entries = await self.commands.execute("XRANGE", self.keys.requests(pbx), max(since, 0), "+")
        position = entries[-1][0] if entries else await self._end(pbx)
        for entry_id, raw in entries:
            await self._settle(pbx, tenure, entry_id, raw)
        self._positions[pbx] = position

    async def _end(self, pbx: str) -> bytes:
        last = await self.commands.execute("XREVRANGE", self.keys.requests(pbx), "+", "-", "COUNT", 1)
        return last[0][0] if last else b"0-0"

    def released(self, pbx: str) -> None:
        self._positions.pop(pbx, None)

    async def _settle(self, pbx: str, tenure: Tenure, entry_id: bytes, raw: list) -> None:
        try:
            request = parse_request(entry_id, raw)
        except ValueError:
            return
        claim = await self.commands.execute("GET", self.keys.claim(pbx, request.id))
        if claim is None:
            self._carry_out(pbx, request)
        elif claim != b"answered":
            k = self.keys
            outcome = await run_fenced(self.commands, scripts.ORPHAN,
                                       [k.lease(pbx), k.claim(pbx, request.id), k.replies(request.reply_to)],
                                       [tenure.value, request.id, orphan_body(request.op), REQUESTS_MAX_LEN])
            if outcome == b"orphaned":
                self.orphaned += 1
                log.warn("PBX {pbx}: request {id} ({op}) was claimed by the node before and never answered;"
                         " answered with an error, not sent again", pbx=pbx, id=request.id, op=request.op)

    async def read_once(self) -> None:
        positions = {p: pos for p, pos in self._positions.items() if self.tenure_of(p) is not None}
        if not positions:
            await task.deferLater(self.clock, self.block_ms / 1000, lambda: None)
            return
        names = list(positions)
        reply = await self.client.execute(
            "XREAD", "COUNT", 100, "BLOCK", self.block_ms, "STREAMS",
            *(self.keys.requests(p) for p in names), *(positions[p] for p in names),
            timeout=self.block_ms / 1000 + self.client.reply_timeout)
        by_key = {self.keys.requests(p).encode(): p for p in names}
        for stream, entries in reply or ():
            pbx = by_key.get(stream)
            if pbx is None:
                continue
            for entry_id, raw in entries:
                if pbx in self._positions:
                    self._positions[pbx] = entry_id
                try:
                    request = parse_request(entry_id, raw)
                except ValueError as e:
                    self._report("bad", "PBX {pbx}: a request entry is not one ({error}); skipped", e, pbx=pbx)
                    continue
                self._carry_out(pbx, request)

    def _carry_out(self, pbx: str, request: Request) -> None:
        defer.ensureDeferred(self._claim_and_act(pbx, request)).addErrback(
            lambda f: self._report("act", "PBX {pbx}: request {id} failed: {error}", f.value, pbx=pbx,
                                   id=request.id))

    async def _claim_and_act(self, pbx: str, request: Request) -> None:
        tenure = self.tenure_of(pbx)
        if tenure is None:
            return  # not ours (any more): the next holder settles it
        k = self.keys
        claim = k.claim(pbx, request.id)
        try:
            outcome = await run_fenced(self.commands, scripts.CLAIM, [k.lease(pbx), claim],
                                       [tenure.value, request.at_ms, request.ttl_ms, int(CLAIM_KEEP * 1000)])
        except StaleLease:
            return
        if outcome != b"claimed":
            return  # expired (the asker gave up), or claimed before (settled on take-over)
        # Claimed: from here on this request is never sent by anyone else. Check the lease
        # once more right before acting (a node stopped between claim and send wakes up past it).
        if self.tenure_of(pbx) is None:
            status, body = answer_body(request.op, error=LinkDown("this node lost the PBX before sending it"))
        else:
            try:
                result = await defer.maybeDeferred(self.handler, pbx, request.op, request.args)
                status, body = answer_body(request.op, result)
            except Exception as e:
                status, body = answer_body(request.op, error=e)
            self.carried_out += 1
        await self.commands.run(scripts.ANSWER, [claim, k.replies(request.reply_to)],
                              [tenure.value, request.id, status, body, REQUESTS_MAX_LEN])

    def _report(self, kind: str, text: str, error: BaseException, **fields: Any) -> None:
        held = self._throttle.allow(kind, time.monotonic())
        if held is not None:
            log.warn(text, error=log_text(error), **fields)
