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

Diagnostics
-----------
Anomalies (events for unknown calls, impossible transitions, synthetic
IDLEs) are logged through ``twisted.logger`` (which needs no reactor) and
counted in :attr:`CallModel.stats`; they never raise.
"""

from __future__ import annotations

import heapq
import os
import re
from collections.abc import Collection, Hashable
from types import MappingProxyType
from typing import Any

from twisted.logger import Logger

from ..throttle import LogThrottle
from . import grammar as G
from .causes import UNKNOWN_MODE, mode_for_cause, mode_for_originate_reason
from .constants import DISCONNECTED, IDLE
from .events import TapiEvent
from .transitions import ALIASES, DEFAULT_DISCONNECT_MODE, NEW, TRANSITIONS, shown

log = Logger(namespace="asttapi.core.model")

_NEWCALL = "LINE_NEWCALL"
_CALLSTATE = "LINE_CALLSTATE"
_CALLINFO = "LINE_CALLINFO"
_LINEDEVSTATE = "LINE_LINEDEVSTATE"
_OTHER = "LINECALLINFOSTATE_OTHER"


class Call:
    """One call as the model tracks it. Read it; only the model changes it.

    ``states`` maps every line that ever tracked the call to its state
    (``transitions.NEW`` until the first LINE_CALLSTATE, ``LINECALLSTATE_IDLE``
    once that line is done); ``lines`` lists the lines still tracking it.
    Times are the ``now`` values the model was given.
    """

    __slots__ = (
        "handle",
        "uniqueid",
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
    )

    def __init__(self, handle: int, uniqueid: str, now: float) -> None:
        self.handle = handle
        self.uniqueid = uniqueid  # the Uniqueid Asterisk uses for it (callinfo["uniqueid"])
        self.uniqueids = [uniqueid]  # every Uniqueid that names it (ChannelId + OriginateResponse's)
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
            "calledid": None,
            "calledidname": None,
            "connectedid": None,
            "connectedidname": None,
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

    @property
    def lines(self) -> tuple[str, ...]:
        """The lines still tracking the call (not IDLE)."""
        return tuple(line for line, state in self.states.items() if state != IDLE)

    @property
    def seen_lines(self) -> tuple[str, ...]:
        """Every line that ever tracked the call, IDLE ones included (who may still read it)."""
        return tuple(self.states)

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

    def __repr__(self) -> str:
        return f"<Call {self.handle} {self.uniqueid} {self.states}>"


#: The id fields a SET may give as '"Name" <number>', and where the name goes.
_ID_NAME = {"callerid": "calleridname", "calledid": "calledidname", "connectedid": "connectedidname"}
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


def _identify(call: Call, signal: G.TapiSignal) -> None:
    """Fill what the call's own channel tells at LINE_NEWCALL into callinfo still unknown.

    CallerIDNum/CallerIDName are the calling party (TAPI's callerid: the
    caller of an inbound call, the line's own phone on an outbound one), the
    channel's Exten the number it dialled (calledid). The dialplan's SET
    verbs still override all three later.
    """
    info = call.callinfo
    if signal.callerid and info["callerid"] is None:
        call._set_info("callerid", signal.callerid)
    if signal.calleridname and info["calleridname"] is None:
        call._set_info("calleridname", signal.calleridname)
    exten = signal.exten
    if exten and info["calledid"] is None and _DIALLED.fullmatch(exten):
        call._set_info("calledid", exten)


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


class CallModel:
    """Every call the server knows about; see the module docstring."""

    def __init__(
        self,
        *,
        hangup_grace: float = 5.0,
        max_age: float = 14400.0,
        linger: float = 30.0,
        boot_id: str | None = None,
    ) -> None:
        self.hangup_grace = hangup_grace
        self.max_age = max_age
        self.linger = linger
        #: Makes ChannelIds unique across restarts; random unless given (tests).
        self.boot_id = boot_id if boot_id is not None else os.urandom(4).hex()
        self._next_handle = 1
        self._by_handle: dict[int, Call] = {}
        self._by_uid: dict[str, Call] = {}
        self._by_line: dict[str, dict[int, Call]] = {}
        self._heap: list[tuple[float, int]] = []
        self._link_up: bool | None = None
        # A dialplan mistake repeats on every call: log each kind once a minute.
        self._throttle = LogThrottle()
        self._now = 0.0
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
            ),
            0,
        )

    # -- reading -----------------------------------------------------------

    @property
    def tracked(self) -> int:
        """Calls not yet freed (live ones and ones lingering after IDLE)."""
        return len(self._by_handle)

    def get(self, handle: int) -> Call | None:
        return self._by_handle.get(handle)

    def by_uniqueid(self, uniqueid: str) -> Call | None:
        return self._by_uid.get(uniqueid)

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

    def apply(self, signal: G.TapiSignal, now: float) -> list[TapiEvent]:
        """Apply one TAPIEVENT; return the TAPI events it causes."""
        cmd = signal.command
        verb = cmd.verb
        self._now = now
        uid = cmd.call_id or signal.uniqueid
        call = self._by_uid.get(uid) if uid is not None else None
        if verb == _NEWCALL:
            if uid is None:
                self._untied(cmd)
                return []
            # The signal's Channel is the call's own only when the Uniqueid came from it too.
            own = cmd.call_id is None or cmd.call_id == signal.uniqueid
            return self._newcall(call, uid, cmd, signal.channel if own else None, now, signal if own else None)
        if call is None:
            if verb == _LINEDEVSTATE and cmd.lines and cmd.call_id is None:
                # "[line_1] LINE_LINEDEVSTATE ..." is about the line, not a call.
                return [TapiEvent(_LINEDEVSTATE, line, None, cmd.args[0]) for line in cmd.lines]
            if uid is None:
                self._untied(cmd)
            else:
                self.stats["unknown_call"] += 1
                self._warn(("unknown_call", verb, cmd.args[:1]),
                           "TAPIEVENT for unknown call {uniqueid}, ignored: {raw!r}", uniqueid=uid, raw=cmd.raw)
            return []
        call.updated = now
        if verb == _CALLSTATE:
            return self._callstate(call, cmd, now)
        if verb == _CALLINFO:
            return self._callinfo(call, cmd)
        if verb == G.SET:
            field, value = cmd.args
            key = G.SET_FIELDS[field]
            if key in _ID_NAME and "<" in value:
                # Asterisk's ${CALLERID} (the manual's 1.2 dialplan) is
                # '"Name" <number>': keep the number as the id, the name apart.
                number, name = split_callerid(value)
                if number is not None:
                    call._set_info(key, number)
                    if name:
                        call._set_info(_ID_NAME[key], name)
                    return []
            call._set_info(key, value)
            return []
        # LINE_LINEDEVSTATE for the lines of a call
        events = [
            TapiEvent(_LINEDEVSTATE, line, None, cmd.args[0])
            for line in self._targets(call, cmd, tracking_only=True)
        ]
        self.stats["events"] += len(events)
        return events

    def _newcall(self, call: Call | None, uid: str, cmd: G.TapiCommand,
                 channel: str | None, now: float, own: G.TapiSignal | None = None) -> list[TapiEvent]:
        if call is None or call.ended is not None:
            call = self._create(uid, now)
        call.updated = now
        if call.channel is None:
            call.channel = channel
        if own is not None:
            _identify(call, own)
        events = []
        states = call.states
        for line in cmd.args:
            old = states.get(line)
            if line == call.owner_line and not call.owner_announced and old != IDLE:
                # Absorbed: a client made this call and already holds the handle.
                call.owner_announced = True
                owner = call.owner
            elif old is None or old == IDLE:
                self._track(call, line)
                owner = None
            else:
                self.stats["duplicate"] += 1
                continue
            events.append(TapiEvent(_NEWCALL, line, call.handle, None, None, call.view(), False, owner))
        self.stats["events"] += len(events)
        return events

    def _callstate(self, call: Call, cmd: G.TapiCommand, now: float) -> list[TapiEvent]:
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
            return []
        events = []
        idled = False
        view = call.view()
        handle = call.handle
        for line in targets:
            old = states[line]
            if old == state:
                self.stats["duplicate"] += 1
                continue
            if state not in TRANSITIONS[old]:
                self.stats["impossible"] += 1
                self._warn(
                    ("impossible", old, state),
                    "impossible call state change {old} -> {new} for call {handle} on {line}, ignored: {raw!r}",
                    old=old, new=state, handle=handle, line=line, raw=cmd.raw,
                )
                continue
            states[line] = state
            if mode is not None or call.modes:
                if call.modes is None:
                    call.modes = {}
                call.modes[line] = mode
            events.append(TapiEvent(_CALLSTATE, line, handle, state, mode, view))
            if state == IDLE:
                idled = True
                self._untrack(call, line)
        self.stats["events"] += len(events)
        if idled and not self._any_tracking(call):
            self._end(call, now)
        return events

    def _callinfo(self, call: Call, cmd: G.TapiCommand) -> list[TapiEvent]:
        infostate = cmd.args[0]
        key = (infostate, call.ci_version)
        sent = call.ci_sent
        if sent is None:
            sent = call.ci_sent = {}
        events = []
        view = call.view()
        for line in self._targets(call, cmd, tracking_only=True):
            if sent.get(line) == key:
                self.stats["duplicate"] += 1
                continue
            sent[line] = key
            events.append(TapiEvent(_CALLINFO, line, call.handle, infostate, None, view))
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
                    self._warn(("line_not_tracking", line, cmd.verb, cmd.args[:1]),
                               "line {line} does not track call {handle}: {raw!r}",
                               line=line, handle=call.handle, raw=cmd.raw, level="info")
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
            raw=cmd.raw,
        )

    def _warn(self, key: Any, text: str, *, level: str = "warn", **fields: Any) -> None:
        """Log a dialplan problem, the same kind at most once a minute (``stats`` count them all)."""
        held = self._throttle.allow(key, self._now)
        if held is None:
            return
        if held:
            text += " ({held} more like it since the last report)"
        getattr(log, level)(text, held=held, **fields)

    # -- lineMakeCall ------------------------------------------------------

    def make_call(self, line: str, number: str, owner: Hashable, now: float) -> Call:
        """Pre-create the call a client asked for; put ``call.channel_id`` in the Originate."""
        handle = self._next_handle
        channel_id = f"asttapi-{self.boot_id}-{handle}"
        call = self._create(channel_id, now)
        call.channel_id = channel_id
        call.owner = owner
        call.owner_line = line
        call.callinfo["calledid"] = number
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
    ) -> list[TapiEvent]:
        """Asterisk's answer to our Originate (``reason``: OriginateResponse Reason)."""
        call = self._by_uid.get(channel_id)
        if call is None or call.channel_id != channel_id or call.ended is not None:
            log.info("OriginateResponse for no pending call {channel_id}", channel_id=channel_id)
            return []
        call.updated = now
        if channel and call.channel is None:
            call.channel = channel
        if not success:
            log.info("originate {channel_id} failed (reason {reason})", channel_id=channel_id, reason=reason)
            return self._teardown(call, now, mode_for_originate_reason(reason), "originate failed")
        if uniqueid and uniqueid != channel_id:
            other = self._by_uid.get(uniqueid)
            if other is not None and other is not call and other.ended is None:
                # Asterisk < 12 only: LINE_NEWCALL beat the OriginateResponse,
                # so the dialplan's call already exists under its own handle.
                log.warn(
                    "LINE_NEWCALL for {uniqueid} arrived before the OriginateResponse of call {handle};"
                    " that client now holds call {other} instead",
                    uniqueid=uniqueid, handle=call.handle, other=other.handle,
                )
                return self._teardown(call, now, UNKNOWN_MODE, "superseded")
            self._by_uid[uniqueid] = call
            call.uniqueids.append(uniqueid)
            call.uniqueid = uniqueid
            call._set_info("uniqueid", uniqueid)
        return []

    # -- AMI facts -----------------------------------------------------------

    def channel_hangup(self, uniqueid: str, cause: int | None, now: float) -> list[TapiEvent]:
        """AMI ``Hangup`` of a channel; starts the grace period if it is one of our calls."""
        call = self._by_uid.get(uniqueid)
        if call is None or call.ended is not None:
            return []
        if call.hangup_at is None:
            call.hangup_at = now
            call.hangup_cause = cause
            if self.hangup_grace <= 0:
                return self._teardown(call, now, mode_for_cause(cause), "hangup")
            self._schedule(call)
        return []

    def resync(self, live_uniqueids: Collection[str], now: float) -> list[TapiEvent]:
        """After a reconnect: end every call none of whose channels is still live."""
        live = live_uniqueids if isinstance(live_uniqueids, (set, frozenset, dict)) else set(live_uniqueids)
        events: list[TapiEvent] = []
        for call in list(self._by_handle.values()):
            if call.ended is None and not any(uid in live for uid in call.uniqueids):
                events += self._teardown(call, now, mode_for_cause(call.hangup_cause), "resync")
        return events

    def link_state(self, up: bool) -> list[TapiEvent]:
        """The PBX link came up or went down: LINEDEVSTATE for every open line (line=None)."""
        if self._link_up is up:
            return []
        self._link_up = up
        param = "LINEDEVSTATE_INSERVICE" if up else "LINEDEVSTATE_OUTOFSERVICE"
        return [TapiEvent(_LINEDEVSTATE, None, None, param)]

    def annotate(self, handle: int, key: str, value: Any, now: float, *, always: bool = False) -> list[TapiEvent]:
        """Plugin data into callinfo; LINE_CALLINFO LINECALLINFOSTATE_OTHER to each tracking line.

        ``always``: send it even when the value did not change (a finished
        contact lookup is news to a client waiting for it, found or not).
        """
        call = self._by_handle.get(handle)
        if call is None or (not call._set_info(key, value) and not always):
            return []
        call.updated = now
        if call.ended is not None:
            return []
        view = call.view()
        events = [TapiEvent(_CALLINFO, line, handle, _OTHER, None, view) for line in call.lines]
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

    def tick(self, now: float) -> list[TapiEvent]:
        """Run every timer due by ``now``: grace, max age, linger expiry."""
        events: list[TapiEvent] = []
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
                events += self._teardown(call, now, mode_for_cause(call.hangup_cause), "hangup grace expired")
            elif now >= call.created + self.max_age:
                events += self._teardown(call, now, UNKNOWN_MODE, "max_age reached")
            else:  # pragma: no cover - deadlines are only ever set to one of the above
                self._schedule(call)
        return events

    # -- internals -------------------------------------------------------------

    def _create(self, uid: str, now: float) -> Call:
        handle = self._next_handle
        self._next_handle = handle + 1
        call = Call(handle, uid, now)
        self._by_handle[handle] = call
        self._by_uid[uid] = call
        self.stats["calls"] += 1
        self._schedule(call)
        return call

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

    def _teardown(self, call: Call, now: float, mode: str, why: str) -> list[TapiEvent]:
        """Synthetic DISCONNECTED (unless already) then IDLE on every tracking line; end the call."""
        self.stats["synthetic_idle"] += 1
        log.info("call {handle} ({uniqueid}) ended by the server: {why}; sending IDLE",
                 handle=call.handle, uniqueid=call.uniqueid, why=why)
        events = []
        view = call.view()
        states = call.states
        for line, old in list(states.items()):
            if old == IDLE:
                continue
            if old != DISCONNECTED:
                events.append(TapiEvent(_CALLSTATE, line, call.handle, DISCONNECTED, mode, view, True))
            events.append(TapiEvent(_CALLSTATE, line, call.handle, IDLE, None, view, True))
            states[line] = IDLE
            if call.modes:
                call.modes[line] = None
            self._untrack(call, line)
        self.stats["events"] += len(events)
        self._end(call, now)
        return events

    def _end(self, call: Call, now: float) -> None:
        call.ended = now
        if self.linger <= 0:
            self._free(call)
        else:
            self._schedule(call)

    def _free(self, call: Call) -> None:
        handle = call.handle
        del self._by_handle[handle]
        by_uid = self._by_uid
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
        # Lazy deletion with a bound: when stale entries outnumber live ones,
        # rebuild (O(n), amortised O(1) per push), so memory stays flat.
        if len(heap) > 2 * len(self._by_handle) + 1024:
            by_handle = self._by_handle
            self._heap = [
                (d, h) for d, h in heap if (c := by_handle.get(h)) is not None and c.deadline == d
            ]
            heapq.heapify(self._heap)
