"""The call model: TAPIEVENT signals and AMI facts in, TAPI events out.

Pure and synchronous: no reactor, no clock (every method that needs time
takes ``now``), no I/O. Each method returns the list of
:class:`~asttapi_server.core.events.TapiEvent` it caused, in order; the
caller publishes them. Timers are reported, not run: :meth:`CallModel.next_deadline`
says when :meth:`CallModel.tick` next has work, so the Twisted side keeps
one ``callLater``.

Life of a call
--------------
* **Born** by ``LINE_NEWCALL <line>`` on a Uniqueid (the ``~id`` of the
  spec, else the Uniqueid of the channel that ran the UserEvent), or by
  :meth:`CallModel.make_call` for a lineMakeCall, with the ChannelId we put
  in the Originate as its Uniqueid. More lines join with more LINE_NEWCALLs
  on the same Uniqueid (ring groups). A handle is an int, never reused.
* **Targeted** by each signal: ``[~ID&line]`` only that line,
  ``[~ID&!line]`` every tracking line but that one, no line in the spec: every
  line tracking the call. Per-line state changes follow
  :mod:`.transitions`; SET verbs change the call info silently (the
  dialplan follows them with LINE_CALLINFO, which carries the new snapshot).
* **Ended** when the last tracking line goes IDLE. The record stays
  readable (``get``, ``snapshot``) for ``linger`` seconds, then is freed.
* **Safety net**: a Hangup of the call's own channel starts ``hangup_grace``;
  if no IDLE arrives by then, the model emits DISCONNECTED (mode from the
  Q.850 cause) and IDLE itself, both ``synthetic=True``. ``resync`` does the
  same at once for calls whose channels are gone after a reconnect,
  ``max_age`` is the last resort.

NEWCALL filtering
-----------------
A call a client made is created by ``make_call`` before Asterisk knows it,
owned by that client, with its line in state NEW (shown as
LINECALLSTATE_UNKNOWN) and callinfo ``calledid=<number>``,
``origin=LINECALLORIGIN_OUTBOUND``. When the dialplan's LINE_NEWCALL for it
arrives (Uniqueid = our ChannelId on Asterisk 12+, or the Uniqueid that
``originate_response`` recorded on older ones) it is absorbed: same handle,
and the LINE_NEWCALL event carries ``owner=<client>`` so the hub announces it
only to the other clients; the owner just sees DIALTONE, DIALING, ... on the
handle it already has.

What a method returns
---------------------
Every method that changes calls returns an :class:`~asttapi_server.core.effects.Effects`:
the TAPI events in order (it is a list of them), plus ``finished``, the
calls that ended (each exactly once, after its IDLE events), ``diagnostics``
(anomalies: events for unknown calls, impossible transitions, synthetic
IDLEs; the adapter logs them, throttled per kind) and ``reschedule`` (the
next deadline may have moved). Anomalies are also counted in
:attr:`CallModel.stats`; they never raise. Calls ended to make room for one
:meth:`CallModel.make_call` creates come out of :meth:`CallModel.take_events`
(or, if nobody asks, with the next method's result): nothing is ever held
back longer than that.

Bounds (PBX data must not grow memory without limit)
----------------------------------------------------
* ``max_field_bytes``: a SET value (caller id number or name, ...) is cut to
  this many UTF-8 bytes, ending in :data:`TRUNCATED`; every event and the
  replay ring carry the callinfo, so one 1 MB caller name would otherwise be
  copied thousands of times.
* ``max_calls``: calls tracked at once (live and lingering). A new call when
  full first frees the oldest: a lingering one at once, a live one (a call
  whose IDLE never came) through the safety net, DISCONNECTED + IDLE, with
  one throttled log line for all of them.
* ``max_lines``: lines one call may have; a LINE_NEWCALL beyond it is ignored.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Collection, Hashable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

from . import grammar as G
from . import parties, stored
from .causes import UNKNOWN_MODE, mode_for_cause, mode_for_originate_reason
from .constants import (
    BUSY, CALLINFO, CALLINFO_OTHER, CALLSTATE, CONNECTED, DEVSTATE, DIALING, DIALTONE, DISCONNECTED, IDLE, NEWCALL,
    OFFERING, ONHOLD, PROCEEDING, RINGBACK,
)
from .effects import Effects
from .events import TapiEvent
from .legs import CHAIN, CHAIN_MAX, LEG, MEMBER_END, RESET, CallsView, DeviceNote, Leg
from .outcome import flags_of, outcome
from .transitions import ALIASES, DEFAULT_DISCONNECT_MODE, DUPLICATE, IMPOSSIBLE, NEW, TRANSITIONS, shown, verdict


#: Seconds between two looks for device legs whose Hangup was lost (their age is ``max_age``).
LEG_SWEEP_EVERY = 60.0
#: Ends a SET value cut to ``max_field_bytes``.
TRUNCATED = "…[truncated]"
DEFAULT_MAX_FIELD_BYTES = 256
DEFAULT_MAX_CALLS = 10000
#: Defaults of ``[calls]`` (``config.CallsConfig`` reads them here): seconds a Hangup waits for
#: the dialplan's own IDLE, seconds a call may live at most, seconds an ended call stays readable.
DEFAULT_HANGUP_GRACE = 5.0
DEFAULT_MAX_AGE = 14400.0
DEFAULT_LINGER = 30.0

#: Why the model ended a call itself (synthetic DISCONNECTED/IDLE), as counted
#: in ``CallModel.endings``, with the words the log uses.
ENDINGS: dict[str, str] = {
    "hangup": "hangup",  # the channel hung up, no hangup grace configured
    "hangup_grace": "hangup grace expired",
    "resync": "resync",  # the channel was gone after a reconnect
    "max_age": "max_age reached",
    "max_calls": "max_calls",  # evicted to make room
    "originate_failed": "originate failed",
    "superseded": "superseded",  # the dialplan announced a click-to-dial's call first (pre-12)
    # restored from the call store with a channel Asterisk does not report for its Uniqueid
    "unconfirmed": "its stored channel is not the one Asterisk reports for its Uniqueid (call store)",
}


class Call:
    """One call as the model tracks it. Read it; only the model changes it.

    ``states`` maps every line that ever tracked the call to its state
    (``transitions.NEW`` until the first LINE_CALLSTATE, ``LINECALLSTATE_IDLE``
    once that line is done); ``lines`` lists the lines still tracking it.
    Times are the ``now`` values the model was given.
    """

    __slots__ = (
        "handle",
        "uniqueids",
        "channel",
        "channel_id",
        "owner",
        "owner_line",
        "owner_announced",
        "states",
        "modes",
        "callinfo",
        "ci_version",
        "ci_sent",
        "_view",
        "created",
        "updated",
        "ended",
        "hangup_at",
        "hangup_cause",
        "deadline",
        "looked_up",
        "device",
        "confirmed",
        "flags",
    )

    def __init__(self, handle: int, uniqueid: str, now: float) -> None:
        self.handle = handle
        # Every Uniqueid that names it (ChannelId + OriginateResponse's), the
        # one Asterisk uses for it now last (see ``uniqueid``).
        self.uniqueids = [uniqueid]
        self.channel: str | None = None
        self.channel_id: str | None = None  # set for calls made with make_call
        self.owner: Hashable | None = None
        self.owner_line: str | None = None
        self.owner_announced = False
        self.states: dict[str, str] = {}
        self.modes: dict[str, str] | None = None  # line -> last state detail, when there was one
        self.callinfo: dict[str, Any] = {
            "callerid": None,
            "calleridname": None,
            "calleridflags": parties.NOT_KNOWN,
            "calledid": None,
            "calledidname": None,
            "calledidflags": parties.NOT_KNOWN,
            "connectedid": None,
            "connectedidname": None,
            "connectedidflags": parties.NOT_KNOWN,
            "origin": "LINECALLORIGIN_UNKNOWN",
            "uniqueid": uniqueid,
        }
        self.ci_version = 0  # bumped whenever callinfo changes
        self.ci_sent: dict[str, tuple[str, int]] | None = None  # line -> last (infostate, version) sent
        self._view: MappingProxyType | None = None
        self.created = now
        self.updated = now
        self.ended: float | None = None  # when the last line went IDLE
        self.hangup_at: float | None = None  # when AMI said its channel hung up
        self.hangup_cause: int | None = None
        self.deadline: float | None = None  # when tick() next needs to look at it
        # The caller id a contact lookup was started for (written by core.control).
        self.looked_up: str | None = None
        # Followed from a device line's channel events (TapiSignal.device), not a dialplan's:
        # a dialplan call on the same Uniqueid is another call (docs/device-lines.md, "Mixed offices").
        self.device = False
        # False for a call restored from the call store until the resync has seen
        # Asterisk list its Uniqueid with its channel: nothing may act on it before.
        self.confirmed = True
        # What its states and modes add up to so far (core.outcome: answered, busy, failed).
        self.flags = 0

    @property
    def outcome(self) -> str:
        """answered, missed, busy or failed (:mod:`.outcome`), from every state its lines were in."""
        return outcome(self.flags)

    @property
    def uniqueid(self) -> str:
        """The Uniqueid Asterisk uses for the call now (also ``callinfo["uniqueid"]``)."""
        return self.uniqueids[-1]

    @property
    def lines(self) -> tuple[str, ...]:
        """The lines still tracking the call (not IDLE)."""
        return tuple(line for line, state in self.states.items() if state != IDLE)

    @property
    def seen_lines(self) -> tuple[str, ...]:
        """Every line that ever tracked the call, IDLE ones included (who may still read it)."""
        return tuple(self.states)

    @property
    def holding_lines(self) -> tuple[str, ...]:
        """The lines that hold the call now: tracking it, neither DISCONNECTED nor IDLE.

        Only these may act on it (lineDrop, lineBlindTransfer, lineRedirect):
        in a ring group the lines that did not answer are DISCONNECTED while
        the call goes on elsewhere, and must not hang it up.
        """
        return tuple(line for line, state in self.states.items() if state != IDLE and state != DISCONNECTED)

    def state(self, line: str) -> str | None:
        """The TAPI state this line sees, or None if the line never tracked the call."""
        state = self.states.get(line)
        return None if state is None else shown(state)

    def view(self) -> MappingProxyType:
        """An immutable snapshot of callinfo, shared by events until callinfo changes."""
        view = self._view
        if view is None:
            view = self._view = MappingProxyType(dict(self.callinfo))
        return view

    def _set_info(self, key: str, value: Any) -> bool:
        if key in self.callinfo and self.callinfo[key] == value:
            return False
        self.callinfo[key] = value
        self.ci_version += 1
        self._view = None
        return True

    def _set_party(self, party: str, number: str | None, name: str | None, judged: str | None) -> None:
        """One party's number, name and flags, through the one rule (:func:`.parties.shown`)."""
        number, name, flags = parties.shown(number, name, judged)
        name_key, flags_key = parties.PARTIES[party]
        self._set_info(party, number)
        self._set_info(name_key, name)
        self._set_info(flags_key, flags)

    def __repr__(self) -> str:
        return f"<Call {self.handle} {self.uniqueid} {self.states}>"


#: A SET of an id field may give '"Name" <number>' (split by :func:`split_callerid`).
_NAME_NUMBER = re.compile(r'^\s*(?:"([^"]*)"|([^<"]*?))\s*<([^<>]*)>\s*$')


def split_callerid(value: str) -> tuple[str | None, str | None]:
    """'"Name" <number>' or 'Name <number>' -> (number, name); (None, None) if not that form."""
    m = _NAME_NUMBER.match(value)
    if m is None:
        return None, None
    name = (m.group(1) if m.group(1) is not None else m.group(2) or "").strip()
    return m.group(3).strip(), name or None


#: An Exten that is a number (not ``s``, ``h``, a pattern): the number the caller dialled.
_DIALLED = re.compile(r"\+?[0-9*#]+")


def _identify(call: Call, signal: G.TapiSignal, bounded: Any = str) -> None:
    """Fill what the call's own channel tells at LINE_NEWCALL into callinfo still unknown.

    CallerIDNum/CallerIDName are the calling party (TAPI's callerid: the
    caller of an inbound call, the line's own phone on an outbound one), shown
    as its presentation allows (``signal.presentation``, :mod:`.parties`); the
    channel's Exten the number it dialled (calledid); ``signal.origin`` the
    origin, when the source knows it this early (device lines). The
    dialplan's SET verbs still override all of it later. The caller chose
    these values: ``bounded`` cuts them as it cuts SET values (``max_field_bytes``).
    """
    info = call.callinfo
    if info["calleridflags"] == parties.NOT_KNOWN and info["callerid"] is None and info["calleridname"] is None:
        number = bounded(signal.callerid) if signal.callerid else None
        name = bounded(signal.calleridname) if signal.calleridname else None
        if number or name or signal.presentation is not None:
            call._set_party("callerid", number, name, signal.presentation)
    exten = signal.exten
    if exten and info["calledid"] is None and _DIALLED.fullmatch(exten):
        call._set_party("calledid", bounded(exten), info["calledidname"], parties.ALLOWED)
    if signal.origin and info["origin"] == "LINECALLORIGIN_UNKNOWN":
        call._set_info("origin", signal.origin)


_RESOLVED: dict[tuple[str, ...], tuple[str, str | None]] = {}


def _resolve(args: tuple[str, ...]) -> tuple[str, str | None]:
    """LINE_CALLSTATE args -> (TAPI state, mode): aliases and default modes applied (memoised)."""
    hit = _RESOLVED.get(args)
    if hit is not None:
        return hit
    state = args[0]
    mode = args[1] if len(args) > 1 else None
    alias = ALIASES.get(state)
    if alias is not None:
        state, default = alias
        mode = mode or default
    elif state == DISCONNECTED and mode is None:
        mode = DEFAULT_DISCONNECT_MODE
    # The grammar only lets through known states and modes, so this stays small.
    _RESOLVED[args] = (state, mode)
    return state, mode


class Handles:
    """Where call handles come from: one per server, shared by the call model of every PBX
    (asttapi_server.pbx), so a handle names one call whichever PBX it is on."""

    __slots__ = ("next",)

    def __init__(self, next: int = 1) -> None:
        self.next = next


class CallModel:
    """Every call the server knows about; see the module docstring.

    One model per PBX: a call's identity is (PBX, Uniqueid), and the Uniqueid
    indexes here are the PBX's own. ``handles`` is shared by every PBX's model.
    """

    def __init__(
        self,
        *,
        hangup_grace: float = DEFAULT_HANGUP_GRACE,
        max_age: float = DEFAULT_MAX_AGE,
        linger: float = DEFAULT_LINGER,
        boot_id: str = "0",
        max_calls: int = DEFAULT_MAX_CALLS,
        max_lines: int = G.MAX_LINES,
        max_field_bytes: int = DEFAULT_MAX_FIELD_BYTES,
        handles: Handles | None = None,
    ) -> None:
        self.hangup_grace = hangup_grace
        self.max_age = max_age
        self.linger = linger
        self.max_calls = max_calls
        self.max_lines = max_lines
        self.max_field_bytes = max_field_bytes
        # What inner steps caused beyond the events being built (calls ended
        # to make room, calls finished, diagnostics): added to the result of
        # the public method that caused them (see _done).
        self._carry: Effects | None = None
        #: Makes ChannelIds unique across restarts: the composition passes a
        #: random one (the core draws no random numbers itself).
        self.boot_id = boot_id
        self.handles = handles if handles is not None else Handles()
        self._by_handle: dict[int, Call] = {}
        # Uniqueid -> call, one index per source: a device line's call (TapiSignal.device)
        # and a dialplan's call may share a Uniqueid and are still two calls.
        self._by_uid: dict[str, Call] = {}
        self._by_leg: dict[str, Call] = {}
        self._by_line: dict[str, dict[int, Call]] = {}
        #: The facts of every device channel followed (docs: core/legs.py), by Uniqueid; the device
        #: line mapping reads them through a :class:`~.legs.CallsView` and changes them with
        #: :class:`~.legs.DeviceNote` values. A leg goes with its call's Hangup (the mapping's note),
        #: with its call when the model ends it, or after ``max_age`` without news.
        self.legs: dict[str, Leg] = {}
        self.leg_channels: dict[str, str] = {}  # device channel name -> Uniqueid
        #: Local ;1 channel -> (the number its caller dialled, the caller is a configured device).
        self.chain: dict[str, tuple[str | None, bool]] = {}
        #: Local ;2 of a queue or ring group member -> how the Dial of its ;1 ended.
        self.member_end: dict[str, str] = {}
        self._legs_swept = 0.0
        self._heap: list[tuple[float, int]] = []
        self._moved = False  # a deadline was pushed since the last result
        #: Counters of what happened, for tests, benchmarks and a status page.
        self.stats: dict[str, int] = dict.fromkeys(
            (
                "calls",
                "events",
                "duplicate",
                "impossible",
                "unknown_call",
                "untied",
                "line_not_tracking",
                "synthetic_idle",
                "freed",
                "evicted",
                "truncated",
                "too_many_lines",
            ),
            0,
        )
        #: Calls the model ended itself, by reason (:data:`ENDINGS`): the metrics read it.
        self.endings: dict[str, int] = dict.fromkeys(ENDINGS, 0)

    @property
    def _next_handle(self) -> int:
        return self.handles.next

    @_next_handle.setter
    def _next_handle(self, value: int) -> None:
        self.handles.next = value

    # -- reading -----------------------------------------------------------

    @property
    def tracked(self) -> int:
        """Calls not yet freed (live ones and ones lingering after IDLE)."""
        return len(self._by_handle)

    def get(self, handle: int) -> Call | None:
        return self._by_handle.get(handle)

    def by_uniqueid(self, uniqueid: str, *, device: bool | None = None) -> Call | None:
        """The call a Uniqueid names: the dialplan's (``device=False``), the device line's
        (``device=True``), or (None) the dialplan's if there is one, else the device line's."""
        if device is None:
            return self._by_uid.get(uniqueid) or self._by_leg.get(uniqueid)
        return (self._by_leg if device else self._by_uid).get(uniqueid)

    def _index(self, call: Call) -> dict[str, Call]:
        return self._by_leg if call.device else self._by_uid

    def calls_on_line(self, line: str) -> list[Call]:
        """Calls this line is tracking now (not IDLE on it), oldest first."""
        calls = self._by_line.get(line)
        return list(calls.values()) if calls else []

    def snapshot(self, call: Call, line: str) -> dict:
        """What a client opening ``line`` (or calling lineGetCallInfo) should know."""
        return {
            "call": call.handle,
            "line": line,
            "state": call.state(line),
            "mode": call.modes.get(line) if call.modes else None,
            "callinfo": dict(call.view()),
            "lines": list(call.lines),
            "created": call.created,
            "updated": call.updated,
            "ended": call.ended,
        }

    # -- the dialplan ------------------------------------------------------

    def apply(self, signal: G.TapiSignal | DeviceNote, now: float) -> Effects:
        """Apply one TAPIEVENT; return the TAPI events it causes (and the calls it ended).

        A :class:`~.legs.DeviceNote` among a mapping's signals is what to remember of device
        channels (:meth:`note`): it causes no event.
        """
        if type(signal) is DeviceNote:
            self.note(signal, now)
            return Effects()
        events = self._apply(signal, now)
        if self._carry is not None or self._moved:
            return self._done(events)
        return events

    def take_events(self) -> Effects:
        """What happened beyond a method's own result: calls ended to make room
        for the call :meth:`make_call` created (``max_calls``), once."""
        return self._done(Effects())

    def _done(self, events: Effects) -> Effects:
        """``events`` with what inner steps carried (first: calls ended to make room came first)."""
        carry, self._carry = self._carry, None
        if carry is not None:
            events = carry.merge(events)
        if self._moved:
            self._moved = False
            events.reschedule = True
        return events

    def _carried(self) -> Effects:
        carry = self._carry
        if carry is None:
            carry = self._carry = Effects()
        return carry

    def _apply(self, signal: G.TapiSignal, now: float) -> Effects:
        cmd = signal.command
        verb = cmd.verb
        uid = cmd.call_id or signal.uniqueid
        index = self._by_leg if signal.device else self._by_uid
        call = index.get(uid) if uid is not None else None
        if verb == NEWCALL:
            if uid is None:
                self._untied(cmd)
                return Effects()
            # The signal's Channel is the call's own only when the Uniqueid came from it too.
            own = cmd.call_id is None or cmd.call_id == signal.uniqueid
            return self._newcall(call, uid, cmd, signal.channel if own else None, now, signal if own else None,
                                 device=signal.device)
        if call is None:
            if verb == DEVSTATE and cmd.lines and cmd.call_id is None:
                # "[line_1] LINE_LINEDEVSTATE ..." is about the line, not a call.
                return Effects(TapiEvent(DEVSTATE, line, None, cmd.args[0]) for line in cmd.lines)
            if uid is None:
                self._untied(cmd)
            else:
                self.stats["unknown_call"] += 1
                self._warn(("unknown_call", verb, cmd.args[:1]),
                           "TAPIEVENT for unknown call {uniqueid}, ignored: {raw!r}", uniqueid=uid, raw=G.quoted(cmd))
            return Effects()
        call.updated = now
        if verb == CALLSTATE:
            return self._callstate(call, cmd, now)
        if verb == CALLINFO:
            return self._callinfo(call, cmd)
        if verb == G.SET:
            self._set(call, *cmd.args)
            return Effects()
        # LINE_LINEDEVSTATE for the lines of a call
        events = Effects(
            TapiEvent(DEVSTATE, line, None, cmd.args[0])
            for line in self._targets(call, cmd, tracking_only=True)
        )
        self.stats["events"] += len(events)
        return events

    def _set(self, call: Call, field: str, value: str) -> None:
        """A SET verb: callinfo changes silently (the LINE_CALLINFO after it carries the snapshot)."""
        key = G.SET_FIELDS[field]
        party = parties.PARTY_OF.get(key)
        if party is None:
            call._set_info(key, self._bounded(value))
            return
        info = call.callinfo
        name_key, flags_key = parties.PARTIES[party]
        if key == flags_key:  # SET <PARTY>FLAGS <why hidden>: the party is not shown
            call._set_party(party, None, None, value)
            return
        value = self._bounded(value)
        number, name = info[party], info[name_key]
        if key == party:
            number = value
            if "<" in value:
                # Asterisk's ${CALLERID} (the manual's 1.2 dialplan) is
                # '"Name" <number>': keep the number as the id, the name apart.
                split_number, split_name = split_callerid(value)
                if split_number is not None:
                    number, name = split_number, split_name or name
        elif parties.withheld(info[flags_key]):
            return  # a name alone does not make a hidden party reappear (a new number does)
        else:
            name = value
        call._set_party(party, number, name, parties.ALLOWED)

    def _bounded(self, value: str) -> str:
        """``value`` cut to ``max_field_bytes`` UTF-8 bytes (marker included), on a character boundary."""
        limit = self.max_field_bytes
        if len(value) * 4 <= limit:
            return value  # cannot be too long: the common case, no encoding
        data = value.encode("utf-8", "surrogatepass")
        if len(data) <= limit:
            return value
        self.stats["truncated"] += 1
        keep = max(0, limit - len(TRUNCATED.encode("utf-8")))
        return data[:keep].decode("utf-8", "ignore") + TRUNCATED

    def _newcall(self, call: Call | None, uid: str, cmd: G.TapiCommand,
                 channel: str | None, now: float, own: G.TapiSignal | None = None, *, device: bool = False) -> Effects:
        if call is None or call.ended is not None:
            call = self._create(uid, now, device=device)
        call.updated = now
        if call.channel is None:
            call.channel = channel
        if own is not None:
            _identify(call, own, self._bounded)
        events = Effects()
        states = call.states
        for line in cmd.args:
            old = states.get(line)
            if line == call.owner_line and not call.owner_announced and old != IDLE:
                # Absorbed: a client made this call and already holds the handle.
                call.owner_announced = True
                owner = call.owner
            elif old is None and len(states) >= self.max_lines:
                self.stats["too_many_lines"] += 1
                self._warn(("too_many_lines",), "call {handle} already has {n} lines ([calls] max_lines);"
                           " LINE_NEWCALL {line} ignored", handle=call.handle, n=len(states), line=G.clip(line))
                continue
            elif old is None or old == IDLE:
                self._track(call, line)
                owner = None
            else:
                self.stats["duplicate"] += 1
                continue
            events.append(TapiEvent(NEWCALL, line, call.handle, None, None, call.view(), False, owner))
        self.stats["events"] += len(events)
        return events

    def _callstate(self, call: Call, cmd: G.TapiCommand, now: float) -> Effects:
        state, mode = _resolve(cmd.args)
        states = call.states
        if cmd.lines or cmd.excluded:
            targets = self._targets(call, cmd, tracking_only=False)
        else:  # the common case, inlined: every line still tracking the call
            targets = [line for line, old in states.items() if old != IDLE]
        if not targets:
            if call.ended is not None:
                # e.g. the h extension's IDLE after the call already ended: said once is enough.
                self.stats["duplicate"] += 1
            return Effects()
        events = Effects()
        idled = False
        view = call.view()
        handle = call.handle
        for line in targets:
            old = states[line]
            judged = verdict(old, state)
            if judged == DUPLICATE:
                self.stats["duplicate"] += 1
                continue
            if judged == IMPOSSIBLE:
                self.stats["impossible"] += 1
                self._warn(
                    ("impossible", old, state),
                    "impossible call state change {old} -> {new} for call {handle} on {line}, ignored: {raw!r}",
                    old=old, new=state, handle=handle, line=line, raw=G.quoted(cmd),
                )
                continue
            states[line] = state
            call.flags |= flags_of(state, mode)
            if mode is not None or call.modes:
                if call.modes is None:
                    call.modes = {}
                call.modes[line] = mode
            events.append(TapiEvent(CALLSTATE, line, handle, state, mode, view))
            if state == IDLE:
                idled = True
                self._untrack(call, line)
        self.stats["events"] += len(events)
        if idled and not self._any_tracking(call):
            self._end(call, now)
        return events

    def _callinfo(self, call: Call, cmd: G.TapiCommand) -> Effects:
        infostate = cmd.args[0]
        key = (infostate, call.ci_version)
        sent = call.ci_sent
        if sent is None:
            sent = call.ci_sent = {}
        events = Effects()
        view = call.view()
        for line in self._targets(call, cmd, tracking_only=True):
            if sent.get(line) == key:
                self.stats["duplicate"] += 1
                continue
            sent[line] = key
            events.append(TapiEvent(CALLINFO, line, call.handle, infostate, None, view))
        self.stats["events"] += len(events)
        return events

    def _targets(self, call: Call, cmd: G.TapiCommand, *, tracking_only: bool) -> list[str]:
        """The lines a command is for. Explicit lines that never tracked the call are logged."""
        states = call.states
        if cmd.lines:
            lines = []
            for line in cmd.lines:
                state = states.get(line)
                if state is None:
                    self.stats["line_not_tracking"] += 1
                    self._warn(("line_not_tracking", cmd.verb, cmd.args[:1]),
                               "line {line} does not track call {handle}: {raw!r}",
                               line=G.clip(line), handle=call.handle, raw=G.quoted(cmd), level="info")
                elif not (tracking_only and state == IDLE):
                    lines.append(line)
        else:
            lines = [line for line, state in states.items() if state != IDLE]
        if cmd.excluded:
            excluded = cmd.excluded
            lines = [line for line in lines if line not in excluded]
        return lines

    def _untied(self, cmd: G.TapiCommand) -> None:
        self.stats["untied"] += 1
        self._warn(
            ("untied", cmd.verb),
            "TAPIEVENT without ~uniqueid from a channel without Uniqueid cannot be tied to a call,"
            " ignored: {raw!r}",
            raw=G.quoted(cmd),
        )

    def _warn(self, key: Any, text: str, *, level: str = "warn", **fields: Any) -> None:
        """Report a dialplan problem as a diagnostic (the adapter throttles per ``key``; ``stats`` count them all)."""
        self._carried().diagnose(key, text, level, **fields)

    # -- device channels (core/legs.py) ----------------------------------------

    def view(self, held: Mapping[tuple[bool, str], Any] | None = None) -> CallsView:
        """A read-only view of what this model knows of device channels (``held``: see CallsView)."""
        return CallsView(self, held)

    def note(self, note: DeviceNote, now: float) -> None:
        """Remember what a device-line mapping learnt from one event (see :class:`~.legs.DeviceNote`)."""
        kind, key, value = note.kind, note.key, note.value
        if kind == LEG:
            if key is None:
                return
            if value is None:
                self._forget_leg(key)
            else:
                old = self.legs.get(key)
                if old is not None and old.channel != value.channel and self.leg_channels.get(old.channel) == key:
                    del self.leg_channels[old.channel]
                self.legs[key] = value
                self.leg_channels[value.channel] = key
        elif kind == CHAIN or kind == MEMBER_END:
            table: dict[str, Any] = self.chain if kind == CHAIN else self.member_end
            if key is None:
                return
            if value is None:
                table.pop(key, None)
            elif key not in table:
                if len(table) >= CHAIN_MAX:
                    del table[next(iter(table))]  # the oldest: its Hangup never came
                table[key] = value
        elif kind == RESET:
            self.legs.clear()
            self.leg_channels.clear()
            self.chain.clear()
            self.member_end.clear()
        if now - self._legs_swept >= LEG_SWEEP_EVERY:
            self._sweep_legs(now)

    def _forget_leg(self, uid: str) -> None:
        leg = self.legs.pop(uid, None)
        if leg is not None and self.leg_channels.get(leg.channel) == uid:
            del self.leg_channels[leg.channel]

    def _sweep_legs(self, now: float) -> None:
        """Forget device channels without a live call and without news for ``max_age`` (their Hangup
        was lost); a leg whose call is live goes with its call (``max_age`` counts from its start)."""
        self._legs_swept = now
        by_leg = self._by_leg
        for uid in [uid for uid, leg in self.legs.items() if now - leg.updated >= self.max_age]:
            call = by_leg.get(uid)
            if call is None or call.ended is not None:
                self._forget_leg(uid)

    # -- lineMakeCall ------------------------------------------------------

    def make_call(self, line: str, number: str, owner: Hashable, now: float, *, device: bool = False) -> Call:
        """Pre-create the call a client asked for; put ``call.channel_id`` in the Originate.

        ``device``: ``line`` is a device line, whose channel events (not a
        dialplan's UserEvents) will announce the call.
        """
        handle = self.handles.next
        channel_id = f"asttapi-{self.boot_id}-{handle}"
        call = self._create(channel_id, now, device=device)
        call.channel_id = channel_id
        call.owner = owner
        call.owner_line = line
        call._set_party("calledid", number, None, parties.ALLOWED)
        call.callinfo["origin"] = "LINECALLORIGIN_OUTBOUND"
        self._track(call, line)
        return call

    def originate_response(
        self,
        channel_id: str,
        uniqueid: str | None,
        channel: str | None,
        success: bool,
        now: float,
        reason: int | None = None,
    ) -> Effects:
        """Asterisk's answer to our Originate (``reason``: OriginateResponse Reason)."""
        return self._done(self._originate_response(channel_id, uniqueid, channel, success, now, reason))

    def _originate_response(self, channel_id: str, uniqueid: str | None, channel: str | None,
                            success: bool, now: float, reason: int | None) -> Effects:
        call = self.by_uniqueid(channel_id)
        if call is not None and call.channel_id != channel_id:
            call = self._by_leg.get(channel_id)
        if call is None or call.channel_id != channel_id or call.ended is not None:
            self._warn(("originate_response", "no call"), "OriginateResponse for no pending call {channel_id}",
                       channel_id=channel_id, level="info")
            return Effects()
        call.updated = now
        if channel and call.channel is None:
            call.channel = channel
        if not success:
            return self._teardown(call, now, mode_for_originate_reason(reason), "originate_failed")
        if uniqueid and uniqueid != channel_id:
            index = self._index(call)
            other = index.get(uniqueid)
            if other is not None and other is not call and other.ended is None:
                # Asterisk < 12 only: LINE_NEWCALL beat the OriginateResponse,
                # so the dialplan's call already exists under its own handle.
                self._warn(
                    ("originate_response", "superseded"),
                    "LINE_NEWCALL for {uniqueid} arrived before the OriginateResponse of call {handle};"
                    " that client now holds call {other} instead",
                    uniqueid=uniqueid, handle=call.handle, other=other.handle,
                )
                return self._teardown(call, now, UNKNOWN_MODE, "superseded")
            index[uniqueid] = call
            call.uniqueids.append(uniqueid)
            call._set_info("uniqueid", uniqueid)
        return Effects()

    # -- AMI facts -----------------------------------------------------------

    def channel_hangup(self, uniqueid: str, cause: int | None, now: float) -> Effects:
        """AMI ``Hangup`` of a channel; starts the grace period of each call it names (a dialplan's
        and a device line's may share it)."""
        events = Effects()
        for call in (self._by_uid.get(uniqueid), self._by_leg.get(uniqueid)):
            if call is None or call.ended is not None or call.hangup_at is not None:
                continue
            call.hangup_at = now
            call.hangup_cause = cause
            if self.hangup_grace <= 0:
                events += self._teardown(call, now, mode_for_cause(cause), "hangup")
            else:
                self._schedule(call)
        return self._done(events)

    def resync(self, live: Mapping[str, str | None] | Collection[str], now: float) -> Effects:
        """After a reconnect: end every call none of whose channels is still live.

        ``live``: Asterisk's channel list as Uniqueid -> channel name (a plain
        collection of Uniqueids names no channel). It is also what confirms a
        call restored from the call store: kept if Asterisk lists one of its
        Uniqueids with the channel the store recorded (or the store recorded
        none, so only channels Asterisk reports will be acted on); ended, with
        a throttled log line, if its channel is not the one Asterisk reports
        for its Uniqueid (a hand-edited store could otherwise aim lineDrop at
        another call's channel).
        """
        channels = live if isinstance(live, Mapping) else dict.fromkeys(live)
        events = Effects()
        for call in list(self._by_handle.values()):
            if call.ended is not None:
                continue
            if not any(uid in channels for uid in call.uniqueids):
                events += self._teardown(call, now, mode_for_cause(call.hangup_cause), "resync")
            elif not call.confirmed:
                if call.channel is None or any(channels.get(uid) == call.channel for uid in call.uniqueids):
                    call.confirmed = True
                else:
                    events += self._teardown(call, now, UNKNOWN_MODE, "unconfirmed")
        return self._done(events)

    def annotate(self, handle: int, key: str, value: Any, now: float, *, always: bool = False) -> Effects:
        """Plugin data into callinfo; LINE_CALLINFO LINECALLINFOSTATE_OTHER to each tracking line.

        ``always``: send it even when the value did not change (a finished
        contact lookup is news to a client waiting for it, found or not).
        """
        call = self._by_handle.get(handle)
        if call is None or (not call._set_info(key, value) and not always):
            return Effects()
        call.updated = now
        if call.ended is not None:
            return Effects()
        view = call.view()
        events = Effects(TapiEvent(CALLINFO, line, handle, CALLINFO_OTHER, None, view) for line in call.lines)
        self.stats["events"] += len(events)
        return events

    # -- time ------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When tick() next has work (None: nothing scheduled)."""
        heap = self._heap
        by_handle = self._by_handle
        while heap:
            deadline, handle = heap[0]
            call = by_handle.get(handle)
            if call is not None and call.deadline == deadline:
                return deadline
            heapq.heappop(heap)  # stale: the call moved on or was freed
        return None

    def tick(self, now: float) -> Effects:
        """Run every timer due by ``now``: grace, max age, linger expiry."""
        events = Effects()
        by_handle = self._by_handle
        # self._heap, not a local: _schedule may rebuild the list under us.
        while self._heap and self._heap[0][0] <= now:
            deadline, handle = heapq.heappop(self._heap)
            call = by_handle.get(handle)
            if call is None or call.deadline != deadline:
                continue
            call.deadline = None
            if call.ended is not None:
                self._free(call)
            elif call.hangup_at is not None and now >= call.hangup_at + self.hangup_grace:
                events += self._teardown(call, now, mode_for_cause(call.hangup_cause), "hangup_grace")
            elif now >= call.created + self.max_age:
                events += self._teardown(call, now, UNKNOWN_MODE, "max_age")
            else:  # pragma: no cover - deadlines are only ever set to one of the above
                self._schedule(call)
        if self.legs and now - self._legs_swept >= LEG_SWEEP_EVERY:
            self._sweep_legs(now)
        events = self._done(events)
        events.reschedule = True  # the timer that ran is gone: always ask again
        return events

    # -- internals -------------------------------------------------------------

    def _create(self, uid: str, now: float, *, device: bool = False) -> Call:
        if len(self._by_handle) >= self.max_calls:
            self._make_room(now)
        handles = self.handles
        handle = handles.next
        handles.next = handle + 1
        call = Call(handle, uid, now)
        call.device = device
        self._by_handle[handle] = call
        self._index(call)[uid] = call
        self.stats["calls"] += 1
        self._schedule(call)
        return call

    def _make_room(self, now: float) -> None:
        """Free the oldest calls until one more fits under ``max_calls``."""
        by_handle = self._by_handle
        ended = 0
        while by_handle and len(by_handle) >= self.max_calls:
            oldest = next(iter(by_handle.values()))
            if oldest.ended is None:
                self._carried().extend(self._teardown(oldest, now, UNKNOWN_MODE, "max_calls", quiet=True))
                ended += 1
            if oldest.handle in by_handle:
                self._free(oldest)
        self.stats["evicted"] += ended
        if ended:
            self._warn(("max_calls",), "{max_calls} calls tracked ([calls] max_calls): ended the oldest"
                       " live call(s) to make room; Asterisk never sent their IDLE or Hangup",
                       max_calls=self.max_calls)

    def _track(self, call: Call, line: str) -> None:
        call.states[line] = NEW
        calls = self._by_line.get(line)
        if calls is None:
            calls = self._by_line[line] = {}
        calls[call.handle] = call

    def _untrack(self, call: Call, line: str) -> None:
        calls = self._by_line.get(line)
        if calls is not None:
            calls.pop(call.handle, None)
            if not calls:
                del self._by_line[line]

    @staticmethod
    def _any_tracking(call: Call) -> bool:
        for state in call.states.values():
            if state != IDLE:
                return True
        return False

    def _teardown(self, call: Call, now: float, mode: str, why: str, *, quiet: bool = False) -> Effects:
        """Synthetic DISCONNECTED (unless already) then IDLE on every tracking line; end the call.

        ``why`` is one of :data:`ENDINGS` (counted in ``endings``).
        """
        self.stats["synthetic_idle"] += 1
        self.endings[why] += 1
        if not quiet:
            # Throttled per reason: a PBX that never sends IDLE would otherwise
            # write one line per call when a thousand calls expire together.
            self._warn(("teardown", why), "call {handle} ({uniqueid}) ended by the server: {why}; sending IDLE",
                       handle=call.handle, uniqueid=call.uniqueid, why=ENDINGS[why], level="info")
        events = Effects()
        view = call.view()
        states = call.states
        for line, old in list(states.items()):
            if old == IDLE:
                continue
            if old != DISCONNECTED:
                call.flags |= flags_of(DISCONNECTED, mode)
                events.append(TapiEvent(CALLSTATE, line, call.handle, DISCONNECTED, mode, view, True))
            events.append(TapiEvent(CALLSTATE, line, call.handle, IDLE, None, view, True))
            states[line] = IDLE
            if call.modes:
                call.modes[line] = None
            self._untrack(call, line)
        self.stats["events"] += len(events)
        self._end(call, now)
        if call.device:
            for uid in call.uniqueids:  # the channel is given up with its call
                self._forget_leg(uid)
        return events

    def _end(self, call: Call, now: float) -> None:
        """The call is over: reported once as finished (whatever ``linger`` is), then kept ``linger`` s."""
        if call.ended is not None:
            return
        call.ended = now
        self._carried().finish(call)
        if self.linger <= 0:
            self._free(call)
        else:
            self._schedule(call)

    def _free(self, call: Call) -> None:
        handle = call.handle
        del self._by_handle[handle]
        by_uid = self._index(call)
        for uid in call.uniqueids:
            if by_uid.get(uid) is call:
                del by_uid[uid]
        for line, state in call.states.items():
            if state != IDLE:
                self._untrack(call, line)
        call.deadline = None
        self.stats["freed"] += 1

    def _schedule(self, call: Call) -> None:
        """Push the call's next deadline if it changed (older heap entries go stale)."""
        if call.ended is not None:
            deadline = call.ended + self.linger
        else:
            deadline = call.created + self.max_age
            if call.hangup_at is not None:
                deadline = min(deadline, call.hangup_at + self.hangup_grace)
        if deadline == call.deadline:
            return
        call.deadline = deadline
        heap = self._heap
        heapq.heappush(heap, (deadline, call.handle))
        self._moved = True
        # Lazy deletion with a bound: when stale entries outnumber live ones,
        # rebuild (O(n), amortised O(1) per push), so memory stays flat.
        if len(heap) > 2 * len(self._by_handle) + 1024:
            by_handle = self._by_handle
            self._heap = [
                (d, h) for d, h in heap if (c := by_handle.get(h)) is not None and c.deadline == d
            ]
            heapq.heapify(self._heap)

    # -- surviving a restart (the file lives in asttapi_server/store.py) ----------

    #: What :meth:`save_state` writes and :meth:`restore_state` accepts; a
    #: store with another format or version is not ours to guess at.
    STATE_FORMAT = "asttapi-calls"
    STATE_VERSION = 1
    #: Handles skipped after a restart. The store is written in batches, so a
    #: call created in the last moments before a crash may hold a handle the
    #: store never saw; a client may still hold it. Skipping ahead means such a
    #: stale handle can never name a different call (it answers INVALCALLHANDLE).
    RESTART_HANDLE_GAP = 10_000

    def live_calls(self) -> list[Call]:
        """The calls not yet ended, oldest first (what :meth:`save_state` keeps)."""
        return [call for call in self._by_handle.values() if call.ended is None]

    def leg_of(self, call: Call) -> Leg | None:
        """The device channel facts of a device line's call (None for every other call)."""
        if not call.device or not self.legs:
            return None
        for uid in reversed(call.uniqueids):
            leg = self.legs.get(uid)
            if leg is not None:
                return leg
        return None

    def save_call(self, call: Call) -> dict[str, Any]:
        """One call as :meth:`save_state` records it (fresh containers, JSON-able)."""
        leg = self.leg_of(call)
        record = {
            "handle": call.handle,
            "uniqueid": call.uniqueid,
            "uniqueids": list(call.uniqueids),
            "channel": call.channel,
            "channel_id": call.channel_id,
            "owner_line": call.owner_line,
            "owner_announced": call.owner_announced,
            "states": dict(call.states),
            "modes": dict(call.modes) if call.modes else None,
            # (party flags are tuples in the model, lists in JSON: saved as JSON reads them back)
            "callinfo": {k: list(v) if type(v) is tuple else v for k, v in call.callinfo.items()},
            "ci_version": call.ci_version,
            "ci_sent": {line: list(sent) for line, sent in call.ci_sent.items()} if call.ci_sent else None,
            "created": call.created,
            "updated": call.updated,
            "hangup_at": call.hangup_at,
            "hangup_cause": call.hangup_cause,
            "device": call.device,
            "flags": call.flags,
        }
        if leg is not None:
            record["leg"] = leg.saved({v for v in call.callinfo.values() if type(v) is str})
        return record

    def save_key(self, call: Call) -> tuple:
        """A value equal at two moments exactly when :meth:`save_call` gives equal records.

        Cheap to build and made of plain values only (no dict, so the garbage
        collector never walks it): the store keeps one per live call to skip
        encoding calls that did not change. callinfo is covered by
        ``ci_version``, which every change of callinfo bumps (``_set_info``).
        """
        return (
            call.uniqueid, tuple(call.uniqueids), call.channel, call.channel_id, call.owner_line,
            call.owner_announced, tuple(call.states.items()), tuple(call.modes.items()) if call.modes else None,
            call.ci_version, tuple(call.ci_sent.items()) if call.ci_sent else None,
            call.created, call.updated, call.hangup_at, call.hangup_cause, call.device, call.flags,
            leg.key() if (leg := self.leg_of(call)) is not None else None,
        )

    def save_state(self, calls: Iterable[Call] | None = None) -> dict[str, Any]:
        """Everything needed to rebuild the live calls after a restart, as JSON-able data.

        Only calls not yet ended are kept (an ended one would only answer a
        late lineGetCallInfo), so the size is bounded by the live calls.
        Sessions do not survive a restart, so ``owner`` is left out. No time
        of saving either: unchanged calls give identical data, which the
        store uses to skip a write. ``calls``: only these (the store passes
        ``()`` for the header alone and records calls in slices itself).
        """
        chosen = self.live_calls() if calls is None else calls
        return {
            "format": self.STATE_FORMAT,
            "version": self.STATE_VERSION,
            "next_handle": self._next_handle,
            "calls": [self.save_call(call) for call in chosen if call.ended is None],
        }

    def restore_state(self, data: Any, now: float, *, limit: int | None = None) -> list[Call]:
        """Rebuild the calls of :meth:`save_state` into this (fresh) model; return them.

        All or nothing: the data is checked completely first, and anything
        malformed raises ``ValueError`` with a one-line reason, leaving the
        model as it was. Restored calls are live again with their handles,
        lines, states and callinfo; the caller must reconcile them with the
        PBX (:meth:`resync` after CoreShowChannels, as after any reconnect).
        A call whose hangup was seen keeps its grace deadline, counted from
        then. At most ``limit`` calls are restored (the most recent ones).
        ``now`` is unused today but keeps the pure-function contract.
        """
        del now
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        if data.get("format") != self.STATE_FORMAT:
            raise ValueError(f"not an asttapi call store (format {stored.short(data.get('format'))})")
        if data.get("version") != self.STATE_VERSION:
            raise ValueError(
                f"store version {stored.short(data.get('version'))}, this server reads version {self.STATE_VERSION}"
            )
        next_handle = stored.count(data, "next_handle", 1)
        entries = stored.field(data, "calls", list)
        calls = [self._restored_call(i, entry) for i, entry in enumerate(entries)]
        calls.sort(key=lambda c: c[0].handle)
        limit = self.max_calls if limit is None else limit
        if len(calls) > limit:
            calls = calls[len(calls) - limit:] if limit > 0 else []
        restored = []
        for call, leg in calls:
            index = self._index(call)
            if call.handle in self._by_handle or any(uid in index for uid in call.uniqueids):
                continue  # the model was not fresh: what it knows wins
            self._by_handle[call.handle] = call
            for uid in call.uniqueids:
                index[uid] = call
            for line, state in call.states.items():
                if state != IDLE:
                    self._by_line.setdefault(line, {})[call.handle] = call
            if leg is not None and leg.uniqueid not in self.legs and leg.channel not in self.leg_channels:
                self.legs[leg.uniqueid] = leg
                self.leg_channels[leg.channel] = leg.uniqueid
            self._schedule(call)
            restored.append(call)
        top = max((c.handle for c, _ in calls), default=0)
        self._next_handle = min(max(self._next_handle, next_handle, top + 1) + self.RESTART_HANDLE_GAP,
                                stored.MAX_COUNT)
        self.stats["restored"] = self.stats.get("restored", 0) + len(restored)
        return restored

    def _restored_call(self, index: int, entry: Any) -> tuple[Call, Leg | None]:
        """One stored call -> a live :class:`Call`, not yet confirmed by Asterisk (see :meth:`resync`),
        and the facts of its device channel for a device line's call."""
        try:
            record = stored.stored_call(entry, max_lines=self.max_lines, bounded=self._bounded)
        except ValueError as e:
            raise ValueError(f"call #{index}: {e}") from None
        call = Call(record.handle, record.uniqueids[-1], record.created)
        call.uniqueids = list(record.uniqueids)
        call.channel = record.channel
        call.channel_id = record.channel_id
        call.owner_line = record.owner_line
        call.owner_announced = record.owner_announced
        call.states = record.states
        call.modes = record.modes
        call.callinfo.update(record.callinfo)
        _work_out_flags(call, record.callinfo)
        call.ci_version = record.ci_version
        call.ci_sent = record.ci_sent
        call.updated = record.updated
        call.hangup_at = record.hangup_at
        call.hangup_cause = record.hangup_cause
        call.confirmed = False
        call.device = record.device
        call.flags = record.flags if record.flags is not None else _flags_of_states(call)
        leg = record.leg
        if leg is None and call.device:
            leg = _leg_of_old_store(call)
        return call, leg


def _flags_of_states(call: Call) -> int:
    """The outcome flags of a call from a store written before they were kept: its states now."""
    flags = 0
    for line, state in call.states.items():
        flags |= flags_of(state, call.modes.get(line) if call.modes else None)
    return flags


#: States a device line's call from a store without its leg is followed in (any other state: it is
#: not, and the resync's channel list decides).
_FOLLOWED = frozenset({NEW, OFFERING, DIALTONE, DIALING, PROCEEDING, RINGBACK, CONNECTED, ONHOLD, BUSY, DISCONNECTED})
_INFO_OF_LEG = ("callerid", "calleridname", "calledid", "connectedid", "connectedidname", "origin")


def _leg_of_old_store(call: Call) -> Leg | None:
    """The facts of a device call's channel, from a store written before they were kept (issue 25):
    what its states and callinfo say; the rest (its Dial's status, the dialled party as the Dial
    named it) is learnt again from the next events."""
    if call.channel is None:
        return None
    lines = call.lines
    if not lines or call.states[lines[0]] not in _FOLLOWED:
        return None
    leg = Leg(call.uniqueid, call.channel, lines, call.updated, call.updated,
              ringing=call.states[lines[0]] == OFFERING,
              placed=call.callinfo.get("origin") == "LINECALLORIGIN_OUTBOUND")
    leg.info = {key: value for key in _INFO_OF_LEG if isinstance(value := call.callinfo.get(key), str)}
    leg.connected = (leg.info.get("connectedid"), leg.info.get("connectedidname"))
    return leg


def _work_out_flags(call: Call, stored_info: dict[str, Any]) -> None:
    """The flags of a party a store written before they existed does not hold: worked out from its
    number and name by the one rule (a store written since holds them, checked by core/stored.py)."""
    for party, (name_key, flags_key) in parties.PARTIES.items():
        if flags_key not in stored_info:
            number, name = call.callinfo[party], call.callinfo[name_key]
            call.callinfo[flags_key] = parties.shown(number, name, parties.ALLOWED if number or name else None)[2]
