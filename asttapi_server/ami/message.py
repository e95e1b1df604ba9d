"""One AMI message: ordered headers, case-insensitive lookups, lazy decoding.

Pure ring: no Twisted, no clock.

A :class:`Message` built by the parser keeps the raw bytes of its block and
knows only ``kind`` and ``name`` up front (read from the first line when it is
``Event: ...``).  Headers are decoded on the first call to anything else, so a
server that looks at the name of 19 noise events and decodes the 20th pays for
one decode, not twenty (issue 3, "Ingest target").

Lookups on an event before the full decode (the parser's events, ASCII) do
not decode the block into headers at all: :meth:`Message.values` (and
:meth:`Message.get`, which calls it) takes the first line starting with
``<key>:`` in any case and strips the rest of that line up to the next
``\\n``: one ``str.find`` of ``\\n<key>:`` per key in the lower-cased
text (a UserEvent's five headers: about 2 us, where a full decode of its
18 lines takes 7).  A line starts after any ``\\n`` (``\\r\\n`` or bare) in the full
decode too, and its value is the rest of the line stripped, so that is by
construction the first header of that name, whatever the line ends.  Anything else (``items``,
``lines``, ``output``, ``get_all``, ``in``, odd keys, non-ASCII blocks) decodes
the whole block once, in a single pass over ``text.split("\\r\\n")``, falling
back to the careful line-by-line rules below for anything unusual.

Decoding rules (each one answers a real capture or a pitfall):

- lines end in ``\\r\\n`` or a bare ``\\n``; empty lines inside a block are ignored;
- a header is ``Key: value``, ``Key:value`` or ``Key:`` (empty value);
  the key is everything before the first colon, the value everything after it,
  stripped (``Output:`` values lose only the one space after the colon, so
  indented CLI output keeps its indentation, in :attr:`Message.output` and
  in the headers alike);
- a line whose "key" would be empty or contain a space is not a header:
  it is kept in :attr:`Message.lines` (Asterisk 1.2 bodies, the manual's typo
  ``TAPIEVENT [~A&sip/bob] LINE_CALLSTATE ...`` even if its text holds a colon);
- repeated keys are all kept, in order (pitfall 9);
- ``kind``: an ``Event:`` header anywhere wins (capture 02d: the
  ChallengeResponseFailed event carries ``Response:``), then ``Response:``, then
  ``Action:``; anything else is ``"other"``;
- ``Response: Follows`` (Asterisk < 14 ``Command``): the leading
  Response/Privilege/ActionID/Message headers are headers, every later line up to
  ``--END COMMAND--`` is :attr:`Message.output`, verbatim;
- ``Output:`` headers (Asterisk 14+) are also collected in :attr:`Message.output`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["Message", "EVENT", "RESPONSE", "ACTION", "OTHER", "END_COMMAND"]

EVENT = "event"
RESPONSE = "response"
ACTION = "action"
OTHER = "other"

END_COMMAND = "--END COMMAND--"

# Headers that may precede the raw output of a "Response: Follows" block.
_FOLLOWS_HEADERS = frozenset(("response", "privilege", "actionid", "message"))


# key -> "\n<key lower-cased>:" for the lookups before a full decode, or ""
# for keys that need the full decode ("Output", or nothing a header can be).
_NEEDLES: dict[str, str] = {}


def _needle(key: str) -> str:
    lkey = key.lower()
    if not lkey or lkey == "output" or " " in lkey or ":" in lkey or "\n" in lkey or not lkey.isascii():
        needle = ""
    else:
        needle = "\n" + lkey + ":"
    if len(_NEEDLES) < 1024:
        _NEEDLES[key] = needle
    return needle


# keys -> ((needle, its length), ...) for Message.values, or () if one of them
# needs the full decode.
_KEYSETS: dict[tuple[str, ...], tuple[tuple[str, int], ...]] = {}


def _keyset(keys: tuple[str, ...]) -> tuple[tuple[str, int], ...]:
    needles = tuple(_NEEDLES.get(key) or _needle(key) for key in keys)
    found = tuple((needle, len(needle)) for needle in needles) if all(needles) else ()
    if len(_KEYSETS) < 256:
        _KEYSETS[keys] = found
    return found


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        # Old PBXs put Latin-1 caller names on the wire; never lose the event.
        return raw.decode("latin-1")


class Message:
    """One AMI message. Headers are ordered ``(key, value)`` pairs; lookups are
    case-insensitive and never collapse repeated keys."""

    __slots__ = ("raw", "kind", "name", "_items", "_first", "_lines", "_output", "_text", "_low")

    kind: str
    name: str
    raw: bytes | None

    def __init__(self, raw: bytes, kind: str | None = None, name: str | None = None) -> None:
        """Wrap one raw block (no trailing blank line).

        The parser passes ``kind``/``name`` when it already read them from the
        first line; otherwise the block is decoded at once to find them.
        """
        self.raw = raw
        self._items: list[tuple[str, str]] | None = None
        self._low: str | None = None
        if kind is None or name is None:
            self._parse()
        else:
            self.kind = kind
            self.name = name

    @classmethod
    def from_items(
        cls,
        items: Iterable[tuple[str, str]],
        lines: Sequence[str] = (),
        output: Sequence[str] = (),
    ) -> Message:
        """Build a message from decoded parts (tests, the demo PBX)."""
        self = cls.__new__(cls)
        self.raw = None
        self._low = None
        pairs = [(str(k), str(v)) for k, v in items]
        first: dict[str, str] = {}
        for key, value in pairs:
            first.setdefault(key.lower(), value)
        self._set(pairs, first, list(lines), list(output))
        return self

    # -- decoding ----------------------------------------------------------

    def _parse(self) -> None:
        text = _decode(self.raw or b"")
        split = text.split("\r\n")
        if "\n" in text and text.count("\n") != len(split) - 1:
            split = text.replace("\r\n", "\n").split("\n")  # bare \n line ends
        # Fast path: every non-empty line is a plain header (the usual case).
        items: list[tuple[str, str]] = []
        first: dict[str, str] = {}
        append = items.append
        for line in split:
            key, sep, value = line.partition(":")
            if not sep or not key or " " in key:
                if line.strip():
                    self._parse_careful(split)
                    return
                continue
            value = value.strip()
            append((key, value))
            lkey = key.lower()
            if lkey not in first:
                first[lkey] = value
        if "output" in first or (
            first.get("response", "").lower() == "follows" and items[0][0].lower() == "response"
        ):
            self._parse_careful(split)
        else:
            self._set(items, first, [], [])

    def _lazy(self) -> str:
        """Set up header lookups without a full decode; "" if not possible
        (the block is then fully decoded)."""
        raw = self.raw
        low = ""
        if self.kind == EVENT and raw and raw.isascii():
            # A leading LF makes the first line findable like the others, a
            # trailing one ends the last line like the others.
            text = f"\n{raw.decode('latin-1')}\n"
            self._text = text
            low = text.lower()
        else:
            self._ensure()
        self._low = low
        return low

    def _parse_careful(self, split: list[str]) -> None:
        items: list[tuple[str, str]] = []
        first: dict[str, str] = {}
        lines: list[str] = []
        output: list[str] = []
        for i, line in enumerate(split):
            key, sep, value = line.partition(":")
            if not sep or not key or " " in key:
                if line.endswith("\r"):  # a stray bare CR
                    line = line[:-1]
                if line.strip():
                    lines.append(line)
                continue
            lkey = key.lower()
            if lkey == "output":
                value = value[1:] if value[:1] == " " else value
                output.append(value)
            else:
                value = value.strip()
            items.append((key, value))
            if lkey not in first:
                first[lkey] = value
                if not items[1:] and lkey == "response" and value.lower() == "follows":
                    self._parse_follows(split[i + 1 :], items, first, output)
                    break
        self._set(items, first, lines, output)

    @staticmethod
    def _parse_follows(
        split: list[str], items: list[tuple[str, str]], first: dict[str, str], output: list[str]
    ) -> None:
        """Old ``Command`` reply: a few headers, then raw output to ``--END COMMAND--``."""
        body = False
        for line in split:
            if not body:
                key, sep, value = line.partition(":")
                lkey = key.lower()
                if sep and lkey in _FOLLOWS_HEADERS:
                    value = value.strip()
                    items.append((key, value))
                    first.setdefault(lkey, value)
                    continue
                if not line.strip():
                    continue
                body = True
            output.append(line[:-1] if line.endswith("\r") else line)
        # Drop the terminator (text before it on its line is output: old
        # Asterisk writes "last line--END COMMAND--") and trailing empty lines.
        while output and not output[-1].strip():
            output.pop()
        if output:
            last = output[-1]
            cut = last.rfind(END_COMMAND)
            if cut >= 0:
                last = last[:cut]
                if last.strip():
                    output[-1] = last
                else:
                    output.pop()
        while output and not output[-1].strip():
            output.pop()

    def _set(
        self,
        items: list[tuple[str, str]],
        first: dict[str, str],
        lines: list[str],
        output: list[str],
    ) -> None:
        self._items = items
        self._first = first
        self._lines = lines
        self._output = output
        if "event" in first:
            self.kind, self.name = EVENT, first["event"]
        elif "response" in first:
            self.kind, self.name = RESPONSE, first["response"]
        elif "action" in first:
            self.kind, self.name = ACTION, first["action"]
        else:
            self.kind, self.name = OTHER, ""

    def _ensure(self) -> None:
        if self._items is None:
            kind, name = self.kind, self.name
            self._parse()
            # The cheap first-line read and the full decode must agree.
            self.kind, self.name = kind, name

    # -- public API ----------------------------------------------------------

    def get(self, key: str, default: str | None = None) -> str | None:
        """The value of the first header called ``key`` (any case)."""
        if self._items is None:
            value = self.values(key)[0]  # the lookups before a full decode
            return default if value is None else value
        return self._first.get(key.lower(), default)

    def values(self, *keys: str) -> list[str | None]:
        """``[msg.get(key) for key in keys]`` in one call: the first value of
        each header (any case), ``None`` if absent."""
        if self._items is None:
            low = self._low
            if low is None:
                low = self._lazy()
            if low:
                needles = _KEYSETS.get(keys)
                if needles is None:
                    needles = _keyset(keys)
                if needles:
                    text = self._text
                    find = low.find
                    tfind = text.find
                    out: list[str | None] = []
                    append = out.append
                    for needle, n in needles:
                        i = find(needle)
                        if i < 0:
                            append(None)
                        else:
                            i += n
                            append(text[i : tfind("\n", i)].strip())
                    return out
                self._ensure()
        first = self._first
        return [first.get(key.lower()) for key in keys]

    def get_all(self, key: str) -> list[str]:
        """Every value of ``key`` (any case), in order."""
        if self._items is None:
            self._ensure()
        lkey = key.lower()
        return [v for k, v in self._items if k.lower() == lkey]  # type: ignore[union-attr]

    def items(self) -> list[tuple[str, str]]:
        """Every header, in order, keys as sent."""
        if self._items is None:
            self._ensure()
        return list(self._items)  # type: ignore[arg-type]

    def __contains__(self, key: str) -> bool:
        if self._items is None:
            self._ensure()
        return key.lower() in self._first

    @property
    def lines(self) -> list[str]:
        """Lines that had no colon (1.2 bodies, the typo form), in order."""
        if self._items is None:
            self._ensure()
        return self._lines

    @property
    def output(self) -> list[str]:
        """Command output: the ``Response: Follows`` body or the ``Output:`` headers."""
        if self._items is None:
            self._ensure()
        return self._output

    @property
    def action_id(self) -> str | None:
        return self.get("ActionID")

    # -- comparison and display ------------------------------------------

    def _key(self) -> tuple:
        return (self.kind, self.name, self.items(), self.lines, self.output)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<Message {self.kind} {self.name!r} action_id={self.action_id!r}>"
