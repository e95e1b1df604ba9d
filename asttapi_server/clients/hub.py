"""Fan-out of TAPI events to the client sessions that opened their lines.

The hub numbers every published event with a per-server increasing ``seq``,
encodes it once, keeps it in a bounded replay ring and hands the same bytes
to every subscriber of the event's line. A LINE_NEWCALL whose ``owner`` is a
session's ``sid`` is not sent to that session (it originated the call and
already holds the handle). A line-less event (``line=None``: the PBX link's
LINE_LINEDEVSTATE) goes to every open line, once per line.
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Hashable
from typing import Protocol

from twisted.logger import Logger

from asttapi_server.clients.codec import encode_event, encode_notification, event_params
from asttapi_server.core.events import TapiEvent


class Subscriber(Protocol):
    """What the hub needs of a session."""

    sid: Hashable

    def send(self, data: bytes) -> None:
        """Queue one encoded line for the client; must not raise."""


class Hub:
    """Assigns seq, keeps a bounded replay ring, delivers to sessions.

    ``epoch`` names this server run: a seq is only meaningful together with
    the epoch it came from (the server restarts at seq 1).
    """

    log = Logger()

    def __init__(self, ring_size: int = 10000, *, epoch: str | None = None) -> None:
        if ring_size < 0:
            raise ValueError("ring_size must not be negative")
        self.epoch = epoch if epoch is not None else secrets.token_hex(8)
        self.seq = 0
        self._ring: deque[tuple[int, str | None, TapiEvent, bytes | None]] = deque(maxlen=ring_size)
        self._ring_size = ring_size
        # highest seq evicted from the ring, per line (None: line-less events)
        self._evicted: dict[str | None, int] = {}
        self._lines: dict[str, dict[Hashable, Subscriber]] = {}
        self._next_sid = 0

    # -- sessions --------------------------------------------------------

    def new_sid(self) -> int:
        """A fresh session id, the ``owner`` a session passes to make_call."""
        self._next_sid += 1
        return self._next_sid

    def subscribe(self, subscriber: Subscriber, line: str) -> None:
        """Deliver ``line``'s events to ``subscriber`` (idempotent)."""
        self._lines.setdefault(line, {})[subscriber.sid] = subscriber

    def unsubscribe(self, subscriber: Subscriber, line: str) -> None:
        subs = self._lines.get(line)
        if subs is not None:
            subs.pop(subscriber.sid, None)
            if not subs:
                del self._lines[line]

    def subscribers(self, line: str) -> int:
        """How many sessions have ``line`` open."""
        return len(self._lines.get(line, ()))

    @property
    def open_lines(self) -> int:
        return len(self._lines)

    # -- events ----------------------------------------------------------

    def publish(self, event: TapiEvent) -> int:
        """Number, remember and deliver ``event``; returns its seq."""
        self.seq += 1
        seq = self.seq
        line = event.line
        data = encode_event(event, seq) if line is not None else None
        self._remember(seq, line, event, data)
        if line is not None:
            subs = self._lines.get(line)
            if subs:
                skip = event.owner if event.msg == "LINE_NEWCALL" else None
                for sid, sub in tuple(subs.items()):
                    if skip is not None and sid == skip:
                        continue
                    self._send(sub, data)  # type: ignore[arg-type]
        else:
            for name, subs in tuple(self._lines.items()):
                line_data = encode_event(event, seq, name)
                for sub in tuple(subs.values()):
                    self._send(sub, line_data)
        return seq

    def missed(
        self, line: str, since: int, epoch: str | None = None, *, sid: Hashable | None = None
    ) -> list[bytes] | None:
        """The encoded events of ``line`` with seq > ``since``, oldest first.

        Each carries ``"replayed": true`` (a resumed client must not pop a
        call again that may have ended since). A LINE_NEWCALL owned by
        ``sid`` is left out, as in :meth:`publish`.
        ``None`` means the ring no longer holds all of them (or ``since``
        comes from another server run): the client must rebuild its state
        from the line's current calls instead.
        """
        if epoch is not None and epoch != self.epoch:
            return None
        if since > self.seq:
            return None
        lost = max(self._evicted.get(line, 0), self._evicted.get(None, 0))
        if lost > since:
            return None
        out: list[bytes] = []
        for seq, ev_line, event, data in reversed(self._ring):
            if seq <= since:
                break
            if ev_line == line:
                if sid is not None and event.msg == "LINE_NEWCALL" and event.owner == sid:
                    continue
                out.append(_replayed(event, seq, line))
            elif ev_line is None:
                out.append(_replayed(event, seq, line))
        out.reverse()
        return out

    # -- internals -------------------------------------------------------

    def _remember(self, seq: int, line: str | None, event: TapiEvent, data: bytes | None) -> None:
        if self._ring_size == 0:
            self._evicted[line] = seq
            return
        if len(self._ring) == self._ring_size:
            old_seq, old_line, _, _ = self._ring[0]
            self._evicted[old_line] = old_seq
        self._ring.append((seq, line, event, data))

    def _send(self, sub: Subscriber, data: bytes) -> None:
        try:
            sub.send(data)
        except Exception:
            self.log.failure("delivering an event to session {sid} failed", sid=sub.sid)


def _replayed(event: TapiEvent, seq: int, line: str) -> bytes:
    """The event as first sent, plus ``"replayed": true`` (encoded anew: replays are rare)."""
    params = event_params(event, seq, line)
    params["replayed"] = True
    return encode_notification(event.msg, params)
