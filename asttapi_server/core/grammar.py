"""The TAPIEVENT grammar: the text a dialplan puts in ``UserEvent(TAPI,TAPIEVENT: ...)``.

::

    text   := [prefix] [ "[" spec "]" ] VERB [ARGS]
    prefix := ["TAPI|"] "TAPIEVENT" [":"]          (normally stripped by ami.normalise)
    spec   := item ("&" item)*
    item   := "~" UNIQUEID      the call the event is for
            | "!" LINE          every line tracking the call except LINE
            | LINE              only this line
    VERB ARGS :=
        LINE_NEWCALL <line> [<line> ...]
      | LINE_CALLSTATE <LINECALLSTATE_x> [<mode>]   mode: a LINEDISCONNECTMODE_/LINEBUSYMODE_/... name
      | LINE_CALLINFO <LINECALLINFOSTATE_x>
      | LINE_LINEDEVSTATE <LINEDEVSTATE_x>
      | SET CALLERID|CALLERIDNAME|CALLEDID|CALLEDIDNAME|CONNECTEDID|CONNECTEDIDNAME <value>
      | SET CALLERIDFLAGS|CALLEDIDFLAGS|CONNECTEDIDFLAGS <LINECALLPARTYID_x>
                                     x: BLOCKED, OUTOFAREA, UNAVAIL or UNKNOWN (the party is not
                                     shown, and why: :mod:`.parties`)
      | SET CALLORIGIN <LINECALLORIGIN_x>

Lenient where dialplans are sloppy: spaces anywhere around tokens, verbs and
constant names in any case and with or without their prefix
(``CONNECTED`` = ``LINECALLSTATE_CONNECTED``), a missing colon after
``TAPIEVENT``, empty spec items (``[~1.2&]``), line names with ``/ - ; . @``.
A SET value keeps its inner spaces and may be empty (``SET CALLERID`` when
``${CALLERID(num)}`` was empty). Anything else raises
:class:`~asttapi_server.errors.TapiSyntaxError` carrying the raw text.

Strict where the text names things the server acts on, because an outside
caller can reach this text: a dialplan that puts an unfiltered caller id into
``UserEvent(...)`` lets a comma in it start a new ``TAPIEVENT:`` argument, and
Asterisk 22 keeps the last one. So a ``~id`` must look like an Asterisk
Uniqueid or ChannelId (:data:`UNIQUEID`: ``1795674354.1``,
``pbx1-1795674354.1``, ``asttapi-1a2b3c4d-7``, a UUID), never ``/^/`` (a regex
channel to Asterisk); a line name must look like one (:data:`LINE_NAME`:
``line_1``, ``sip/bob``, ``Local/bob@phones;1``), and one text may name at most
``max_lines`` lines (default :data:`MAX_LINES`), so one event never fans out
into thousands.

The grammar is pure and never logs: a malformed text raises, and the caller
(the TAPI UserEvent mapping) reports it as a diagnostic value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from .. import idents, names
from ..errors import TapiSyntaxError
from .constants import CALLINFO, CALLSTATE, DEVSTATE, NEWCALL
from . import constants as C

SET = "SET"

VERBS = (NEWCALL, CALLSTATE, CALLINFO, DEVSTATE, SET)

#: SET field -> callinfo key.
SET_FIELDS: dict[str, str] = {
    "CALLERID": "callerid",
    "CALLERIDNAME": "calleridname",
    "CALLEDID": "calledid",
    "CALLEDIDNAME": "calledidname",
    "CONNECTEDID": "connectedid",
    "CONNECTEDIDNAME": "connectedidname",
    "CALLERIDFLAGS": "calleridflags",
    "CALLEDIDFLAGS": "calledidflags",
    "CONNECTEDIDFLAGS": "connectedidflags",
    "CALLORIGIN": "origin",
}
#: callinfo key -> SET field.
FIELD_OF: dict[str, str] = {key: field for field, key in SET_FIELDS.items()}
#: The LINECALLPARTYID_* a SET ...FLAGS may give: the ones that say why a party is not shown.
HIDING_FLAGS = ("LINECALLPARTYID_BLOCKED", "LINECALLPARTYID_OUTOFAREA", "LINECALLPARTYID_UNAVAIL",
                "LINECALLPARTYID_UNKNOWN")

_CALLSTATES = frozenset(C.LINECALLSTATE) | {C.LINECALLSTATE_HANGUP}

_PREFIX = re.compile(r"^\s*(?:TAPI\s*\|\s*)?TAPIEVENT\b\s*:?", re.IGNORECASE)

#: What a ``~id`` may be (an Asterisk Uniqueid or a ChannelId): the one rule,
#: kept in the leaf :mod:`asttapi_server.idents`.
UNIQUEID = idents.UNIQUEID
#: What a line name may be: the one rule, kept in :mod:`asttapi_server.names`.
LINE_NAME = names.LINE_NAME
#: Lines one TAPIEVENT may name (spec items and LINE_NEWCALL's list together).
MAX_LINES = 64
#: Texts at most this long are cached; longer ones (a huge SET value) are
#: parsed every time, so the cache holds at most ~8192 x 512 characters.
CACHE_MAX_CHARS = 512


@dataclass(frozen=True, slots=True)
class TapiCommand:
    """One parsed TAPIEVENT. Constant names are normalised to their full form."""

    call_id: str | None  # from "~UNIQUEID"
    lines: tuple[str, ...]  # included lines ("line_1", "sip/bob")
    excluded: tuple[str, ...]  # from "!line"
    verb: str  # one of VERBS
    args: tuple[str, ...]  # SET: (field, value); others: their words
    raw: str


@dataclass(frozen=True, slots=True)
class Screen:
    """Read a party's presentation before it is shown: ``Getvar`` of ``function`` on the signal's channel.

    ``number`` and ``name`` are the party the signal carries (a LINE_NEWCALL's
    caller, a SET's connected party): what stays hidden if Asterisk says the
    party is withheld. The core does the reading (:mod:`.control`) and
    applies the one rule (:mod:`.parties`).
    """

    function: str  # "CALLERID(pres)" (the channel's own caller) or "CONNECTEDLINE(pres)" (its far party)
    number: str | None
    name: str | None


@dataclass(slots=True, unsafe_hash=True)
class TapiSignal:
    """A TapiCommand with the AMI context it arrived in.

    Made once per TAPI signal, so not a frozen dataclass (whose ``__init__``
    sets each field through ``object.__setattr__``: three times the cost, 5 %
    of a TAPI-dense call). Treat it as frozen all the same: nothing changes
    one after it is made (the core makes changed copies with
    ``dataclasses.replace``; a mapping plugin hands its signals over).
    """

    command: TapiCommand
    uniqueid: str | None  # Uniqueid of the channel that ran UserEvent (None on 1.4-1.8 without body header)
    channel: str | None
    # That channel's CallerIDNum / CallerIDName / Exten (Asterisk 12+ sends
    # them in every channel event): the call's first callerid and calledid,
    # so LINE_NEWCALL already carries them. Read for LINE_NEWCALL only.
    callerid: str | None = None
    calleridname: str | None = None
    exten: str | None = None
    #: LINE_NEWCALL: the call's LINECALLORIGIN_*, set once with the call (device lines know it then).
    origin: str | None = None
    #: LINE_NEWCALL: the caller's presentation as judged (:data:`.parties.ALLOWED` or a hiding
    #: LINECALLPARTYID_*), None if never read. Set by the core after reading ``screen``.
    presentation: str | None = None
    #: The party this signal carries must be screened first (see :class:`Screen`).
    screen: Screen | None = None
    #: From a device line's own channel events (:mod:`.device_lines`): the call
    #: is that channel's, apart from any dialplan call on the same Uniqueid.
    device: bool = False


def parse_tapievent(text: str, max_lines: int = MAX_LINES) -> TapiCommand:
    """Parse one TAPIEVENT text; raise TapiSyntaxError if it is not one.

    Short results are cached (the texts a dialplan sends repeat endlessly and
    TapiCommand is immutable), so the same text parses once; the cache is
    bounded in bytes as well as entries (:data:`CACHE_MAX_CHARS`).
    """
    if not isinstance(text, str):
        raise TapiSyntaxError("TAPIEVENT text is not a string", repr(text))
    if len(text) <= CACHE_MAX_CHARS:
        return _parse_cached(text, max_lines)
    return _parse(text, max_lines)


def try_parse(text: str) -> TapiCommand | None:
    """parse_tapievent, but a malformed text gives None (for callers that only want the good ones)."""
    try:
        return parse_tapievent(text)
    except TapiSyntaxError:
        return None


def _check_id(name: str, raw: str) -> str:
    if not UNIQUEID.fullmatch(name):
        raise TapiSyntaxError(f"bad ~uniqueid {clip(name)!r} (expected an Asterisk Uniqueid like 1795674354.1)", raw)
    return name


def _check_line(name: str, raw: str) -> str:
    if not LINE_NAME.fullmatch(name):
        raise TapiSyntaxError(f"bad line name {clip(name)!r}", raw)
    return name


def text_of(call_id: str | None, lines: tuple[str, ...], excluded: tuple[str, ...], verb: str,
            args: tuple[str, ...]) -> str:
    """The TAPIEVENT text of a command: what :func:`parse_tapievent` parses back into it."""
    spec = "&".join([*([f"~{call_id}"] if call_id else []), *lines, *(f"!{x}" for x in excluded)])
    body = " ".join((verb, *args))
    return f"[{spec}] {body}" if spec else body


#: SET fields whose value is a party's number or name: never quoted in a log line (it may be a
#: caller who withholds it, core/parties.py).
PARTY_FIELDS = frozenset(("CALLERID", "CALLERIDNAME", "CALLEDID", "CALLEDIDNAME", "CONNECTEDID", "CONNECTEDIDNAME"))


def quoted(cmd: TapiCommand) -> str:
    """What a log line may quote of a TAPIEVENT: its text, cut (:func:`clip`), a party's number or
    name left out."""
    if cmd.verb == SET and cmd.args[0] in PARTY_FIELDS:
        return clip(text_of(cmd.call_id, cmd.lines, cmd.excluded, SET, (cmd.args[0], "…")))
    return clip(cmd.raw)


def clip(text: str, limit: int = 120) -> str:
    """``text`` cut to ``limit`` characters with a marker: what log lines quote of PBX data."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...[{len(text) - limit} more characters]"


@lru_cache(maxsize=8192)
def _parse_cached(raw: str, max_lines: int) -> TapiCommand:
    return _parse(raw, max_lines)


def _parse(raw: str, max_lines: int) -> TapiCommand:
    text = raw
    m = _PREFIX.match(text)
    if m is not None:
        text = text[m.end() :]
    text = text.strip()
    call_id: str | None = None
    lines: list[str] = []
    excluded: list[str] = []
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise TapiSyntaxError("unclosed '[' in TAPIEVENT spec", raw)
        spec = text[1:close]
        text = text[close + 1 :].strip()
        if "[" in spec:
            raise TapiSyntaxError("nested '[' in TAPIEVENT spec", raw)
        if spec.count("&") > 2 * max_lines:
            raise TapiSyntaxError(f"TAPIEVENT spec names more than {max_lines} lines", raw)
        for item in spec.split("&"):
            item = item.strip()
            if not item:
                continue
            mark = item[0]
            if mark in "~!":
                name = item[1:].strip()
            else:
                name = item
            if not name:
                raise TapiSyntaxError(f"bad spec item {clip(item)!r}", raw)
            if mark == "~":
                _check_id(name, raw)
            else:
                _check_line(name, raw)
            if mark == "~":
                if call_id is not None and call_id != name:
                    raise TapiSyntaxError("two different ~uniqueids in one spec", raw)
                call_id = name
            elif mark == "!":
                if name not in excluded:
                    excluded.append(name)
            elif name not in lines:
                lines.append(name)
    if len(lines) + len(excluded) > max_lines:
        raise TapiSyntaxError(f"TAPIEVENT spec names more than {max_lines} lines", raw)
    if not text:
        raise TapiSyntaxError("no verb in TAPIEVENT", raw)
    # The verb and its arguments do not depend on the spec: a dialplan sends the same
    # few with a new ~uniqueid on every call, so they are parsed once (short ones cached).
    try:
        verb, args = _verb_cached(text, max_lines) if len(text) <= CACHE_MAX_CHARS else _verb(text, max_lines)
    except TapiSyntaxError as exc:
        raise TapiSyntaxError(exc.reason, raw) from None
    if verb == NEWCALL and not args:
        # "[line_1] LINE_NEWCALL" names the line in the spec
        if not lines:
            raise TapiSyntaxError("LINE_NEWCALL without a line", raw)
        args = tuple(lines)
    return TapiCommand(call_id, tuple(lines), tuple(excluded), verb, args, raw)


@lru_cache(maxsize=1024)
def _verb_cached(text: str, max_lines: int) -> tuple[str, tuple[str, ...]]:
    return _verb(text, max_lines)


def _verb(text: str, max_lines: int) -> tuple[str, tuple[str, ...]]:
    """``VERB ARGS`` (``text``: past the spec, stripped, not empty) -> ``(verb, args)``; errors
    quote ``text`` (:func:`_parse` quotes the whole text). A LINE_NEWCALL without names: ``()``."""
    parts = text.split(None, 1)
    verb = parts[0].upper()
    rest = parts[1] if len(parts) > 1 else ""
    if verb == SET:
        args = _set_args(rest, text)
    elif verb == NEWCALL:
        # Count before splitting: 20,000 names must cost no more than 64 do.
        if rest.count(" ") + rest.count("\t") >= max_lines and len(rest.split(None, max_lines)) > max_lines:
            raise TapiSyntaxError(f"LINE_NEWCALL names more than {max_lines} lines", text)
        names = rest.split()
        for name in names:
            _check_line(name, text)
        args = tuple(dict.fromkeys(names))
    elif verb == CALLSTATE:
        words = rest.split()
        if not 1 <= len(words) <= 2:
            raise TapiSyntaxError("LINE_CALLSTATE takes a state and an optional mode", text)
        state = _constant(words[0], "LINECALLSTATE_", _CALLSTATES, text)
        if len(words) == 2:
            mode = words[1].upper()
            if mode not in C.CALLSTATE_MODES:
                raise TapiSyntaxError(f"unknown call state mode {words[1]!r}", text)
            args = (state, mode)
        else:
            args = (state,)
    elif verb == CALLINFO:
        args = (_one(rest, "LINECALLINFOSTATE_", C.LINECALLINFOSTATE, text),)
    elif verb == DEVSTATE:
        args = (_one(rest, "LINEDEVSTATE_", C.LINEDEVSTATE, text),)
    else:
        raise TapiSyntaxError(f"unknown TAPIEVENT verb {parts[0]!r}", text)
    return verb, args


def _set_args(rest: str, raw: str) -> tuple[str, str]:
    parts = rest.strip().split(None, 1)
    if not parts:
        raise TapiSyntaxError("SET without a field", raw)
    field = parts[0].upper()
    if field not in SET_FIELDS:
        raise TapiSyntaxError(f"unknown SET field {parts[0]!r}", raw)
    value = parts[1].strip() if len(parts) > 1 else ""
    if field == "CALLORIGIN":
        value = _constant(value, "LINECALLORIGIN_", C.LINECALLORIGIN, raw)
    elif field.endswith("FLAGS"):
        value = _constant(value, "LINECALLPARTYID_", HIDING_FLAGS, raw)
    return (field, value)


def _one(rest: str, prefix: str, table, raw: str) -> str:
    words = rest.split()
    if len(words) != 1:
        raise TapiSyntaxError(f"expected exactly one {prefix}* name", raw)
    return _constant(words[0], prefix, table, raw)


def _constant(word: str, prefix: str, table, raw: str) -> str:
    name = word.upper()
    if not name.startswith(prefix):
        name = prefix + name
    if name not in table:
        raise TapiSyntaxError(f"unknown {prefix}* name {word!r}", raw)
    return name
