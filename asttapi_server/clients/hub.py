"""Fan-out of TAPI events to the client sessions that opened their lines.

The hub numbers every published event with a per-server increasing ``seq``,
encodes it once, keeps it in a bounded replay ring and hands the same bytes
to every subscriber of the event's line. A LINE_NEWCALL whose ``owner`` is a
session's ``sid`` is not sent to that session (it originated the call and
already holds the handle). A line-less event (``line=None``: a PBX link's
LINE_LINEDEVSTATE) goes to the open lines it is published for (``lines``: that
PBX's), once per line, encoded once and kept once in the ring; without
``lines``, to every open line.

Bounds (issue 11): the ring holds at most ``ring_size`` events and
``ring_bytes`` encoded bytes (a 1 MB caller name must not pin gigabytes);
it is indexed per line, so a ``lineOpen`` with ``seq`` reads only that line's
entries; a line's record is dropped as soon as it has neither subscribers
nor events in the ring, so a million distinct line names cost nothing once
they are gone. Delivery never stops at one failing client or line.
"""

from __future__ import annotations

import secrets
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Any, Protocol

from twisted.logger import Logger

from asttapi_server.clients.codec import encode_event, encode_event_template
from asttapi_server.core.constants import NEWCALL
from asttapi_server.core.events import TapiEvent
from asttapi_server.names import log_text
from asttapi_server.throttle import LogThrottle

#: Defaults of ``server.replay_ring`` (events) and ``server.replay_ring_bytes``.
RING_SIZE = 10000
RING_BYTES = 16 << 20
#: Most events one resume replays; past it a rebuild from ``calls`` is cheaper for
#: both sides, and a client re-resuming a busy line cannot make the server
#: write the ring over and over (docs/security.md "Client floods").
MAX_REPLAY = 1000
#: What one ring entry costs besides its encoded bytes (tuples, deque slots), roughly.
_ENTRY_OVERHEAD = 120


def sends_newcall(owner: Hashable | None, sid: Hashable | None) -> bool:
    """Does the session ``sid`` get the LINE_NEWCALL of a call ``owner`` originated?

    The one rule, for live events, the replay ring and the calls announced at
    ``lineOpen`` (``clients/session.py``): not the session that originated the
    call (its ``lineMakeCall`` answer gave it the handle); everyone else, and
    everyone for a call nobody here originated (``owner`` None).
    """
    return owner is None or owner != sid


class Subscriber(Protocol):
    """What the hub needs of a session."""

    sid: Hashable

    def send(self, data: bytes) -> None:
        """Queue one encoded line for the client; must not raise."""


class _Line:
    """One line's subscribers and its slice of the replay ring (oldest first).

    ``ring`` holds ``(seq, data, owner)``: ``owner`` is the sid of a
    LINE_NEWCALL's originator (not replayed to it), else None. For the
    line-less record ``data`` is the event's ``line -> bytes`` template and
    the third item the lines it was for (a frozenset; None: every line).
    ``evicted`` is the highest seq of this line no longer in the ring.
    """

    __slots__ = ("subs", "ring", "evicted")

    def __init__(self, evicted: int) -> None:
        self.subs: dict[Hashable, Subscriber] = {}
        self.ring: deque[tuple[int, Any, Hashable | None]] = deque()
        self.evicted = evicted


class Hub:
    """Assigns seq, keeps a bounded replay ring, delivers to sessions.

    ``epoch`` names this server run: a seq is only meaningful together with
    the epoch it came from (the server restarts at seq 1).
    """

    log = Logger()

    def __init__(
        self,
        ring_size: int = RING_SIZE,
        *,
        epoch: str | None = None,
        ring_bytes: int = RING_BYTES,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        if ring_size < 0 or ring_bytes < 0:
            raise ValueError("ring_size and ring_bytes must not be negative")
        self.epoch = epoch if epoch is not None else secrets.token_hex(8)
        self.seq = 0
        self._ring_size = ring_size
        self._ring_bytes = ring_bytes
        # Eviction order over all lines: (seq, line, cost).
        self._ring: deque[tuple[int, str | None, int]] = deque()
        self._bytes = 0
        self._lines: dict[str, _Line] = {}
        self._all = _Line(0)  # line-less events; never dropped
        # Highest seq a dropped line record had lost: a record made afresh
        # starts from it, so a resume never claims events it no longer has.
        self._forgotten = 0
        self._next_sid = 0
        self._now = now
        self._throttle = LogThrottle()
        #: Called with every event once delivered (asttapi_server.metrics); must not raise.
        self.on_publish: Callable[[TapiEvent], None] | None = None

    @classmethod
    def from_config(cls, config: Any, **kw: Any) -> "Hub":
        """From ``config.Config``: ``server.replay_ring`` and ``server.replay_ring_bytes``."""
        return cls(config.server.replay_ring, ring_bytes=config.server.replay_ring_bytes, **kw)

    # -- sessions --------------------------------------------------------

    def new_sid(self) -> int:
        """A fresh session id, the ``owner`` a session passes to make_call."""
        self._next_sid += 1
        return self._next_sid

    def subscribe(self, subscriber: Subscriber, line: str) -> None:
        """Deliver ``line``'s events to ``subscriber`` (idempotent)."""
        rec = self._lines.get(line)
        if rec is None:
            rec = self._lines[line] = _Line(self._forgotten)
        rec.subs[subscriber.sid] = subscriber

    def unsubscribe(self, subscriber: Subscriber, line: str) -> None:
        rec = self._lines.get(line)
        if rec is not None:
            rec.subs.pop(subscriber.sid, None)
            if not rec.subs and not rec.ring:
                self._drop(line, rec)

    def subscribers(self, line: str) -> int:
        """How many sessions have ``line`` open."""
        rec = self._lines.get(line)
        return len(rec.subs) if rec is not None else 0

    @property
    def open_lines(self) -> int:
        """Lines at least one session has open."""
        return sum(1 for rec in self._lines.values() if rec.subs)

    def open_line_names(self) -> list[str]:
        """The lines at least one session has open (a PBX's LINE_LINEDEVSTATE goes to those of its lines)."""
        return [line for line, rec in self._lines.items() if rec.subs]

    @property
    def tracked_lines(self) -> int:
        """Line records held: lines open or with events in the ring (bounded by both)."""
        return len(self._lines)

    @property
    def ring_bytes(self) -> int:
        """What the ring's entries cost now, by the measure ``ring_bytes`` bounds."""
        return self._bytes

    @property
    def ring_events(self) -> int:
        return len(self._ring)

    # -- events ----------------------------------------------------------

    def publish(self, event: TapiEvent, seq: int | None = None, *, lines: Any = None) -> int:
        """Number, remember and deliver ``event``; returns its seq. Never raises.

        ``lines``: for a line-less event, the lines it is for (a PBX's LINE_LINEDEVSTATE
        goes to that PBX's lines only); None: every open line.

        ``seq``: the number the event already has (a cluster node publishes
        what the event log numbered, asttapi_server.cluster); it must be
        greater than every seq published before, else the event is dropped
        and 0 returned (a resume must never see two events under one seq).
        """
        if seq is None:
            self.seq += 1
            seq = self.seq
        elif seq <= self.seq:
            if self._throttle.allow(("order", event.msg), self._now()) is not None:
                self.log.warn("event {msg} numbered {seq} after {last}: dropped", msg=event.msg, seq=seq,
                              last=self.seq)
            return 0
        else:
            self.seq = seq
        line = event.line
        try:
            if line is not None:
                self._publish_line(event, line, seq)
            else:
                self._publish_all(event, seq, None if lines is None else frozenset(lines))
        except Exception:
            self._failed(("publish", event.msg), "publishing {msg} (seq {seq}) failed", msg=event.msg, seq=seq)
        if self.on_publish is not None:
            try:
                self.on_publish(event)
            except Exception:
                self._failed(("observer", event.msg), "the publish observer failed on {msg}", msg=event.msg)
        return seq

    def _publish_line(self, event: TapiEvent, line: str, seq: int) -> None:
        data = encode_event(event, seq)
        owner = event.owner if event.msg == NEWCALL else None
        rec = self._lines.get(line)
        if self._keeps(len(data)):
            if rec is None:
                rec = self._lines[line] = _Line(self._forgotten)
            self._remember(rec, line, seq, data, owner, len(data))
        elif rec is not None:
            rec.evicted = seq
        else:
            self._forgotten = seq
        if rec is not None and rec.subs:
            for sid, sub in tuple(rec.subs.items()):
                if owner is not None and not sends_newcall(owner, sid):  # (no call unless a NEWCALL has one)
                    continue
                self._send(sub, data, line)
        self._trim()

    def _publish_all(self, event: TapiEvent, seq: int, scope: frozenset[str] | None = None) -> None:
        template = encode_event_template(event, seq)
        cost = len(template(""))
        if self._keeps(cost):
            self._remember(self._all, None, seq, template, scope, cost)
        else:
            self._all.evicted = seq
        lines = self._lines
        targets = lines.items() if scope is None else ((name, lines.get(name)) for name in scope)
        for name, rec in tuple(targets):
            if rec is None or not rec.subs:
                continue
            try:
                data = template(name)
            except Exception:
                self._failed(("encode", type(name)), "encoding {msg} for line {line} failed",
                             msg=event.msg, line=log_text(name))
                continue
            for sub in tuple(rec.subs.values()):
                self._send(sub, data, name)
        self._trim()

    def restart(self, epoch: str, seq: int) -> None:
        """Start again as run ``epoch`` whose events so far end at ``seq`` (a cluster node
        joining the log, or the log's continuity lost): the ring is emptied, so a resume
        from before ``seq`` or from another epoch rebuilds from ``calls``. Subscribers stay."""
        self.epoch = epoch
        self.seq = seq
        self._ring.clear()
        self._bytes = 0
        for line, rec in tuple(self._lines.items()):
            rec.ring.clear()
            rec.evicted = seq
            if not rec.subs:
                del self._lines[line]
        self._all = _Line(seq)
        self._forgotten = seq

    def lose(self, seq: int) -> None:
        """Events up to ``seq`` may be missing (the log was trimmed before this node read them,
        or a fail-over could not know them): a resume from before ``seq`` is a gap."""
        if seq > self._all.evicted:
            self._all.evicted = seq

    def missed(
        self, line: str, since: int, epoch: str | None = None, *, sid: Hashable | None = None,
        limit: int = MAX_REPLAY,
    ) -> list[bytes] | None:
        """The encoded events of ``line`` with seq > ``since``, oldest first.

        Each carries ``"replayed": true`` (a resumed client must not pop a
        call again that may have ended since). A LINE_NEWCALL owned by
        ``sid`` is left out, as in :meth:`publish`.
        ``None`` means the ring no longer holds all of them (or ``since``
        comes from another server run): the client must rebuild its state
        from the line's current calls instead; so does a replay of more
        than ``limit`` events. Costs at most what it returns, never the size
        of the ring.
        """
        if epoch is not None and epoch != self.epoch:
            return None
        if since > self.seq:
            return None
        rec = self._lines.get(line)
        lost = rec.evicted if rec is not None else self._forgotten
        if max(lost, self._all.evicted) > since:
            return None
        own: list[tuple[int, bytes]] = []
        if rec is not None:
            for seq, data, owner in reversed(rec.ring):
                if seq <= since:
                    break
                if owner is not None and not sends_newcall(owner, sid):
                    continue
                if len(own) == limit:
                    return None
                own.append((seq, _replayed(data)))
        shared: list[tuple[int, bytes]] = []
        for seq, template, scope in reversed(self._all.ring):
            if seq <= since:
                break
            if scope is not None and line not in scope:
                continue  # another PBX's lines' event
            if len(own) + len(shared) == limit:
                return None
            shared.append((seq, _replayed(template(line))))
        if shared:
            own.extend(shared)
            own.sort(key=lambda item: item[0])
        else:
            own.reverse()
        return [data for _seq, data in own]

    # -- internals -------------------------------------------------------

    def _keeps(self, cost: int) -> bool:
        return self._ring_size > 0 and cost + _ENTRY_OVERHEAD <= self._ring_bytes

    def _remember(self, rec: _Line, line: str | None, seq: int, data: Any, owner: Hashable | None, size: int) -> None:
        cost = size + _ENTRY_OVERHEAD
        rec.ring.append((seq, data, owner))
        self._ring.append((seq, line, cost))
        self._bytes += cost

    def _trim(self) -> None:
        """Evict the oldest entries until the ring fits both bounds."""
        ring = self._ring
        while ring and (len(ring) > self._ring_size or self._bytes > self._ring_bytes):
            seq, line, cost = ring.popleft()
            self._bytes -= cost
            rec = self._all if line is None else self._lines[line]
            rec.ring.popleft()
            rec.evicted = seq
            if line is not None and not rec.subs and not rec.ring:
                self._drop(line, rec)

    def _drop(self, line: str, rec: _Line) -> None:
        del self._lines[line]
        if rec.evicted > self._forgotten:
            self._forgotten = rec.evicted

    def _send(self, sub: Subscriber, data: bytes, line: str) -> None:
        try:
            sub.send(data)
        except Exception:
            self._failed(("send", type(sub)), "delivering an event on line {line} to session {sid} failed",
                         line=log_text(line), sid=log_text(sub.sid))

    def _failed(self, key: Hashable, text: str, **fields: Any) -> None:
        held = self._throttle.allow(key, self._now())
        if held is None:
            return
        if held:
            text += " ({held} more like it since the last report)"
        self.log.failure(text, held=held, **fields)


def _replayed(data: bytes) -> bytes:
    """The event line as first sent, plus ``"replayed": true`` at the end of its params.

    Every event line ends ``...}}\n`` (params, then the notification), so the
    flag is spliced in without decoding or keeping the event.
    """
    return data[:-3] + b',"replayed":true}}\n'
