"""Sans-IO AMI framing: bytes in, :class:`Message` objects out.

Pure ring: imports nothing from Twisted, never reads a clock.

Framing rules
-------------
- The stream may start with a banner line (``Asterisk Call Manager/1.0`` ...
  ``11.0.0``): the first line is the banner if it mentions "Call Manager" or has
  no colon.  It is stored in :attr:`AMIParser.banner`.
- A message ends at a blank line: ``\\r\\n\\r\\n`` or ``\\n\\n`` (so ``\\r\\n\\n``
  too).  Any number of extra blank lines between messages is fine.
- ``Response: Follows`` (``Command`` before Asterisk 14) ends at the line holding
  ``--END COMMAND--``, because its output may contain blank lines.
- A block with no header at all is garbage: reported in :attr:`errors` (and to
  ``on_error``) and skipped.  A message (or an unterminated tail) longer than
  ``max_message_bytes`` is reported and skipped up to the next blank line; the
  buffer never grows past that cap.

Speed: the common case (``\\r\\n`` only, no command output in the buffer) is one
``bytes.split`` per read; an event's name is read from its first line without
decoding the rest (see :mod:`asttapi_server.ami.message`).

Event filter
------------
:meth:`AMIParser.set_event_filter` names the events the caller wants (case-
insensitive).  With a filter set, an ``Event:`` block whose name is not wanted
is dropped as bytes: no :class:`Message`, no decoding.  Always passed on:
anything that is not an event (responses, garbage is still reported), the
events the link itself needs (:data:`ALWAYS_KEPT`: Shutdown, FullyBooted), and
an event carrying an ``ActionID`` that is in :attr:`AMIParser.action_ids` (the
protocol's live dict of pending actions, so the items of a CoreShowChannels or
Status list always reach their action).

The filtered fast path (``\\r\\n`` only, nothing pending, buffer below the cap)
does not even visit the dropped blocks in Python: one scan of the buffer
(the C accelerator's ``scan_blocks``, or a compiled regex as its pure-Python
twin; see :mod:`asttapi_server.ami.speedups`) finds the blocks that *may* be
kept (a block not starting with ``Event: <letter/digit/_>``, or whose name
starts like a wanted name, ASCII case folded), and only those are looked at; the exact decision (the name decoded and
stripped as :class:`Message` does, compared lower-cased) is made per candidate
and cached per raw name.  Blocks that do not start exactly with ``Event: `` (a
lower-case ``event:`` key, leading blank lines) are candidates too: they are
decoded in full and dropped afterwards if their event name is not wanted.  So
the filtered output is exactly the unfiltered output restricted to the kept
messages, whatever the read boundaries.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Container, Iterable

from asttapi_server.ami import speedups
from asttapi_server.ami.message import EVENT, OTHER, Message, _decode

__all__ = ["AMIParser", "ALWAYS_KEPT"]

#: Events passed on whatever the filter says: the link reacts to them.
ALWAYS_KEPT = frozenset(("shutdown", "fullybooted"))

_CRLF2 = b"\r\n\r\n"
_TERM = re.compile(rb"\r\n\r\n|\n\n")
# A regex search for a fixed two-byte needle runs at memchr speed, about
# twice as fast as ``b"\n\n" in buf`` (measured: 27 vs 57 us per 64 KiB).
_LFLF = re.compile(rb"\n\n")
_FOLLOWS = re.compile(rb"[\r\n]*response:[ \t]*follows[ \t]*\r?\n", re.IGNORECASE)
_END_COMMAND = b"--END COMMAND--"
_MAX_ERRORS = 100
_MAX_NAMES = 4096
_ACTIONID = re.compile(rb"^actionid:([^\n]*)", re.IGNORECASE | re.MULTILINE)
_DROP = False  # cache value of a name that is not wanted


def _wanted_heads(wanted: Iterable[str]) -> tuple[tuple[bytes, bool], ...] | None:
    """The name heads a kept block may start with: ``(head, exact)`` pairs, the
    head in lower-case ASCII; None if a name cannot be put that way (then every
    block is looked at, on the per-block path).

    A block is skipped unseen only if it starts with ``Event: `` and a letter,
    digit or ``_`` and its name cannot be a wanted one: it does not start with
    a wanted name followed by a character other than a letter, digit or ``_``
    (ASCII case folded).  That is a superset of the kept blocks (checked exactly
    afterwards): a name that strips and lower-cases to a wanted one starts with
    it, and ``str.lower`` never shortens a name, so ``HangupRequest`` can never
    become ``hangup``.  Only one non-ASCII character lower-cases to an ASCII
    one (U+212A KELVIN SIGN -> ``k``), so a wanted name is matched exactly only
    up to its first ``k`` or non-ASCII character, and as a prefix from there on
    (``exact`` False).
    """
    heads = set()
    for name in wanted:
        head = ""
        for ch in name:
            if not ch.isascii() or ch in "kK":
                break
            head += ch
        if not head or not (head[0].isalnum() or head[0] == "_"):
            return None
        heads.add((head.lower().encode("ascii"), head == name))
    return tuple(sorted(heads, key=lambda h: len(h[0]), reverse=True))


def _candidates_regex(heads: tuple[tuple[bytes, bool], ...]) -> re.Pattern[bytes]:
    """The pure-Python scan for :func:`_wanted_heads`: the separators followed
    by a block that may be kept, matched from their ``\\n``: ``\\n\\r\\n``
    (the caller checks the ``\\r`` before it), and every ``\\n\\n`` (bare line
    ends: the caller goes slow)."""
    alts = []
    for head, exact in heads:
        alt = re.escape(head)
        if exact:
            alt += rb"(?![A-Za-z0-9_])"
        alts.append(alt)
    body = b"|".join(alts)
    return re.compile(rb"\n(?:\r\n(?!Event: (?!(?i:" + body + rb"))[A-Za-z0-9_])|\n)")


class AMIParser:
    """Incremental AMI reader.  Feed it whatever the socket gave you."""

    banner: str | None

    def __init__(
        self,
        max_message_bytes: int = 1 << 20,
        on_error: Callable[[str], None] | None = None,
        *,
        accelerate: bool = True,
    ) -> None:
        """``accelerate=False``: never use the C scan, even when it is built
        (the tests compare the two)."""
        self.max_message_bytes = max_message_bytes
        self.banner = None
        self.errors: list[str] = []
        self.error_count = 0
        self._on_error = on_error
        self._tail = b""
        self._at_start = True
        self._skipping = False
        self._names: dict[bytes, str] = {}
        self._keep: frozenset[str] | None = None
        self._kept: dict[bytes, str | bool] = {}
        self._candidates: re.Pattern[bytes] | None = None
        self._heads: tuple[tuple[bytes, bool], ...] | None = None
        self._scan = speedups.scan_blocks if accelerate else None
        #: ActionIDs whose events always pass the filter (the protocol puts its
        #: live dict of pending actions here).
        self.action_ids: Container[str] = {}

    def set_event_filter(self, names: Iterable[str] | None) -> None:
        """Pass on only events with these names (any case), plus :data:`ALWAYS_KEPT`,
        events of pending actions and every non-event; ``None``: every event."""
        self._kept = {}
        if names is None:
            self._keep = None
            self._candidates = self._heads = None
            return
        wanted = {str(n).strip().lower() for n in names}
        self._keep = frozenset(wanted | ALWAYS_KEPT)
        self._heads = _wanted_heads(self._keep)
        self._candidates = None if self._heads is None else _candidates_regex(self._heads)

    @property
    def event_filter(self) -> frozenset[str] | None:
        """The kept event names, lower-cased (with :data:`ALWAYS_KEPT`), or None."""
        return self._keep

    # -- reporting ---------------------------------------------------------

    def _error(self, text: str) -> None:
        self.error_count += 1
        self.errors.append(text)
        if len(self.errors) > _MAX_ERRORS:
            del self.errors[: len(self.errors) - _MAX_ERRORS]
        if self._on_error is not None:
            self._on_error(text)

    # -- feeding -----------------------------------------------------------

    def feed(self, data: bytes) -> list[Message]:
        """Take the next bytes of the stream; return the messages they completed."""
        tail = self._tail
        if (
            self._candidates is not None
            and not self.action_ids
            and not self._skipping
            and not self._at_start
            and len(tail) + len(data) <= self.max_message_bytes
        ):
            # The filtered fast path, without copying the read behind the tail.
            if not tail:
                return self._feed_filtered(bytes(data), 0)
            j = data.find(_CRLF2)
            if j >= 0:
                # Frame the tail plus the read up to its first separator as
                # one small buffer (a separator across the boundary, or any
                # "\n\n", is in there), then the rest of the read in place.
                self._tail = b""
                out = self._feed_filtered(tail + data[: j + 4], 0)
                if self._tail or self._skipping:
                    # The small buffer did not end on a block boundary
                    # (command output, "\r\n\r\n\r\n", ...): as one buffer.
                    out.extend(self.feed(data[j + 4 :]))
                else:
                    out.extend(self._feed_filtered(bytes(data), j + 4))
                return out
        if self._tail:
            old = len(self._tail)
            buf = self._tail + data
            # Nothing new can end before old-3: skip the scan of a long tail
            # (a big message arriving in small reads stays linear).
            start = old - 3 if old > 3 else 0
            # CRLF2 first: usually found at once, while "\n\n" is usually
            # absent and would cost a scan of the whole read.
            if (
                buf.find(_CRLF2, start) < 0
                and buf.find(b"\n\n", start) < 0
                and not self._at_start
                and not self._skipping
            ):
                self._tail = buf
                if len(buf) > self.max_message_bytes:
                    self._oversize(len(buf))
                return []
        else:
            buf = bytes(data)
        self._tail = b""  # buf holds it now; every path below sets the new tail
        if not buf:
            return []
        if self._skipping:
            buf = self._skip(buf)
            if not buf:
                return []
        if self._at_start:
            buf = self._read_banner(buf)
            if not buf:
                return []
        if self._keep is not None and self._candidates is not None and not self.action_ids:
            if len(buf) <= self.max_message_bytes:
                return self._feed_filtered(buf, 0)  # its scan finds any "\n\n" too
        if _LFLF.search(buf) is not None:
            return self._feed_slow(buf)
        if self._keep is not None:
            return self._feed_fast_filtered(buf)
        return self._feed_fast(buf)

    def _feed_filtered(self, buf: bytes, first: int) -> list[Message]:
        """Filter set, nothing pending, buffer under the cap.

        The blocks start at ``first``: 0, or just after a ``\\r\\n\\r\\n`` of
        ``buf`` (what came before is handled already).  The scan (C, or the
        regex) gives the blocks that may be kept and doubles as the check for
        bare ``\\n\\n`` (then: the slow path)."""
        scan = self._scan
        if scan is not None:
            found = scan(buf, first, self._heads)
            if found is None:
                return self._feed_slow(buf[first:] if first else buf)
            spans, last = found
        else:
            spans, last = self._candidate_spans(buf, first)  # type: ignore[misc]
            if last == -2:
                return self._feed_slow(buf[first:] if first else buf)
            if last == -3:
                return self._feed_fast_filtered(buf[first:] if first else buf)
        if last < first:
            self._set_tail(buf[first:] if first else buf)
            return []
        out: list[Message] = []
        append = out.append
        find = buf.find
        startswith = buf.startswith
        kept = self._kept
        it = iter(spans)
        for s, e in zip(it, it):
            if startswith(b"Event: ", s):
                n = find(b"\n", s, e)
                nb = buf[s + 7 : n if n >= 0 else e]
                name = kept.get(nb)
                if name is None:
                    name = self._keep_name(nb)
                if name is not _DROP:
                    append(Message(buf[s:e], EVENT, name))  # type: ignore[arg-type]
                continue
            p = buf[s:e]
            if _FOLLOWS.match(p):
                out.extend(self._feed_slow(buf[s:]))
                return out
            msg = self._block(p)
            if msg is not None and self._wanted(msg):
                append(msg)
        self._set_tail(buf[last + 4 :])
        return out

    def _candidate_spans(self, buf: bytes, first: int) -> tuple[list[int], int]:
        """The pure-Python twin of ``_speedups.scan_blocks``: ``(spans, last)``,
        spans flat ``[s0, e0, s1, e1, ...]``; ``last`` -2 for a bare ``\\n\\n``
        (slow path), -3 for a ``\\n\\r\\n`` that is no separator before a
        candidate (framed by ``split``, block by block)."""
        # From the separator before ``first``: its block is a candidate like
        # any other, and a "\n\n" across it is seen.
        found = [m.span() for m in self._candidates.finditer(buf, first - 3 if first else 0)]  # type: ignore[union-attr]
        for a, b in found:
            if b - a == 2:  # "\n\n": bare line ends somewhere
                return [], -2
            if not a or buf[a - 1] != 13:  # "\n\r\n" that is no "\r\n\r\n"
                return [], -3
        last = buf.rfind(_CRLF2)
        spans: list[int] = []
        if last < first:
            return spans, last
        append = spans.append
        find = buf.find
        e = -1
        # The first block of a buffer starts at 0, not after a separator;
        # every other candidate starts where its span ends.  A span starting
        # before the end of the block just handled (``\r\n\r\n\r\n``) is
        # inside it; one ending past the last separator starts the tail.
        if not first:
            found.insert(0, (-1, 0))
        for a, s in found:
            if a < e:
                continue
            if s > last:
                break
            e = find(_CRLF2, s)
            append(s)
            append(e)
        return spans, last

    def _feed_fast_filtered(self, buf: bytes) -> list[Message]:
        """Filter set, ``\\r\\n`` only: every block looked at (pending actions,
        a buffer above the cap, or wanted names the regex cannot express)."""
        parts = buf.split(_CRLF2)
        tail = parts.pop()
        out: list[Message] = []
        kept = self._kept
        big = len(buf) > self.max_message_bytes
        for i, p in enumerate(parts):
            if p[:7] == b"Event: " and (not big or len(p) <= self.max_message_bytes):
                n = p.find(b"\n")
                name = kept.get(p[7:n] if n >= 0 else p[7:])
                if name is None:
                    name = self._keep_name(p[7:n] if n >= 0 else p[7:])
                if name is not _DROP:
                    out.append(Message(p, EVENT, name))  # type: ignore[arg-type]
                elif self.action_ids and self._pending_id(p):
                    out.append(Message(p, EVENT, self._name(p[7:n] if n >= 0 else p[7:])))
            elif _FOLLOWS.match(p):
                offset = sum(map(len, parts[:i])) + 4 * i
                out.extend(self._feed_slow(buf[offset:]))
                return out
            else:
                msg = self._block(p)
                if msg is not None and self._wanted(msg):
                    out.append(msg)
        self._set_tail(tail)
        return out

    def _feed_fast(self, buf: bytes) -> list[Message]:
        parts = buf.split(_CRLF2)
        tail = parts.pop()
        out: list[Message] = []
        append = out.append
        names = self._names
        big = len(buf) > self.max_message_bytes
        for i, p in enumerate(parts):
            if p[:7] == b"Event: " and (not big or len(p) <= self.max_message_bytes):
                e = p.find(b"\n")
                nb = p[7:e] if e >= 0 else p[7:]
                name = names.get(nb)
                if name is None:
                    name = self._name(nb)
                append(Message(p, EVENT, name))
            else:
                if _FOLLOWS.match(p):
                    # Command output may hold blank lines: frame the rest by
                    # "--END COMMAND--" instead.
                    offset = sum(map(len, parts[:i])) + 4 * i
                    out.extend(self._feed_slow(buf[offset:]))
                    return out
                msg = self._block(p)
                if msg is not None:
                    append(msg)
        self._set_tail(tail)
        return out

    def _feed_slow(self, buf: bytes) -> list[Message]:
        out: list[Message] = []
        pos = 0
        n = len(buf)
        while pos < n:
            if _FOLLOWS.match(buf, pos):
                end = buf.find(_END_COMMAND, pos)
                if end < 0:
                    break
                nl = buf.find(b"\n", end)
                if nl < 0:
                    break
                block, pos = buf[pos : nl + 1], nl + 1
            else:
                m = _TERM.search(buf, pos)
                if m is None:
                    break
                block, pos = buf[pos : m.start()], m.end()
            if (
                self._keep is not None
                and block[:7] == b"Event: "
                and len(block) <= self.max_message_bytes
                and not self._peek(block)
            ):
                continue
            msg = self._block(block)
            if msg is not None and (self._keep is None or self._wanted(msg)):
                out.append(msg)
        self._set_tail(buf[pos:])
        return out

    # -- pieces ------------------------------------------------------------

    def _name(self, nb: bytes) -> str:
        name = nb.decode("utf-8", "replace").strip()
        if len(self._names) < _MAX_NAMES:
            self._names[nb] = name
        return name

    def _keep_name(self, nb: bytes) -> str | bool:
        """The name if an event whose first line holds ``nb`` is kept, else _DROP."""
        name = self._name(nb)
        result: str | bool = name if name.lower() in self._keep else _DROP  # type: ignore[operator]
        if len(self._kept) < _MAX_NAMES:
            self._kept[nb] = result
        return result

    def _peek(self, block: bytes) -> bool:
        """May this ``Event: `` block be kept?  (False: drop it undecoded.)"""
        n = block.find(b"\n")
        nb = block[7:n] if n >= 0 else block[7:]
        name = self._kept.get(nb)
        if name is None:
            name = self._keep_name(nb)
        return name is not _DROP or bool(self.action_ids and self._pending_id(block))

    def _pending_id(self, block: bytes) -> bool:
        """Does this raw event carry the ActionID of a pending action?"""
        m = _ACTIONID.search(block)
        return m is not None and _decode(m.group(1)).strip() in self.action_ids

    def _wanted(self, msg: Message) -> bool:
        """The filter's verdict on a decoded message (filter set)."""
        if msg.kind != EVENT or msg.name.lower() in self._keep:  # type: ignore[operator]
            return True
        if self.action_ids:
            aid = msg.action_id
            return aid is not None and aid in self.action_ids
        return False

    def _block(self, block: bytes) -> Message | None:
        block = block.lstrip(b"\r\n")
        if not block:
            return None
        if len(block) > self.max_message_bytes:
            self._error(
                f"AMI message of {len(block)} bytes exceeds the {self.max_message_bytes}-byte limit; skipped"
            )
            return None
        msg = Message(block)
        if msg.kind == OTHER and not msg.items():
            self._error(f"AMI block without any header skipped: {block[:80]!r}")
            return None
        return msg

    def _set_tail(self, tail: bytes) -> None:
        self._tail = tail
        if len(tail) > self.max_message_bytes:
            self._oversize(len(tail))

    def _oversize(self, size: int) -> None:
        self._error(
            f"AMI message longer than {self.max_message_bytes} bytes ({size} so far, no end in sight); "
            "skipping to the next blank line"
        )
        self._tail = self._tail[-3:]
        self._skipping = True

    def _skip(self, buf: bytes) -> bytes:
        m = _TERM.search(buf)
        if m is None:
            self._tail = buf[-3:]
            return b""
        self._skipping = False
        self._tail = b""
        return buf[m.end() :]

    def _read_banner(self, buf: bytes) -> bytes:
        # Leading blank lines are not a banner.
        stripped = buf.lstrip(b"\r\n")
        if not stripped:
            self._tail = b""
            return b""
        nl = stripped.find(b"\n")
        if nl < 0:
            self._tail = stripped
            if len(stripped) > self.max_message_bytes:
                self._at_start = False
                self._oversize(len(stripped))
            return b""
        self._at_start = False
        line = stripped[:nl].rstrip(b"\r")
        if b"Call Manager" in line or b":" not in line:
            self.banner = line.decode("utf-8", "replace").strip()
            return stripped[nl + 1 :]
        return stripped

    @property
    def buffered(self) -> int:
        """Bytes held for an unfinished message (never above the cap)."""
        return len(self._tail)
