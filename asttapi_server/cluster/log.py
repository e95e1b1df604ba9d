"""The event log in Redis: the active node appends (fenced), every node follows.

:class:`EventAppender` queues what the active node of a PBX publishes and
appends it with the APPEND script, one batch per PBX in flight (what
arrives meanwhile makes the next batch, so a burst costs few round trips),
each batch fenced by the tenure it was queued under. A batch whose reply
was lost is sent again with the same batch id, and the script answers the
seqs it gave the first time instead of appending twice. A refused batch
(:class:`~asttapi_server.errors.StaleLease`) fails with everything queued
under that tenure: the node lost the PBX.

:class:`LogFollower` is how every node (the active one too: one path for
all) learns the events: a blocking XREAD over every PBX's stream on a
connection of its own, ordered by :class:`.follow.Follower`. Its epoch is
the Redis master's replication ID: it changes when Redis restarts or a
replica is promoted, exactly the events after which the numbering may not
continue (Redis replicates asynchronously and may lose the last writes), so
the follower then starts afresh (``on_restart``) from where the log is now.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer, task
from twisted.logger import Logger

from asttapi_server.errors import RedisReplyError, RedisUnavailable, StaleLease
from asttapi_server.names import log_text
from asttapi_server.throttle import LogThrottle

from . import scripts
from .client import ReadLoop, RedisClient
from .follow import Entry, Follower, Gap
from .keys import Keys
from .lease import Tenure
from .leases import run_fenced

log = Logger(namespace="asttapi.cluster.log")

#: Defaults of ``[cluster] stream_max_len`` and ``stream_max_age`` (seconds).
STREAM_MAX_LEN = 100_000
STREAM_MAX_AGE = 3600.0
#: Entries one append script takes at most.
BATCH = 500


@dataclass
class _Queued:
    tenure: Tenure
    kind: str
    data: bytes
    done: defer.Deferred = field(default_factory=defer.Deferred)


class EventAppender:
    """Appends to the PBXs' logs for the node holding them. ``retry_for``: seconds a batch
    is retried while Redis does not answer (after that the lease is gone anyway)."""

    def __init__(self, client: RedisClient, keys: Keys, clock: Any, *, max_len: int = STREAM_MAX_LEN,
                 max_age: float = STREAM_MAX_AGE, retry_every: float = 0.1, retry_for: float = 2.0,
                 now: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.keys = keys
        self.clock = clock
        self.max_len = max_len
        self.max_age = max_age
        self.retry_every = retry_every
        self.retry_for = retry_for
        self.now = now
        self._queues: dict[str, list[_Queued]] = {}
        self._busy: set[str] = set()
        self._batches = 0
        self.appended = 0
        self.refused = 0

    def append(self, pbx: str, tenure: Tenure, kind: str, data: bytes) -> defer.Deferred:
        """Queue one entry; fires with its seq, or fails (StaleLease, RedisUnavailable)."""
        item = _Queued(tenure, kind, data)
        self._queues.setdefault(pbx, []).append(item)
        if pbx not in self._busy:
            self._next(pbx)
        return item.done

    def _next(self, pbx: str) -> None:
        queue = self._queues.get(pbx)
        if not queue:
            self._queues.pop(pbx, None)
            self._busy.discard(pbx)
            return
        tenure = queue[0].tenure
        n = 0
        while n < len(queue) and n < BATCH and queue[n].tenure == tenure:
            n += 1
        batch, self._queues[pbx] = queue[:n], queue[n:]
        self._batches += 1
        batch_id = f"{tenure.value}#{self._batches}"
        self._busy.add(pbx)
        defer.ensureDeferred(self._send(pbx, tenure, batch_id, batch))

    async def _send(self, pbx: str, tenure: Tenure, batch_id: str, batch: list[_Queued]) -> None:
        k = self.keys
        args: list[Any] = [tenure.value, batch_id, self.max_len, int(self.max_age * 1000), tenure.token]
        for item in batch:
            args += [item.kind, item.data]
        give_up = self.now() + self.retry_for
        error: Exception | None = None
        seqs: Sequence[int] = ()
        while True:
            try:
                seqs = await run_fenced(self.client, scripts.APPEND, [k.lease(pbx), k.events(pbx), k.log(pbx), k.seq],
                                        args)
                break
            except RedisUnavailable as e:
                if self.now() >= give_up:
                    error = e
                    break
                await task.deferLater(self.clock, self.retry_every, lambda: None)
            except (StaleLease, RedisReplyError) as e:
                error = e
                break
        if error is None:
            self.appended += len(batch)
            for item, seq in zip(batch, seqs):
                item.done.callback(seq)
        else:
            if isinstance(error, StaleLease):
                self.refused += len(batch)
                # Everything queued under the lost tenure is refused too.
                rest = self._queues.get(pbx, [])
                batch = batch + [q for q in rest if q.tenure == tenure]
                self._queues[pbx] = [q for q in rest if q.tenure != tenure]
            for item in batch:
                item.done.errback(error)
        self._next(pbx)


class LogFollower(ReadLoop):
    """Follows every PBX's event log on ``client`` (a connection of its own: it blocks).

    ``on_restart(epoch, seq)``: start (again) as run ``epoch`` after ``seq``;
    ``on_entry(entry)`` and ``on_gap(gap)`` in log order (:mod:`.follow`).
    ``pbxs`` may change (:meth:`set_pbxs`); a PBX added is read from its end.
    """

    what = "Event log: reading"

    def __init__(self, client: RedisClient, keys: Keys, pbxs: Iterable[str], *,
                 on_restart: Callable[[str, int], None], on_entry: Callable[[Entry], None],
                 on_gap: Callable[[Gap], None], block: float = 1.0, count: int = 1000,
                 clock: Any = None) -> None:
        super().__init__(client, clock if clock is not None else client.reactor)
        self.keys = keys
        self.pbxs = sorted(set(pbxs))
        self.on_restart = on_restart
        self.on_entry = on_entry
        self.on_gap = on_gap
        self.block_ms = int(block * 1000)
        self.follower = Follower(count)
        self.epoch: str | None = None
        self._check = True  # re-check the epoch before the next read (a new connection)
        self._throttle = LogThrottle()
        client.on_connect.append(self._connected)

    def set_pbxs(self, pbxs: Iterable[str]) -> None:
        self.pbxs = sorted(set(pbxs))
        self._check = True
        self.client.disconnect()

    def _connected(self) -> None:
        self._check = True

    async def read_once(self) -> None:
        if self._check:
            await self._sync()
        streams = self.follower.positions()
        if not streams:
            await task.deferLater(self.clock, self.block_ms / 1000, lambda: None)
            return
        names = list(streams)
        reply = await self.client.execute(
            "XREAD", "COUNT", self.follower.count, "BLOCK", self.block_ms, "STREAMS",
            *(self.keys.events(p) for p in names), *(streams[p] for p in names),
            timeout=self.block_ms / 1000 + self.client.reply_timeout)
        if reply:
            self._handle(reply, {self.keys.events(p).encode(): p for p in names})

    async def _sync(self) -> None:
        """After (re)connecting: the same Redis run? Continue. Else start from where the log is."""
        info = await self.client.execute("INFO", "replication")
        epoch = _replid(info)
        known = set(self.follower.positions())
        if epoch == self.epoch and known == set(self.pbxs):
            self._check = False
            return
        k = self.keys
        keys = [k.seq]
        for p in self.pbxs:
            keys += [k.events(p), k.log(p)]
        answer = await self.client.run(scripts.START, keys, [])
        seq = int(answer[0])
        fresh = {p: (answer[1 + 2 * i], int(answer[2 + 2 * i])) for i, p in enumerate(self.pbxs)}
        if epoch == self.epoch:  # only PBXs added or removed: the others keep their place
            self.follower.reconfigure(fresh)
        else:
            if self.epoch is not None:
                log.warn("Event log: Redis is a new run now (restarted or failed over: epoch {old} -> {new});"
                         " numbering starts again from seq {seq}", old=self.epoch, new=epoch, seq=seq)
            self.epoch = epoch
            self.follower.start(seq, fresh)
            self.on_restart(epoch, seq)
        self._check = False

    def _handle(self, reply: list, names: dict[bytes, str]) -> None:
        replies = {names[stream]: entries for stream, entries in reply if stream in names}
        result = self.follower.read(replies)
        for problem in result.problems:
            self._report("entry", "Event log: {error}", ValueError(problem))
        for item in result.out:
            try:
                if isinstance(item, Gap):
                    self.on_gap(item)
                else:
                    self.on_entry(item)
            except Exception:
                log.failure("Event log: handing on seq {seq} failed", seq=item.seq)

    def _report(self, kind: str, text: str, error: BaseException) -> None:
        held = self._throttle.allow(kind, time.monotonic())
        if held is not None:
            log.warn(text, error=log_text(error))


def _replid(info: bytes) -> str:
    """The master's replication ID from INFO replication: the epoch (16 hex digits of it)."""
    for line in info.split(b"\r\n"):
        if line.startswith(b"master_replid:"):
            return line.split(b":", 1)[1].decode("ascii")[:16]
    raise RedisReplyError("INFO replication has no master_replid")
