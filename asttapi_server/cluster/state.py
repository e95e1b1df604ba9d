"""Call state in Redis, and "run once per call".

:class:`RedisCallState` keeps a PBX's live calls in a Redis hash, in the
call store's own format (asttapi_server/store.py): field ``_head`` holds the
store's header (``format``, ``version``, ``next_handle``), and one field per
live call holds :meth:`CallModel.save_call`'s record as JSON, so
:meth:`CallModel.restore_state` reads it unchanged and wiring it in is a
swap of the store's backend. Only the holder of the PBX writes, every write
fenced by its tenure; writes are batched like the file's (one per ``delay``
at most) and carry only the calls that changed since the last one (the
store's :meth:`CallModel.save_key`) and the handles of calls gone. The node
that takes the PBX over reads the hash (:meth:`RedisCallState.restore`),
then resyncs with Asterisk as after any restart.

:func:`run_once` claims a piece of work for a PBX (a contact lookup, a
webhook) so it runs on the active node only, once: a fenced SET NX.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from asttapi_server.core.model import Call, CallModel
from asttapi_server.errors import RedisUnavailable, StaleLease
from asttapi_server.store import encode_state

from . import scripts
from .client import RedisClient
from .keys import Keys
from .lease import Tenure
from .leases import run_fenced

log = Logger(namespace="asttapi.cluster.state")

HEAD = "_head"
#: Seconds a run-once claim is remembered (longer than any call lasts: calls.max_age is 4 hours).
ONCE_KEEP = 6 * 3600.0


def state_of(fields: list) -> dict[str, Any] | None:
    """HGETALL of a PBX's calls hash -> the dict :meth:`CallModel.restore_state` reads (None: no hash).

    Raises ValueError (one line) for a record that is not JSON.
    """
    if not fields:
        return None
    pairs = {fields[i]: fields[i + 1] for i in range(0, len(fields) - 1, 2)}
    try:
        head = json.loads(pairs.pop(HEAD.encode()))
        calls = [json.loads(value) for _handle, value in sorted(pairs.items())]
    except KeyError:
        raise ValueError("the hash has calls but no _head") from None
    except (ValueError, UnicodeDecodeError):
        raise ValueError("a record is not JSON") from None
    if not isinstance(head, dict):
        raise ValueError("_head is not a JSON object")
    return {**head, "calls": calls}


class RedisCallState:
    """The calls of PBX ``pbx`` (``model``) in Redis; see the module docstring."""

    def __init__(self, client: RedisClient, keys: Keys, pbx: str, model: CallModel, clock: Any, *,
                 tenure_of: Callable[[], Tenure | None], delay: float = 0.25) -> None:
        self.client = client
        self.keys = keys
        self.pbx = pbx
        self.model = model
        self.clock = clock
        self.tenure_of = tenure_of
        self.delay = delay
        self.writes = 0
        self._dirty = False
        self._timer: Any = None
        self._writing: defer.Deferred | None = None
        self._parts: dict[int, tuple[tuple, bytes]] = {}  # handle -> (save_key, record JSON) as written

    async def restore(self, now: float) -> list[Call]:
        """Load the PBX's calls into the (fresh) model; a bad hash is one log line and no calls."""
        fields = await self.client.execute("HGETALL", self.keys.calls(self.pbx))
        try:
            data = state_of(fields)
            if data is None:
                return []
            restored = self.model.restore_state(data, now)
        except ValueError as e:
            log.warn("PBX {pbx}: the call state in Redis is ignored, starting with no calls: {reason}",
                     pbx=self.pbx, reason=str(e)[:300])
            return []
        model = self.model
        self._parts = {c.handle: (model.save_key(c), encode_state(model.save_call(c))) for c in restored}
        log.info("PBX {pbx}: {n} live call(s) taken over from Redis", pbx=self.pbx, n=len(restored))
        return restored

    def changed(self) -> None:
        """Something may have changed a call: written within ``delay`` seconds."""
        self._dirty = True
        if self._timer is None and self._writing is None:
            self._timer = self.clock.callLater(self.delay, self._flush)

    def _flush(self) -> None:
        self._timer = None
        if self._dirty and self._writing is None:
            self._writing = defer.ensureDeferred(self._write())
            self._writing.addBoth(self._written)

    def _written(self, _result: Any) -> None:
        self._writing = None
        if self._dirty:
            self.changed()

    def flush(self) -> defer.Deferred:
        """Write now (after a write in flight); fires when written or given up."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._dirty = True
        pending = self._writing or defer.succeed(None)
        return pending.addBoth(lambda _: defer.ensureDeferred(self._write()))

    async def _write(self) -> None:
        self._dirty = False
        tenure = self.tenure_of()
        if tenure is None:
            return  # not the holder: never write
        model = self.model
        parts: dict[int, tuple[tuple, bytes]] = {}
        changed: list[Any] = []
        for call in model.live_calls():
            key = model.save_key(call)
            hit = self._parts.get(call.handle)
            if hit is None or hit[0] != key:
                hit = (key, encode_state(model.save_call(call)))
                changed += [call.handle, hit[1]]
            parts[call.handle] = hit
        gone = [handle for handle in self._parts if handle not in parts]
        if not changed and not gone:
            return
        head = model.save_state(())
        del head["calls"]
        try:
            await run_fenced(self.client, scripts.SAVE_CALLS, [self.keys.lease(self.pbx), self.keys.calls(self.pbx)],
                             [tenure.value, encode_state(head), len(changed) // 2, *changed, *gone])
        except StaleLease:
            log.warn("PBX {pbx}: call state not written: this node no longer holds the PBX", pbx=self.pbx)
            return
        except RedisUnavailable:
            self._dirty = True  # the next batch tries again, with everything changed meanwhile
            return
        self._parts = parts
        self.writes += 1


async def run_once(client: RedisClient, keys: Keys, pbx: str, tenure: Tenure, what: str,
                   keep: float = ONCE_KEEP) -> bool:
    """Claim ``what`` (e.g. ``"lookup:UNIQUEID"``) for PBX ``pbx``: True the first time, on the
    holder only; False if claimed before. Raises StaleLease on a node that no longer holds the PBX."""
    k = keys
    return await run_fenced(client, scripts.ONCE, [k.lease(pbx), k.once(pbx, what)],
                            [tenure.value, int(keep * 1000)]) == 1
