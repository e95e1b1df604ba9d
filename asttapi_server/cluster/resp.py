"""The Redis wire protocol (RESP2), sans-IO: commands to bytes, bytes to replies.

Shaped like h11: :func:`command` returns the bytes of one command;
:class:`Reader` takes bytes as they arrive (``feed``) and hands out whole
replies (``next`` returns :data:`NEED_DATA` until one is complete). Replies
are plain values: ``bytes`` (bulk and status strings), ``int``, ``None`` (nil),
``list`` (arrays, nested), and :class:`ReplyError` for an error reply, which
is a value here (an error inside an array is an element) and an exception for
whoever waits on that command.

The reader is incremental (a reply split over many reads is never parsed
again from its start) and bounded: a line without CRLF, a bulk string, an
array or the nesting past the limits raises :class:`RespProtocolError`, after
which the connection must be dropped (the stream can no longer be framed).

Pure module: no reactor, no I/O.
"""

from __future__ import annotations

from collections import deque
from typing import Any

__all__ = ["NEED_DATA", "ReplyError", "RespProtocolError", "command", "Reader"]


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


#: What :meth:`Reader.next` returns while no whole reply is buffered.
NEED_DATA: Any = _NeedData()


class ReplyError(Exception):
    """An error reply (``-ERR unknown command``); ``str()`` is Redis's text, ``code`` its first word."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.code = text.split(" ", 1)[0]


class RespProtocolError(ValueError):
    """The bytes from the server are not RESP (or break a limit): drop the connection."""


def _arg(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, int) and not isinstance(value, bool):
        return b"%d" % value
    raise TypeError(f"a Redis argument must be bytes, str or int, not {type(value).__name__}")


def command(*args: Any) -> bytes:
    """The bytes of one command (an array of bulk strings); ``str`` goes as UTF-8."""
    if not args:
        raise ValueError("a Redis command needs at least its name")
    parts = [b"*%d\r\n" % len(args)]
    for value in args:
        data = _arg(value)
        parts.append(b"$%d\r\n" % len(data))
        parts.append(data)
        parts.append(b"\r\n")
    return b"".join(parts)


class Reader:
    """Bytes in (``feed``), whole replies out (``next``), oldest first.

    ``max_line``: longest header or status line; ``max_bulk``: longest bulk
    string; ``max_items``: longest array; ``max_depth``: arrays in arrays.
    The defaults fit every reply asttapi asks for with room to spare.
    """

    def __init__(self, *, max_line: int = 65536, max_bulk: int = 64 << 20,
                 max_items: int = 1 << 20, max_depth: int = 8) -> None:
        self.max_line = max_line
        self.max_bulk = max_bulk
        self.max_items = max_items
        self.max_depth = max_depth
        self._buf = bytearray()
        self._pos = 0
        # Arrays being filled, innermost last: [items still to come, items so far].
        self._stack: list[list[Any]] = []
        self._bulk = -1  # the length of the bulk string being waited for, else -1
        self._replies: deque[Any] = deque()

    def feed(self, data: bytes) -> None:
        """Add bytes from the server; raises :class:`RespProtocolError` if they are not RESP."""
        self._buf += data
        try:
            self._parse()
        finally:
            if self._pos:
                del self._buf[: self._pos]
                self._pos = 0

    def next(self) -> Any:
        """The oldest whole reply not yet taken, or :data:`NEED_DATA`."""
        return self._replies.popleft() if self._replies else NEED_DATA

    @property
    def buffered(self) -> int:
        """Bytes held that are not a whole reply yet."""
        return len(self._buf)

    # -- parsing ---------------------------------------------------------------

    def _parse(self) -> None:
        buf = self._buf
        while True:
            if self._bulk >= 0:
                end = self._pos + self._bulk
                if len(buf) < end + 2:
                    return
                if buf[end:end + 2] != b"\r\n":
                    raise RespProtocolError("a bulk string does not end with CRLF")
                value: Any = bytes(buf[self._pos:end])
                self._pos = end + 2
                self._bulk = -1
                self._done(value)
                continue
            eol = buf.find(b"\r\n", self._pos)
            if eol < 0:
                if len(buf) - self._pos > self.max_line:
                    raise RespProtocolError(f"a reply line is longer than {self.max_line} bytes")
                return
            if eol - self._pos > self.max_line:
                raise RespProtocolError(f"a reply line is longer than {self.max_line} bytes")
            kind = buf[self._pos:self._pos + 1]
            body = bytes(buf[self._pos + 1:eol])
            self._pos = eol + 2
            if kind == b"+":
                self._done(body)
            elif kind == b"-":
                self._done(ReplyError(body.decode("utf-8", "replace")))
            elif kind == b":":
                self._done(self._int(body))
            elif kind == b"$":
                n = self._int(body)
                if n == -1:
                    self._done(None)
                elif 0 <= n <= self.max_bulk:
                    self._bulk = n
                else:
                    raise RespProtocolError(f"a bulk string of {n} bytes (at most {self.max_bulk})")
            elif kind == b"*":
                n = self._int(body)
                if n == -1:
                    self._done(None)
                elif n == 0:
                    self._done([])
                elif 0 < n <= self.max_items:
                    if len(self._stack) >= self.max_depth:
                        raise RespProtocolError(f"arrays nested deeper than {self.max_depth}")
                    self._stack.append([n, []])
                else:
                    raise RespProtocolError(f"an array of {n} items (at most {self.max_items})")
            else:
                raise RespProtocolError(f"unknown reply type {bytes(kind)!r}")

    @staticmethod
    def _int(body: bytes) -> int:
        try:
            return int(body)
        except ValueError:
            raise RespProtocolError(f"not an integer: {body[:40]!r}") from None

    def _done(self, value: Any) -> None:
        """One value is complete: into the array being filled, or out as a reply."""
        stack = self._stack
        while stack:
            top = stack[-1]
            top[1].append(value)
            top[0] -= 1
            if top[0]:
                return
            stack.pop()
            value = top[1]
        self._replies.append(value)
