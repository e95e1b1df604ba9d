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
"""

from __future__ import annotations

import re
from collections.abc import Callable

from asttapi_server.ami.message import EVENT, OTHER, Message

__all__ = ["AMIParser"]

_CRLF2 = b"\r\n\r\n"
_TERM = re.compile(rb"\r\n\r\n|\n\n")
# A regex search for a fixed two-byte needle runs at memchr speed, about
# twice as fast as ``b"\n\n" in buf`` (measured: 27 vs 57 us per 64 KiB).
_LFLF = re.compile(rb"\n\n")
_FOLLOWS = re.compile(rb"[\r\n]*response:[ \t]*follows[ \t]*\r?\n", re.IGNORECASE)
_END_COMMAND = b"--END COMMAND--"
_MAX_ERRORS = 100
_MAX_NAMES = 4096


class AMIParser:
    """Incremental AMI reader.  Feed it whatever the socket gave you."""

    banner: str | None

    def __init__(
        self,
        max_message_bytes: int = 1 << 20,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.max_message_bytes = max_message_bytes
        self.banner = None
        self.errors: list[str] = []
        self.error_count = 0
        self._on_error = on_error
        self._tail = b""
        self._at_start = True
        self._skipping = False
        self._names: dict[bytes, str] = {}

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
        if self._tail:
            old = len(self._tail)
            buf = self._tail + data
            # Nothing new can end before old-3: skip the scan of a long tail
            # (a big message arriving in small reads stays linear).
            start = old - 3 if old > 3 else 0
            if (
                buf.find(b"\n\n", start) < 0
                and buf.find(_CRLF2, start) < 0
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
        if _LFLF.search(buf) is not None:
            return self._feed_slow(buf)
        return self._feed_fast(buf)

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
            msg = self._block(block)
            if msg is not None:
                out.append(msg)
        self._set_tail(buf[pos:])
        return out

    # -- pieces ------------------------------------------------------------

    def _name(self, nb: bytes) -> str:
        name = nb.decode("utf-8", "replace").strip()
        if len(self._names) < _MAX_NAMES:
            self._names[nb] = name
        return name

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
