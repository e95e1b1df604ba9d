"""Reading the PBXs' event logs into one order, sans-IO: what a node gives its hub.

Every PBX has its own stream, and every entry carries the cluster-wide
``seq`` its append script took (the INCR and the XADD are one script), so
the seqs of all streams interleave in the order Redis ran the appends. One
XREAD over all the streams returns everything appended before it ran: sorted
by seq, that is the next stretch of the one order, the same on every node.
Only ``COUNT`` can cut a stream short; then nothing after the last seq read
from that stream is delivered yet (it is read again next time), so a later
read never brings a lower seq.

:class:`Follower` keeps, per PBX, the ID and seq of the last entry
delivered. :meth:`Follower.read` takes one XREAD's entries and returns what
to hand on, in order: :class:`Entry` (an event or a fail-over's gap marker)
and :class:`Gap` (entries of this stream went missing before this node read
them: trimmed away, or lost). Hand each on in order; the hub numbers the
events with their seq, and turns a Gap into "a resume from before this is
a rebuild" (:meth:`asttapi_server.clients.hub.Hub.lose`).

Pure module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["Entry", "Gap", "Follower"]


@dataclass(frozen=True)
class Entry:
    pbx: str
    seq: int
    kind: str
    data: bytes
    id: bytes
    token: int = 0


@dataclass(frozen=True)
class Gap:
    """Entries of ``pbx`` numbered below ``seq`` (and above the last one read) are missing."""

    pbx: str
    seq: int


@dataclass
class _Stream:
    id: bytes
    seq: int


@dataclass
class Read:
    """What :meth:`Follower.read` returns: ``out`` in order, and ``problems`` (text, for a throttled log)."""

    out: list[Entry | Gap] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _fields(raw: Sequence[bytes]) -> dict[bytes, bytes]:
    return {raw[i]: raw[i + 1] for i in range(0, len(raw) - 1, 2)}


class Follower:
    """See the module docstring. ``count`` is the XREAD COUNT the reads use."""

    def __init__(self, count: int = 1000) -> None:
        self.count = count
        self.seq = 0  # the last seq handed on
        self._streams: dict[str, _Stream] = {}

    def start(self, seq: int, positions: Mapping[str, tuple[bytes, int]]) -> None:
        """Begin after ``seq``; ``positions``: per PBX, the last entry's ID and seq (START script)."""
        self.seq = seq
        self._streams = {pbx: _Stream(id, last) for pbx, (id, last) in positions.items()}

    def reconfigure(self, fresh: Mapping[str, tuple[bytes, int]]) -> None:
        """Follow exactly the PBXs of ``fresh``: those followed already keep their place,
        new ones start at the position given."""
        self._streams = {pbx: self._streams.get(pbx) or _Stream(*pos) for pbx, pos in fresh.items()}

    def positions(self) -> dict[str, bytes]:
        """Per PBX, the ID to read after."""
        return {pbx: s.id for pbx, s in self._streams.items()}

    def read(self, replies: Mapping[str, Sequence[tuple[bytes, Sequence[bytes]]]]) -> Read:
        """One XREAD's entries (per PBX, oldest first, as ``(id, [field, value, ...])``)."""
        result = Read()
        # (sort key, index, entry or None if malformed, prev, pbx, id)
        found: list[tuple[int, int, Entry | None, int, str, bytes]] = []
        limit: int | None = None
        index = 0
        for pbx, items in replies.items():
            stream = self._streams.get(pbx)
            if stream is None or not items:
                continue
            key = stream.seq  # a malformed entry sorts right after the entry before it
            for entry_id, raw in items:
                index += 1
                f = _fields(raw)
                try:
                    entry: Entry | None = Entry(pbx, int(f[b"s"]), f.get(b"k", b"").decode("ascii", "replace"),
                                                f.get(b"d", b""), entry_id, int(f.get(b"t", b"0") or 0))
                    prev = int(f.get(b"p", b"0") or 0)
                except (KeyError, ValueError):
                    entry, prev = None, -1
                if entry is not None:
                    key = entry.seq
                found.append((key, index, entry, prev, pbx, entry_id))
            if len(items) >= self.count:
                limit = key if limit is None else min(limit, key)
        found.sort(key=lambda item: (item[0], item[1]))
        for key, _index, entry, prev, pbx, entry_id in found:
            if limit is not None and key > limit:
                break  # read again next time, after what the cut-short stream has first
            stream = self._streams[pbx]
            stream.id = entry_id
            if entry is None:
                result.problems.append(f"{pbx}: entry {entry_id!r} is not an event log entry; skipped")
                continue
            if entry.seq <= self.seq:
                result.problems.append(f"{pbx}: seq {entry.seq} after {self.seq}; skipped")
                continue
            if prev != stream.seq:
                result.out.append(Gap(pbx, entry.seq))
            result.out.append(entry)
            stream.seq = entry.seq
            self.seq = entry.seq
        return result
