"""Sans-IO AMI framing: bytes in, :class:`Message` objects out.

Pure ring: imports nothing from Twisted, never reads a clock.

Framing rules
-------------
- The stream may start with a banner line (``Asterisk Call Manager/1.0`` ...
  ``11.0.0``): the first line is the banner if it mentions "Call Manager" or has
  no colon.  It is stored in :attr:`AMIParser.banner`.
- A message ends at a blank line: ``\\r\\n\\r\\n`` or ``\\n\\n`` (so ``\\r\\n\\n``
  too), whichever comes first.  Blank lines between messages are no message.
- ``Response: Follows`` (``Command`` before Asterisk 14) ends at the line holding
  ``--END COMMAND--``, because its output may contain blank lines; or, when
  no end marker can follow, at its first blank line. Asterisk
  (``manager.c`` ``action_command``, 1.2 to 13) writes ``Response: Follows``,
  ``Privilege`` and ``ActionID`` lines, then the CLI output, then the marker
  straight after it. So a reply whose lines are all ``Key: value`` headers
  and then a blank line in the reply's own line ends (``\\r\\n\\r\\n`` after
  ``Response: Follows\\r\\n``) has no output for a marker to end: it is a
  proxy's or a broken PBX's (``Output:`` lines under the old name, or an
  empty reply without a marker). It ends there and is reported once (in
  :attr:`errors`), so one odd reply cannot hold every later message until the
  link's keepalive gives up; a bare ``--END COMMAND--`` block before the next
  response is that reply's tail and is dropped without a second report. Once a
  line of output has come, only the marker ends the reply.
- A block with no header at all is garbage: reported in :attr:`errors` (and to
  ``on_error``) and skipped.  A message (or an unterminated tail) longer than
  ``max_message_bytes`` is reported and skipped up to the next blank line; the
  buffer never grows past that cap.

There is one framing loop (:meth:`AMIParser._frame`) for every stream, with
or without a filter, whatever the read boundaries: the buffer is cut at its
blank lines in one C call (``bytes.split`` on ``\\r\\n\\r\\n``; a regex
split when a bare ``\\n\\n`` is in the buffer, pitfall 8), then each block
costs a first-line read and a dict lookup, and no decoding unless it is kept.
Once the loop has dropped an event by its first line (``Event: VarSet``), later
blocks starting with that exact line are left out before the loop, in C (a
regex of at most 64 such lines, the loop's own verdicts replayed), unless an
action that may answer with events is pending or a block is over the cap.

Event filter
------------
:meth:`AMIParser.set_event_filter` names the events the caller wants.  The
case rule, the one used everywhere the server asks "is this event wanted":
an event's name is compared stripped and lower-cased (``str.lower``) with the
wanted names lower-cased.  With a filter set, an ``Event:`` block whose name
is not wanted is dropped as bytes, after reading its first line only: no
:class:`Message`, no decoding.  Always passed on: anything that is not an
event (responses; garbage is still reported), the events the link itself
needs (:data:`ALWAYS_KEPT`: Shutdown, FullyBooted), and an event carrying an
``ActionID`` that is in :attr:`AMIParser.action_ids` (the protocol's live dict
of the pending actions that may answer with events, so the items of a
CoreShowChannels or Status list always reach their action).  Blocks that do not start exactly with ``Event: `` (a
lower-case ``event:`` key) are decoded in full and filtered by their name
afterwards, so the filtered output is exactly the unfiltered output restricted
to the kept messages.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Container, Iterable
from itertools import filterfalse
from typing import Any

from asttapi_server.ami.message import EVENT, OTHER, Message, _decode
from asttapi_server.idents import MAX_NAME_BYTES as _MAX_NAME_BYTES, MAX_NAMES as _MAX_NAMES
from asttapi_server.idents import ByName, wanted_name, wanted_names

__all__ = ["AMIParser", "ALWAYS_KEPT", "ByName", "wanted_name"]

#: Events passed on whatever the filter says: the link reacts to them.
ALWAYS_KEPT = frozenset(("shutdown", "fullybooted"))

_CRLF2 = b"\r\n\r\n"
_TERM = re.compile(rb"(\r\n\r\n|\n\n)")
# A regex search for a fixed two-byte needle runs at memchr speed, about
# twice as fast as ``buf.find(b"\n\n")`` (measured: 27 vs 57 us per 64 KiB).
_LFLF = re.compile(rb"\n\n")
_FOLLOWS = re.compile(rb"response:[ \t]*follows[ \t]*\r?\n", re.IGNORECASE)
_END_COMMAND = b"--END COMMAND--"
_END_COMMAND_ALONE = re.compile(rb"[\r\n]*--END COMMAND--[\r\n]*")
_EVENT = b"Event: "
_MAX_ERRORS = 100
_ACTIONID = b"actionid:"
_DROP = False  # cache value of a name that is not wanted
# First lines of dropped events whose verdict is replayed in C (see _frame): at
# most this many, each a plain name as Asterisk writes them.
_MAX_DROPPED_LINES = 64
_PLAIN_NAME = re.compile(rb"[A-Za-z0-9_-]{1,64}\r?")


def _is_header(line: bytes) -> bool:
    """``Key: value`` as :class:`Message` reads a header (a key without spaces before the colon)."""
    key, sep, _ = line.partition(b":")
    return bool(sep and key) and b" " not in key


class AMIParser:
    """Incremental AMI reader.  Feed it whatever the socket gave you."""

    banner: str | None

    def __init__(self, max_message_bytes: int = 1 << 20, on_error: Callable[[str], None] | None = None) -> None:
        self.max_message_bytes = max_message_bytes
        self.banner = None
        self.errors: list[str] = []
        self.error_count = 0
        self._on_error = on_error
        self._tail = b""
        self._reply = False  # the tail is an unfinished command reply
        # A command reply was ended at its blank line: a lone --END COMMAND-- block
        # before the next response is its tail (events in between leave it set).
        self._cut_reply = False
        self._at_start = True
        self._skipping = False
        self._names: dict[bytes, str] = {}
        self._keep: frozenset[str] | None = None
        self._kept: dict[bytes, str | bool] = {}
        self._dropped: list[bytes] = []  # names whose _kept verdict is _DROP (plain ones, in order met)
        self._drops: Callable[[bytes], Any] | None = None  # matches a block starting with one of them
        #: ActionIDs whose events always pass the filter (the protocol puts its
        #: live dict of the pending actions that may answer with events here).
        self.action_ids: Container[str] = {}

    def set_event_filter(self, names: Iterable[str] | None) -> None:
        """Pass on only events with these names (any case), plus :data:`ALWAYS_KEPT`,
        events of pending actions and every non-event; ``None``: every event."""
        self._kept = {}
        self._dropped = []
        self._drops = None
        wanted = wanted_names(names)
        self._keep = None if wanted is None else wanted | ALWAYS_KEPT

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
        out: list[Message] = []
        tail = self._tail
        if tail:
            buf = tail + data
            # Nothing new can end before the last bytes of the tail: a big
            # message arriving in small reads is scanned once, not per read.
            if self._reply:  # it ends with the newline of its --END COMMAND-- line
                held = data.find(b"\n") < 0
            else:
                start = max(0, len(tail) - 3)
                held = buf.find(_CRLF2, start) < 0 and _LFLF.search(buf, start) is None
            if held and not self._at_start and not self._skipping:
                self._set_tail(buf)
                return out
        else:
            buf = bytes(data)
        self._tail = b""
        self._reply = False
        if self._skipping:
            buf = self._skip(buf)
        if self._at_start and buf:
            buf = self._read_banner(buf)
        while buf:
            buf = buf.lstrip(b"\r\n")  # blank lines between messages
            if _FOLLOWS.match(buf):
                buf = self._command_reply(buf, out)
            elif buf:
                buf = self._frame(buf, out)
        return out

    def _frame(self, buf: bytes, out: list[Message]) -> bytes:
        """Cut ``buf`` at its blank lines and hand the kept blocks to ``out``;
        keep the unfinished rest as the tail.  Returns the rest of ``buf`` from
        a command reply on (framed by :meth:`_command_reply`), else ``b""``."""
        if _LFLF.search(buf) is None:
            parts = buf.split(_CRLF2)  # the usual stream: one C call
            seps = None
        else:  # bare line ends somewhere: the same rule, by a regex
            split = _TERM.split(buf)
            parts, seps = split[0::2], split[1::2]
        tail = parts.pop()
        cap = self.max_message_bytes
        keep = self._keep
        kept = self._kept
        append = out.append
        blocks: Iterable[bytes] = parts
        drops = self._drops
        if drops is not None and not self.action_ids and parts and max(map(len, parts)) <= cap:
            # The loop's own verdicts, replayed in C: an event whose first line
            # is "Event: <name>" with a name this loop already dropped (and no
            # pending action that could want it, no block over the cap) is left
            # out before the loop, which would only drop it again. Most events
            # of a busy PBX are such (about 18 of every 19 in a real call).
            blocks = filterfalse(drops, parts)
        for p in blocks:
            if not p.startswith(_EVENT):
                q = p.lstrip(b"\r\n")  # blank lines between messages
                if not q:
                    continue
                if _FOLLOWS.match(q):
                    # Command output may hold blank lines: from here on the
                    # reply is framed by its --END COMMAND-- line.
                    i = next(i for i, x in enumerate(parts) if x is p)
                    offset = sum(map(len, parts[:i])) + (4 * i if seps is None else sum(map(len, seps[:i])))
                    return buf[offset + len(p) - len(q) :]
                if q[:7] != _EVENT:
                    msg = self._block(q)
                    if msg is not None and (keep is None or self._wanted(msg)):
                        append(msg)
                    continue
                p = q
            if len(p) > cap:
                self._error(f"AMI message of {len(p)} bytes exceeds the {cap}-byte limit; skipped")
                continue
            # An event: its name from the first line, the rest undecoded.
            nl = p.find(b"\n")
            nb = p[7:nl] if nl >= 0 else p[7:]
            if keep is None:
                name = self._names.get(nb) or self._name(nb)
            else:
                name = kept.get(nb)
                if name is None:
                    name = self._keep_name(nb)
                if name is _DROP:
                    if not (self.action_ids and self._pending_id(p)):
                        continue
                    name = self._name(nb)
            append(Message(p, EVENT, name))  # type: ignore[arg-type]
        self._set_tail(tail.lstrip(b"\r\n"))  # blank lines are no message
        return b""

    def _command_reply(self, buf: bytes, out: list[Message]) -> bytes:
        """``buf`` starts with ``Response: Follows``: the reply ends with the
        line holding ``--END COMMAND--``, or at a blank line in its own line
        ends before that (see the module doc).  Returns what follows it."""
        e = buf.find(_END_COMMAND)
        head = _FOLLOWS.match(buf).end()  # type: ignore[union-attr]  # the caller matched it
        blank = b"\r\n\r\n" if buf[head - 2 : head] == b"\r\n" else b"\n\n"
        b = buf.find(blank, head - len(blank) // 2, e if e >= 0 else len(buf))
        if b >= 0 and (b <= head or all(map(_is_header, buf[head:b].split(b"\n")))):
            end = b + len(blank) // 2
            msg = self._block(buf[:end])
            if msg is not None:
                out.append(msg)
            self._cut_reply = True
            self._error(f"AMI 'Response: Follows' with only headers before a blank line (not Asterisk's Command"
                        f" reply, which ends at --END COMMAND--): ended there: {buf[:min(end, 80)]!r}")
            return buf[b + len(blank) :]
        nl = buf.find(b"\n", e) if e >= 0 else -1
        if nl < 0:
            self._set_tail(buf)
            self._reply = not self._skipping
            return b""
        msg = self._block(buf[: nl + 1])
        if msg is not None:
            out.append(msg)
        return buf[nl + 1 :]

    # -- pieces ------------------------------------------------------------

    def _name(self, nb: bytes) -> str:
        name = _decode(nb).strip()
        if len(self._names) < _MAX_NAMES and len(nb) <= _MAX_NAME_BYTES:
            self._names[nb] = name
        return name

    def _keep_name(self, nb: bytes) -> str | bool:
        """The name if an event whose first line holds ``nb`` is kept, else _DROP."""
        name = self._name(nb)
        result: str | bool = name if wanted_name(name) in self._keep else _DROP  # type: ignore[operator]
        if len(self._kept) < _MAX_NAMES and len(nb) <= _MAX_NAME_BYTES:
            self._kept[nb] = result
            if result is _DROP and len(self._dropped) < _MAX_DROPPED_LINES and _PLAIN_NAME.fullmatch(nb):
                self._dropped.append(nb)
                self._drops = re.compile(b"Event: (?:%s)\n" % b"|".join(map(re.escape, self._dropped))).match
        return result

    def _pending_id(self, block: bytes) -> bool:
        """Does this raw event carry the ActionID of a pending action?

        The first line that starts with ``ActionID:`` in any case, as
        :class:`Message` reads it. Asked of every dropped event while an
        action that may answer with events is pending, so one C pass to lower
        the ASCII letters and a plain find: a quarter of a case-blind regex's cost.
        """
        low = block.lower()
        if low.startswith(_ACTIONID):
            start = len(_ACTIONID)
        else:
            start = low.find(b"\n" + _ACTIONID)
            if start < 0:
                return False
            start += 1 + len(_ACTIONID)
        end = block.find(b"\n", start)
        return _decode(block[start:] if end < 0 else block[start:end]).strip() in self.action_ids

    def _wanted(self, msg: Message) -> bool:
        """The filter's verdict on a decoded message (filter set)."""
        if msg.kind != EVENT or wanted_name(msg.name) in self._keep:  # type: ignore[operator]
            return True
        if self.action_ids:
            aid = msg.action_id
            return aid is not None and aid in self.action_ids
        return False

    def _block(self, block: bytes) -> Message | None:
        if len(block) > self.max_message_bytes:
            self._error(f"AMI message of {len(block)} bytes exceeds the {self.max_message_bytes}-byte limit; skipped")
            return None
        msg = Message(block)
        cut, self._cut_reply = self._cut_reply, False
        if msg.kind == OTHER and not msg.items():
            if cut and _END_COMMAND_ALONE.fullmatch(block):
                return None  # the marker of a reply ended (and reported) at its blank line
            self._error(f"AMI block without any header skipped: {block[:80]!r}")
            return None
        return msg

    def _set_tail(self, tail: bytes) -> None:
        """Keep an unfinished block (skip it if it is already too long)."""
        if len(tail) > self.max_message_bytes:
            self._error(
                f"AMI message longer than {self.max_message_bytes} bytes ({len(tail)} so far, no end in sight); "
                "skipping to the next blank line"
            )
            self._tail = tail[-3:]
            self._skipping = True
            return
        self._tail = tail

    def _skip(self, buf: bytes) -> bytes:
        """Drop the rest of an oversized message, up to its blank line."""
        i = buf.find(_CRLF2)
        m = _LFLF.search(buf, 0, i + 4 if i >= 0 else len(buf))
        if m is not None:
            end = m.end()
        elif i >= 0:
            end = i + 4
        else:
            self._tail = buf[-3:]
            return b""
        self._skipping = False
        return buf[end:]

    def _read_banner(self, buf: bytes) -> bytes:
        # Leading blank lines are not a banner.
        stripped = buf.lstrip(b"\r\n")
        if not stripped:
            return b""
        nl = stripped.find(b"\n")
        if nl < 0:
            if len(stripped) > self.max_message_bytes:
                self._at_start = False
                self._set_tail(stripped)
            else:
                self._tail = stripped
            return b""
        self._at_start = False
        line = stripped[:nl].rstrip(b"\r")
        if b"Call Manager" in line or b":" not in line:
            self.banner = _decode(line).strip()
            return stripped[nl + 1 :]
        return stripped

    @property
    def buffered(self) -> int:
        """Bytes held for an unfinished message (never above the cap)."""
        return len(self._tail)
