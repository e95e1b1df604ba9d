"""What a call looks like to a webhook receiver: our JSON events, or Zammad's generic CTI events.

Pure: TAPI events and finished calls in, :class:`Outgoing` webhook events
(an id, the call's id, a body) out; no I/O, no clock (``now`` comes in).

**json**: every TAPI event of a target's lines, as a client sees it (the
notification's params without ``seq``: ``line``, ``call``, ``state`` /
``infostate``, ``mode``, ``synthetic``, ``callinfo`` with the contact and
the parties' flags), plus ``id``, ``event`` (the message name), ``time`` and
``callId``; and one ``call_finished`` per call with its ``outcome``
(:mod:`asttapi_server.core.outcome`), the lines that answered and every line
that had it.

**zammad**: Zammad's generic CTI API (docs.zammad.org, "Generic CTI":
newCall, answer, hangup; read against Zammad's ``Cti::Log.process``),
form-encoded: ``event``, ``from``, ``to``, ``direction`` (``in``/``out``),
``callId``, ``user[]`` (the agents' real names), ``answeringNumber`` (what
Zammad looks a user up by: phone, login or id) and, for hangup, ``cause``.
Each call gives each event at most once, in order, by :data:`ZAMMAD` (a
table): newCall as soon as the call is on one of the target's lines and
the caller is known (so a pre-12 dialplan's ``SET CALLERID`` after OFFERING
is not lost), answer when a target line connects, hangup when the call is
over. Numbers go as Zammad stores them: E.164 without ``+``
(``442079460958``; Zammad reads a leading ``0`` as German), an internal
extension as its digits.

**Withheld parties**: a party whose flags say it is not to be shown
(``LINECALLPARTYID_BLOCKED`` and the other hiding flags of
:mod:`asttapi_server.core.parties`) reaches no receiver: its number and name
are removed from every body (and the contact, for a hidden caller), whatever
the PBX let through; Zammad gets ``from`` = ``anonymous``, as its API
documents.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from asttapi_server.clients.codec import PARAM_KEY
from asttapi_server.core import parties
from asttapi_server.core.constants import CALLSTATE, CONNECTED, DISCONNECTED
from asttapi_server.core.outcome import ANSWERED, BUSY, flags_of, outcome
from asttapi_server.numbers import number_key

__all__ = ["Agent", "CallTrack", "Outgoing", "ZAMMAD", "withheld_removed", "json_event", "json_finished",
           "zammad_events"]

JSON_TYPE = "application/json"
FORM_TYPE = "application/x-www-form-urlencoded"


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One webhook event: ``event_id`` is its idempotency key, ``call`` orders it among its call's."""

    event_id: str
    call: str
    kind: str
    content_type: str
    body: bytes


@dataclass(frozen=True, slots=True)
class Agent:
    """Who answers on a line, for Zammad: a real name (``user[]``) and what Zammad finds them by."""

    name: str
    answering_number: str | None = None


@dataclass(slots=True)
class CallTrack:
    """What the plugin remembers of a live call, for every target (freed when the call ends)."""

    handle: int
    call_id: str
    outbound: bool = False
    flags: int = 0  # core.outcome flags of every line's states and modes
    answered_by: list[str] = field(default_factory=list)  # lines that reached CONNECTED, in order
    lines: list[str] = field(default_factory=list)  # every line with an event, in order
    modes: list[str] = field(default_factory=list)  # disconnect modes seen, in order
    stages: dict[str, str] = field(default_factory=dict)  # target name -> ZAMMAD stage

    def saw(self, msg: str, line: str | None, state: str | None, mode: str | None) -> None:
        """Note one TAPI event of the call (any line)."""
        if line is not None and line not in self.lines:
            self.lines.append(line)
        if msg != CALLSTATE:
            return
        self.flags |= flags_of(state, mode)
        if state == CONNECTED and line is not None and line not in self.answered_by:
            self.answered_by.append(line)
        if mode is not None and state == DISCONNECTED:
            self.modes.append(mode)


def withheld_removed(callinfo: Mapping[str, Any]) -> dict[str, Any]:
    """``callinfo`` without the number and name of any party whose flags say it is not shown."""
    out = dict(callinfo)
    for number, (name, flags) in parties.PARTIES.items():
        if parties.HIDING.intersection(out.get(flags) or ()):
            out[number] = None
            out[name] = None
            if number == "callerid":
                out.pop("contact", None)
    return out


# -- json --------------------------------------------------------------------------------


def json_event(event: Any, call_id: str, event_id: str, now: float) -> Outgoing:
    """A TAPI event as a JSON webhook body (the client's notification params, without seq)."""
    body: dict[str, Any] = {"id": event_id, "event": event.msg, "time": now, "callId": call_id,
                            "line": event.line, "call": event.call}
    key = PARAM_KEY.get(event.msg)
    if key is not None and event.param is not None:
        body[key] = event.param
    if event.mode is not None:
        body["mode"] = event.mode
    if event.synthetic:
        body["synthetic"] = True
    body["callinfo"] = withheld_removed(event.callinfo)
    return Outgoing(event_id, call_id, event.msg, JSON_TYPE, _json(body))


def json_finished(track: CallTrack, callinfo: Mapping[str, Any], created: float, ended: float,
                  event_id: str, now: float) -> Outgoing:
    """The ``call_finished`` event: the call record a CRM logs."""
    body = {"id": event_id, "event": "call_finished", "time": now, "callId": track.call_id,
            "call": track.handle, "outcome": outcome(track.flags), "direction": _direction(track),
            "answered_by": list(track.answered_by), "lines": list(track.lines), "created": created,
            "ended": ended, "callinfo": withheld_removed(callinfo)}
    return Outgoing(event_id, track.call_id, "call_finished", JSON_TYPE, _json(body))


def _json(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8")


# -- zammad ------------------------------------------------------------------------------

NONE, NEW, ANSWERED_STAGE, OVER = "none", "new", "answered", "over"

#: (stage, input) -> (next stage, Zammad events to send, in order). Inputs: ``ring`` (the call is on
#: a target line and its caller is known), ``answer`` (a target line connected), ``end`` (the call is over).
ZAMMAD: Mapping[tuple[str, str], tuple[str, tuple[str, ...]]] = {
    (NONE, "ring"): (NEW, ("newCall",)),
    (NONE, "answer"): (ANSWERED_STAGE, ("newCall", "answer")),
    (NONE, "end"): (OVER, ("newCall", "hangup")),
    (NEW, "ring"): (NEW, ()),
    (NEW, "answer"): (ANSWERED_STAGE, ("answer",)),
    (NEW, "end"): (OVER, ("hangup",)),
    (ANSWERED_STAGE, "ring"): (ANSWERED_STAGE, ()),
    (ANSWERED_STAGE, "answer"): (ANSWERED_STAGE, ()),
    (ANSWERED_STAGE, "end"): (OVER, ("hangup",)),
    (OVER, "ring"): (OVER, ()),
    (OVER, "answer"): (OVER, ()),
    (OVER, "end"): (OVER, ()),
}

#: Zammad's hangup causes, by the TAPI disconnect modes that mean them (first match in this order wins).
ZAMMAD_CAUSES: tuple[tuple[str, frozenset[str]], ...] = (
    ("busy", frozenset({"LINEDISCONNECTMODE_BUSY"})),
    ("notFound", frozenset({"LINEDISCONNECTMODE_BADADDRESS", "LINEDISCONNECTMODE_NUMBERCHANGED"})),
    ("congestion", frozenset({
        "LINEDISCONNECTMODE_CONGESTION", "LINEDISCONNECTMODE_UNREACHABLE", "LINEDISCONNECTMODE_UNAVAIL",
        "LINEDISCONNECTMODE_TEMPFAILURE", "LINEDISCONNECTMODE_OUTOFORDER", "LINEDISCONNECTMODE_QOSUNAVAIL",
        "LINEDISCONNECTMODE_INCOMPATIBLE", "LINEDISCONNECTMODE_NODIALTONE"})),
    ("noAnswer", frozenset({
        "LINEDISCONNECTMODE_NOANSWER", "LINEDISCONNECTMODE_REJECT", "LINEDISCONNECTMODE_BLOCKED",
        "LINEDISCONNECTMODE_DONOTDISTURB"})),
    ("forwarded", frozenset({"LINEDISCONNECTMODE_FORWARDED", "LINEDISCONNECTMODE_PICKUP"})),
)
#: Every cause Zammad's API documents; a test holds ZAMMAD_CAUSES to these.
ZAMMAD_CAUSE_WORDS = ("normalClearing", "busy", "cancel", "noAnswer", "congestion", "notFound", "forwarded")


@dataclass(frozen=True, slots=True)
class ZammadTarget:
    """What the Zammad mapping needs of a target: its name, lines (a predicate), agents and region."""

    name: str
    agents: Mapping[str, Agent]
    region: str
    line_numbers: Mapping[str, str]  # line -> its own number, for ``from`` of outbound calls

    def agent(self, line: str) -> Agent:
        return self.agents.get(line) or Agent(line)


def zammad_events(target: ZammadTarget, track: CallTrack, what: str, line: str | None,
                  callinfo: Mapping[str, Any], target_lines: Iterable[str]) -> list[Outgoing]:
    """The Zammad events one input (``ring``, ``answer``, ``end``) gives, by :data:`ZAMMAD`.

    ``line``: the target line of the event (``answer``: the one that
    connected); ``target_lines``: the call's lines that are the target's,
    in order.
    """
    stage = track.stages.get(target.name, NONE)
    after, sends = ZAMMAD[(stage, what)]
    track.stages[target.name] = after
    lines = list(target_lines)
    out = []
    for event in sends:
        fields = _zammad_fields(target, track, event, line, callinfo, lines)
        out.append(Outgoing(f"{track.call_id}:{event}", track.call_id, event, FORM_TYPE,
                            urlencode(fields).encode("ascii")))
    return out


def _zammad_fields(target: ZammadTarget, track: CallTrack, event: str, line: str | None,
                   callinfo: Mapping[str, Any], lines: list[str]) -> list[tuple[str, str]]:
    info = withheld_removed(callinfo)
    outbound = track.outbound
    own_line = lines[0] if lines else (line or "")
    if outbound:
        caller = _zammad_number(info.get("callerid"), target.region) or target.line_numbers.get(own_line) or own_line
        called = _zammad_number(info.get("calledid"), target.region) or ""
    else:
        caller = _zammad_number(info.get("callerid"), target.region) or "anonymous"  # withheld or unknown
        called = _zammad_number(info.get("calledid"), target.region) or own_line
    fields = [("event", event), ("from", caller), ("to", called), ("direction", "out" if outbound else "in"),
              ("callId", track.call_id)]
    answering = [a for a in track.answered_by if a in lines]
    if event == "newCall":
        users = [own_line] if outbound else lines
        fields += [("user[]", target.agent(u).name) for u in users if u]
    elif event == "answer" and not outbound:
        # Zammad writes an answer's user over the called party's name: only for calls that came in.
        who = line if line is not None else (answering[0] if answering else own_line)
        fields += _answered_by(target, who)
    elif event == "hangup":
        fields.append(("cause", _cause(track, answering)))
        if outbound:
            fields.append(("user[]", target.agent(own_line).name))
        elif answering:
            fields += _answered_by(target, answering[0])
    return fields


def _answered_by(target: ZammadTarget, line: str) -> list[tuple[str, str]]:
    agent = target.agent(line)
    fields = [("user[]", agent.name)]
    if agent.answering_number:
        fields.append(("answeringNumber", agent.answering_number))
    return fields


def _cause(track: CallTrack, answering: list[str]) -> str:
    """Zammad's hangup cause for the call, as this target saw it."""
    if answering or (track.outbound and track.flags & ANSWERED):
        return "normalClearing"
    if track.flags & ANSWERED:
        return "forwarded"  # answered, but on a line that is not this target's: not a missed call
    if track.flags & BUSY:
        return "busy"
    modes = set(track.modes)
    for cause, which in ZAMMAD_CAUSES:
        if modes & which:
            return cause
    return "cancel"  # nobody answered and nothing failed: the caller hung up first


def _direction(track: CallTrack) -> str:
    return "out" if track.outbound else "in"


_DIGITS = re.compile(r"\D")


def _zammad_number(number: Any, region: str) -> str | None:
    """A number as Zammad stores it: E.164 without '+', an extension as its digits, else its digits."""
    if not isinstance(number, str) or not number.strip():
        return None
    key = number_key(number, region)
    if key is not None:
        return key.split(";", 1)[0].lstrip("+")
    return _DIGITS.sub("", number) or None

