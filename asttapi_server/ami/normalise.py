"""One shape for the events the server uses, whatever the Asterisk version.

Pure ring: no Twisted, no clock.

UserEvent dialects (apps/app_userevent.c at each tag; hand-made streams for
each are in ``tests/data/ami-legacy/``, the modern one is a real capture):

======================  ==================================================================
Asterisk 1.2            ``Event: UserEventTAPI``, ``Channel``, ``Uniqueid``, then the body
                        line ``TAPIEVENT: ...`` (or the manual's typo ``TAPIEVENT [..] ...``
                        without a colon, which lands in ``Message.lines``)
1.4 - 1.8               ``Event: UserEvent``, ``UserEvent: TAPI``, body; no Channel and no
                        Uniqueid unless the dialplan adds ``Uniqueid: ${UNIQUEID}`` itself
11                      as 1.4 plus ``Uniqueid``
12+                     full channel snapshot (Channel, Uniqueid, Linkedid, ...) then
                        ``UserEvent: TAPI`` and the body headers
old ``|`` dialplan on   ``UserEvent: TAPI|TAPIEVENT: LINE_...`` and no TAPIEVENT header
today's Asterisk        (``|`` is no longer a separator); a ``,`` dialplan on 1.2/1.4 gives
                        the same with ``,`` (``Event: UserEventTAPI,TAPIEVENT: ...`` on 1.2)
======================  ==================================================================

A body that still holds ``|Key: value`` pieces (1.4 passed everything after the
first ``|`` through verbatim) is split there, so ``TAPIEVENT: X|Uniqueid: Y``
yields body ``X`` and uniqueid ``Y``.  Commas inside the body are never split:
a caller name may hold one.

Names the server may later act on are checked here, where they enter:
:func:`channel_name` keeps a ``Channel`` only if it looks like one Asterisk
makes (``Tech/resource``: ``PJSIP/bob-0000002a``, ``Local/100@inbound-00000000;2``),
so a regex channel (``/^/``, "every channel" to the Hangup action) or a
huge value never becomes the call's channel; :func:`uniqueid` keeps a
``Uniqueid`` only if it matches :data:`asttapi_server.idents.UNIQUEID`.
A value that fails reads as absent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from asttapi_server.ami.message import EVENT, Message
from asttapi_server.idents import UNIQUEID

__all__ = [
    "UserEvent",
    "user_event",
    "hangup",
    "OriginateResult",
    "originate_response",
    "live_channels",
    "channel_name",
    "uniqueid",
    "CHANNEL",
    "caller_of",
]

#: A channel name as Asterisk makes them: technology, ``/``, a resource of
#: printable non-space characters; at most 256 characters in all.
CHANNEL = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,31}/[^\x00-\x20\x7f]{1,223}")

_TAPIEVENT = "TAPIEVENT"
# "|Uniqueid: 123" pieces glued into a body by an old "|" dialplan.
_PIPE_HEADER = re.compile(r"\|\s*([A-Za-z][A-Za-z0-9_-]*)\s*:\s*([^|]*)")
_UNKNOWN = frozenset(("", "<unknown>", "<null>", "(none)"))


class UserEvent:
    """A UserEvent in the one shape (see the module doc): read once per TAPI signal, so a
    plain class with slots (its five fields set by a plain ``__init__``), and ``linkedid``,
    which no mapping of ours needs, read only when asked."""

    __slots__ = ("name", "body", "uniqueid", "channel", "message", "_linkedid")

    def __init__(self, name: str, body: str | None, uniqueid: str | None, channel: str | None,
                 message: Message, linkedid: str | None = None) -> None:
        self.name = name  # "TAPI" (1.2 "UserEventTAPI" -> "TAPI")
        self.body = body  # the TAPIEVENT text, stripped; None if there is none
        self.uniqueid = uniqueid  # Uniqueid / UniqueID header or dialplan-added body header
        self.channel = channel
        self.message = message
        self._linkedid = linkedid  # a dialplan-added body header's, if any

    @property
    def linkedid(self) -> str | None:
        """The ``Linkedid`` header (else a dialplan-added body header's), checked as a Uniqueid."""
        return uniqueid(self.message.get("Linkedid") or self._linkedid)

    def __repr__(self) -> str:
        return f"UserEvent(name={self.name!r}, body={self.body!r}, uniqueid={self.uniqueid!r}, channel={self.channel!r})"


def _split_arg(text: str) -> tuple[str, str | None]:
    """``"TAPI|TAPIEVENT: x"`` -> ``("TAPI", "TAPIEVENT: x")``; ``|`` or ``,``."""
    cut = len(text)
    for sep in "|,":
        i = text.find(sep)
        if 0 <= i < cut:
            cut = i
    if cut == len(text):
        return text.strip(), None
    return text[:cut].strip(), text[cut + 1 :]


def _tapievent_text(text: str) -> str | None:
    """The TAPIEVENT payload of ``"TAPIEVENT: x"`` or ``"TAPIEVENT x"``, else None."""
    text = text.strip()
    if text[:9].upper() != _TAPIEVENT:
        return None
    rest = text[9:]
    if rest and rest[0] not in ": \t":
        return None  # e.g. "TAPIEVENTS: ..." is some other header
    rest = rest.lstrip(" \t")
    if rest.startswith(":"):
        rest = rest[1:]
    return rest.strip()


def _none_if_unknown(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return None if value in _UNKNOWN else value


# channel_name and uniqueid are read for every UserEvent: each is one function
# (the "unknown" placeholders, then the pattern), not a chain of helpers.


def channel_name(value: str | None) -> str | None:
    """``value`` stripped if it is a channel name Asterisk could have made, else ``None``."""
    if value is None:
        return None
    value = value.strip()
    if value in _UNKNOWN or not CHANNEL.fullmatch(value):
        return None
    return value


def uniqueid(value: str | None) -> str | None:
    """``value`` stripped if it is a well-formed Uniqueid, else ``None``."""
    if value is None:
        return None
    value = value.strip()
    if value in _UNKNOWN or not UNIQUEID.fullmatch(value):
        return None
    return value


_UE_KEYS = ("UserEvent", _TAPIEVENT, "Uniqueid", "Channel")
_HANGUP_KEYS = ("Uniqueid", "Cause", "Channel")


def user_event(msg: Message) -> UserEvent | None:
    """Normalise any dialect of UserEvent; ``None`` if ``msg`` is not one."""
    if msg.kind != EVENT:
        return None
    event = msg.name
    if event == "UserEvent" or event.lower() == "userevent":
        # One call for the four headers, before any full decode (one UserEvent
        # per TAPI signal: the hot path).
        raw_name, body, uniqueid, channel = msg.values(*_UE_KEYS)
        if (
            body is not None
            and raw_name is not None
            and "|" not in body
            and "|" not in raw_name
            and "," not in raw_name
        ):
            # 1.4+ with a TAPIEVENT header and nothing glued on by an old
            # dialplan: what the full path below returns.
            return UserEvent(raw_name.strip(), body, _uniqueid(uniqueid), channel_name(channel), msg)
        raw_name = raw_name or ""
    elif event[:9].lower() == "userevent" and len(event) > 9:
        raw_name = event[9:]  # Asterisk 1.2: "UserEventTAPI"
    else:
        return None
    name, rest = _split_arg(raw_name)

    body = msg.get(_TAPIEVENT)
    if body is None and rest is not None:
        body = _tapievent_text(rest)
    if body is None:
        for line in msg.lines:
            body = _tapievent_text(line)
            if body is not None:
                break
    extra: dict[str, str] = {}
    if body is not None and "|" in body:
        head, _, tail = body.partition("|")
        for key, value in _PIPE_HEADER.findall("|" + tail):
            extra.setdefault(key.lower(), value.strip())
        body = head.strip()

    uniqueid = msg.get("Uniqueid") or extra.get("uniqueid")
    channel = msg.get("Channel") or extra.get("channel")
    return UserEvent(name, body, _uniqueid(uniqueid), channel_name(channel), msg, extra.get("linkedid"))


_uniqueid = uniqueid  # the module-level name, for functions whose locals shadow it


_CALLER_KEYS = ("CallerIDNum", "CallerIDName", "Exten")


def caller_of(msg: Message) -> tuple[str | None, str | None, str | None]:
    """``(CallerIDNum, CallerIDName, Exten)`` of a channel event, ``None`` where unknown.

    Asterisk 12+ puts the channel snapshot in every channel event, the
    UserEvent included, so the caller's number is known when the dialplan
    says LINE_NEWCALL; older versions send none of these (all ``None``).
    """
    num, name, exten = msg.values(*_CALLER_KEYS)
    return _none_if_unknown(num), _none_if_unknown(name), _none_if_unknown(exten)


def _int_or_none(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


def hangup(msg: Message) -> tuple[str, int | None, str | None] | None:
    """``(uniqueid, cause, channel)`` for ``Event: Hangup``; else ``None``."""
    if msg.kind != EVENT or (msg.name != "Hangup" and msg.name.lower() != "hangup"):
        return None
    uid, cause, channel = msg.values(*_HANGUP_KEYS)
    uid = _uniqueid(uid)
    if uid is None:
        return None
    return uid, _int_or_none(cause), channel_name(channel)


@dataclass(frozen=True, slots=True)
class OriginateResult:
    """An ``Event: OriginateResponse`` (Async originate finished)."""

    action_id: str | None
    success: bool
    uniqueid: str | None  # our ChannelId when we set one; None for "<unknown>"
    channel: str | None
    reason: int | None  # 4 = answered, 0 = failed, 1/3/5/8 = hangup/ring timeout/busy/congestion
    message: Message


def originate_response(msg: Message) -> OriginateResult | None:
    if msg.kind != EVENT or msg.name.lower() != "originateresponse":
        return None
    return OriginateResult(
        action_id=msg.action_id,
        success=(msg.get("Response") or "").strip().lower() == "success",
        uniqueid=_uniqueid(msg.get("Uniqueid")),
        channel=channel_name(msg.get("Channel")),
        reason=_int_or_none(msg.get("Reason")),
        message=msg,
    )


def live_channels(messages: Iterable[Message]) -> dict[str, str | None]:
    """The live channels in a ``CoreShowChannels`` (or ``Status``) reply list:
    Uniqueid -> channel name (None if its ``Channel`` is missing or malformed)."""
    out: dict[str, str | None] = {}
    for msg in messages:
        if msg.kind == EVENT and msg.name.lower() in ("coreshowchannel", "status"):
            uid, channel = msg.values("Uniqueid", "Channel")
            uid = _uniqueid(uid)
            if uid is not None:
                out[uid] = channel_name(channel)
    return out
