"""What a call from the call store may be: every field checked with the rules of live input.

Pure: the store's adapter (``asttapi_server/store.py``) reads the file;
:meth:`CallModel.restore_state <asttapi_server.core.model.CallModel.restore_state>`
calls :func:`stored_call` on each record and builds the calls from what it
returns. Whoever can write the file is trusted no more than the PBX or a
client is: a line name follows :mod:`asttapi_server.names` (the
``"\\ud800\\u2028evil"`` of issue 22 item 8 was accepted before), a Uniqueid
the TAPIEVENT grammar's rule, a channel name the rule the AMI reader applies
to a ``Channel`` header, states the transition table, modes and
infostates the TAPI constants, caller ids are cut to ``max_field_bytes``
like a dialplan ``SET``, times are finite, counters JSON-safe. A record that
breaks a rule raises ``ValueError`` naming the field (one log line; the
store is ignored whole). Even a record that passes is not acted on until
Asterisk confirms it: see ``CallModel.resync``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from ..ami import normalise  # (a module: normalise itself imports core.grammar)
from ..names import is_line_name
from .constants import CALLSTATE_MODES, LINECALLINFOSTATE, LINECALLORIGIN, LINECALLPARTYID
from .grammar import SET_FIELDS, UNIQUEID
from .legs import Leg
from .outcome import ANSWERED, BUSY, FAILED
from .parties import PARTIES
from .transitions import TRANSITIONS

#: The largest handle, counter or ``next_handle`` a store may hold: a browser
#: reads JSON numbers as doubles, so past 2**53 two handles could look alike.
MAX_COUNT = 2**53 - 1
#: Uniqueids one call has at most: its own, and (lineMakeCall) the ChannelId we gave it.
MAX_UNIQUEIDS = 2
#: Plugin data one call may carry (``CallModel.annotate``): keys, and bytes of JSON per key.
MAX_PLUGIN_KEYS = 32
MAX_PLUGIN_VALUE_BYTES = 64 << 10
#: Longest callinfo key a plugin may use.
MAX_KEY_LENGTH = 64
#: Callinfo keys that hold a party's LINECALLPARTYID_* flags (core/parties.py).
FLAG_INFO = frozenset(flags for _name, flags in PARTIES.values())
#: Callinfo keys that hold caller-id text (``SET``), bounded like live text.
TEXT_INFO = frozenset(SET_FIELDS.values()) - {"origin"} - FLAG_INFO
#: What a device leg may have told the model (``Leg.info``): call info set by SET verbs.
INFO_KEYS = frozenset(SET_FIELDS.values())
#: Largest Q.850 cause kept (Asterisk's are below 128).
MAX_CAUSE = 65535


@dataclass(frozen=True, slots=True)
class StoredCall:
    """One stored call, every field checked (see the module doc)."""

    handle: int
    uniqueids: tuple[str, ...]  # the one Asterisk uses now last
    channel: str | None
    channel_id: str | None
    owner_line: str | None
    owner_announced: bool
    states: dict[str, str]
    modes: dict[str, str | None] | None
    callinfo: dict[str, Any]
    ci_version: int
    ci_sent: dict[str, tuple[str, int]] | None
    created: float
    updated: float
    hangup_at: float | None
    hangup_cause: int | None
    device: bool = False  # a device line's call (absent in stores written before issue 21)
    leg: Leg | None = None  # its device channel's facts (absent before issue 25: worked out by the model)
    flags: int | None = None  # core.outcome flags of its states so far (absent before issue 25: worked out)


def short(value: Any) -> str:
    """A value from a store for an error message: its repr, cut short (the file may be anything)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def field(entry: dict, key: str, kind: Any, *, optional: bool = False) -> Any:
    """``entry[key]`` if it is a ``kind`` (``None`` too when ``optional``), else ValueError."""
    value = entry.get(key)
    if value is None and optional:
        return None
    # bool is an int in Python; a handle or a time is never true/false.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ValueError(f"{key} is {short(value)}")
    return value


def count(entry: dict, key: str, lowest: int) -> int:
    """An integer counter from ``lowest`` to :data:`MAX_COUNT`."""
    value = field(entry, key, int)
    if not lowest <= value <= MAX_COUNT:
        raise ValueError(f"{key} is {short(value)}")
    return value


def _time(entry: dict, key: str, *, optional: bool = False) -> float | None:
    value = field(entry, key, (int, float), optional=optional)
    if value is None:
        return None
    if not math.isfinite(value):
        raise ValueError(f"{key} is {short(value)}")
    return float(value)


def _unicode(value: str) -> bool:
    """Text that can be written out again (no lone surrogate from a ``\\ud800`` escape)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def is_uniqueid(value: Any) -> bool:
    """The TAPIEVENT grammar's rule for a ``~id`` (what Asterisk's Uniqueids look like)."""
    return isinstance(value, str) and UNIQUEID.fullmatch(value) is not None


def is_channel(value: Any) -> bool:
    """The AMI reader's rule for a ``Channel`` header (``Tech/resource``, printable, never ``/regex/``)."""
    return isinstance(value, str) and normalise.CHANNEL.fullmatch(value) is not None


def stored_call(entry: Any, *, max_lines: int, bounded: Callable[[str], str]) -> StoredCall:
    """One record of ``CallModel.save_call``, checked; ValueError naming what is wrong.

    ``max_lines`` is the model's limit of lines per call; ``bounded`` its cut of
    caller-id text to ``max_field_bytes`` (applied as to live text).
    """
    if not isinstance(entry, dict):
        raise ValueError("not an object")
    handle = count(entry, "handle", 1)
    uniqueids = field(entry, "uniqueids", list)
    if not 0 < len(uniqueids) <= MAX_UNIQUEIDS or not all(map(is_uniqueid, uniqueids)) \
            or len(set(uniqueids)) != len(uniqueids):
        raise ValueError(f"uniqueids are not one or two Asterisk Uniqueids: {short(uniqueids)}")
    uniqueid = field(entry, "uniqueid", str)
    if uniqueid not in uniqueids:
        raise ValueError("uniqueid is not one of uniqueids")
    channel = field(entry, "channel", str, optional=True)
    if channel is not None and not is_channel(channel):
        raise ValueError(f"channel is not a channel name: {short(channel)}")
    channel_id = field(entry, "channel_id", str, optional=True)
    if channel_id is not None and channel_id not in uniqueids:
        raise ValueError("channel_id is not one of uniqueids")
    states = field(entry, "states", dict)
    if not 0 < len(states) <= max_lines:
        raise ValueError(f"states name {len(states)} lines (1 to {max_lines} allowed)")
    for line, state in states.items():
        if not is_line_name(line):
            raise ValueError(f"states: {short(line)} is not a line name")
        if not isinstance(state, str) or state not in TRANSITIONS:
            raise ValueError(f"states: {short(state)} is not a call state")
    if all(s == "LINECALLSTATE_IDLE" for s in states.values()):
        raise ValueError("no line tracks the call")
    owner_line = field(entry, "owner_line", str, optional=True)
    if owner_line is not None and not is_line_name(owner_line):
        raise ValueError(f"owner_line {short(owner_line)} is not a line name")
    modes = field(entry, "modes", dict, optional=True)
    if modes is not None and not all(line in states and (m is None or (isinstance(m, str) and m in CALLSTATE_MODES))
                                     for line, m in modes.items()):
        raise ValueError("modes are not line -> call state mode")
    ci_version = count(entry, "ci_version", 0)
    ci_sent = field(entry, "ci_sent", dict, optional=True) or {}
    for line, sent in ci_sent.items():
        if not (line in states and isinstance(sent, list) and len(sent) == 2 and isinstance(sent[0], str)
                and sent[0] in LINECALLINFOSTATE and type(sent[1]) is int and 0 <= sent[1] <= ci_version):
            raise ValueError("ci_sent is not line -> [infostate, version]")
    hangup_cause = field(entry, "hangup_cause", int, optional=True)
    if hangup_cause is not None and not 0 <= hangup_cause <= MAX_CAUSE:
        raise ValueError(f"hangup_cause is {short(hangup_cause)}")
    device = field(entry, "device", bool, optional=True) or False
    leg = entry.get("leg")
    if leg is not None:
        if not device:
            raise ValueError("leg on a call that is not a device line's")
        leg = stored_leg(leg, uniqueids, states, bounded)
    flags = field(entry, "flags", int, optional=True)
    if flags is not None and not 0 <= flags <= ANSWERED | BUSY | FAILED:
        raise ValueError(f"flags is {short(flags)}")
    return StoredCall(
        handle=handle,
        uniqueids=tuple([u for u in uniqueids if u != uniqueid] + [uniqueid]),
        channel=channel,
        channel_id=channel_id,
        owner_line=owner_line,
        owner_announced=field(entry, "owner_announced", bool),
        states=dict(states),
        modes=dict(modes) if modes else None,
        callinfo=_callinfo(field(entry, "callinfo", dict), bounded),
        ci_version=ci_version,
        ci_sent={line: (v[0], v[1]) for line, v in ci_sent.items()} or None,
        created=_time(entry, "created"),  # type: ignore[arg-type]
        updated=_time(entry, "updated"),  # type: ignore[arg-type]
        hangup_at=_time(entry, "hangup_at", optional=True),
        hangup_cause=hangup_cause,
        device=device,
        leg=leg,
        flags=flags,
    )


def _callinfo(callinfo: dict, bounded: Callable[[str], str]) -> dict[str, Any]:
    """The stored callinfo: caller-id text bounded as live text is, the origin a TAPI
    constant, plugin data plain JSON of bounded size; ``uniqueid`` comes from the call."""
    out: dict[str, Any] = {}
    plugin_keys = 0
    for key, value in callinfo.items():
        if key in TEXT_INFO:
            if value is not None and not (isinstance(value, str) and _unicode(value)):
                raise ValueError(f"callinfo {key} is {short(value)}")
            out[key] = None if value is None else bounded(value)
        elif key == "origin":
            if not (isinstance(value, str) and value in LINECALLORIGIN):
                raise ValueError(f"callinfo origin is {short(value)}")
            out[key] = value
        elif key in FLAG_INFO:
            if not (isinstance(value, list) and 0 < len(value) <= len(LINECALLPARTYID)
                    and all(isinstance(f, str) and f in LINECALLPARTYID for f in value)):
                raise ValueError(f"callinfo {key} is not a list of LINECALLPARTYID_* names: {short(value)}")
            out[key] = tuple(value)
        elif key != "uniqueid":  # data a plugin annotated the call with (a contact)
            plugin_keys += 1
            if plugin_keys > MAX_PLUGIN_KEYS:
                raise ValueError(f"callinfo has more than {MAX_PLUGIN_KEYS} plugin keys")
            if not (0 < len(key) <= MAX_KEY_LENGTH and key.isprintable() and _unicode(key)):
                raise ValueError(f"callinfo key {short(key)} is not allowed")
            try:
                size = len(json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8"))
            except (ValueError, TypeError, RecursionError, UnicodeEncodeError):
                raise ValueError(f"callinfo {key} is not plain JSON text") from None
            if size > MAX_PLUGIN_VALUE_BYTES:
                raise ValueError(f"callinfo {key} is {size} bytes of JSON (at most {MAX_PLUGIN_VALUE_BYTES})")
            out[key] = value
    return out


def stored_leg(entry: Any, uniqueids: Collection[str], lines: Collection[str], bounded: Callable[[str], str]) -> Leg:
    """A stored device leg (``Leg.saved``), checked like the call; ValueError naming the field.

    ``uniqueids`` and ``lines``: its call's; ``bounded``: the cut of caller-id text (a leg holds some).
    """
    if not isinstance(entry, dict):
        raise ValueError("leg is not an object")
    uniqueid = field(entry, "uniqueid", str)
    if uniqueid not in uniqueids:
        raise ValueError("leg uniqueid is not one of its call's")
    channel = field(entry, "channel", str)
    if not is_channel(channel):
        raise ValueError(f"leg channel is not a channel name: {short(channel)}")
    leg_lines = field(entry, "lines", list)
    if not leg_lines or not all(isinstance(line, str) and line in lines for line in leg_lines):
        raise ValueError("leg lines are not lines of its call")

    def text(value: Any, what: str) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or not _unicode(value):
            raise ValueError(f"leg {what} is {short(value)}")
        return bounded(value)

    def pair(key: str) -> tuple[str | None, str | None]:
        value = field(entry, key, list)
        if len(value) != 2:
            raise ValueError(f"leg {key} is {short(value)}")
        return text(value[0], key), text(value[1], key)

    def table(key: str) -> dict[str, str | None]:
        value = field(entry, key, dict)
        if len(value) > 64:
            raise ValueError(f"leg {key} holds {len(value)} entries")
        out = {text(k, key) or "": text(v, key) for k, v in value.items()}
        if key == "info" and not set(out) <= INFO_KEYS:
            raise ValueError("leg info holds a key that is no call info")
        return out

    def flag(key: str) -> bool:
        return field(entry, key, bool)

    created = field(entry, "created", (int, float))
    updated = field(entry, "updated", (int, float))
    if not all(map(math.isfinite, (created, updated))):
        raise ValueError("leg times are not finite")
    return Leg(uniqueid, channel, tuple(leg_lines), float(created), float(updated), own=pair("own"),
               exten=text(entry.get("exten"), "exten"), ringing=flag("ringing"),
               dial_status=text(entry.get("dial_status"), "dial_status"), via=text(entry.get("via"), "via"),
               picked=flag("picked"), placed=flag("placed"), connected=pair("connected"), far=pair("far"),
               dialling=table("dialling"), info=table("info"))
