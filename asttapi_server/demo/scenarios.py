"""The call flows the demo PBX plays: the manual's examples, as Asterisk 22 reports them.

Each flow is a small script (a generator that emits AMI events and yields the
seconds to wait before its next step) run by :class:`Flow` on the engine's
clock. The dialplan being simulated is the one in README.md ("Dialplan for
today's Asterisk"): ``[inbound]`` rings a group with ``Dial(...,U(tapi^...))``,
``[trunklocal]`` dials ``9NXXXXXX`` out with ``U(tapi-out^...)``, and each
context's ``h`` extension sends ``LINECALLSTATE_IDLE``.

* :class:`InboundRingGroup`: a trunk call rings every phone of the group;
  TAPIEVENTs ``LINE_NEWCALL <line>`` per phone's line, ``OFFERING``,
  ``SET CALLERID``, (``SET CALLERIDNAME``), ``LINE_CALLINFO
  LINECALLINFOSTATE_CALLERID``; the first phone answers, the gosub on its
  channel sends ``[~ID&line] CONNECTED`` and ``[~ID&!line] HANGUP``; talk;
  hang up; ``IDLE`` from the ``h`` extension.
* :class:`OutboundCall`: the phone (``Local/bob@phones`` ;1/;2 pair, as an
  Originate makes it) enters ``[trunklocal]`` with a 9NXXXXXX number:
  ``NEWCALL``, ``DIALTONE``, ``DIALING``, ``PROCEEDING``; the far end answers
  (``CONNECTED`` from the gosub) or is busy (Hangup cause 17, ``BUSY``);
  ``IDLE``. Started by the loop or by an ``Originate`` (then with
  ``OriginateResponse`` and the Originate's ``ChannelId`` as the Uniqueid).
* :class:`HoldCall`: an Originate to anything else (``Application: Wait`` or
  another context): the channel answers and stays up for a while, no TAPI
  events. Useful for Hangup/Redirect/CoreShowChannels tests.

Every flow can be cut short: :meth:`Flow.abort` (the ``Hangup`` action) and
:meth:`Flow.redirect` (the ``Redirect`` action) cancel the script and end the
call the way the dialplan would: Hangup events for every channel and the
``h`` extension's ``IDLE`` once the TAPI dialplan has run.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from asttapi_server.demo import channels as ami
from asttapi_server.demo.channels import BUSY, DOWN, RING, RINGING, UP, Channel

if TYPE_CHECKING:  # pragma: no cover
    from asttapi_server.demo.engine import DemoEngine

Script = Generator[float, None, None]

log = Logger()


@dataclass(frozen=True)
class Timing:
    """How fast the demo plays. Every delay inside a flow is multiplied by *scale*."""

    first_call: float = 2.0  # seconds from start to the first (inbound) call
    gap: float = 1.5  # seconds from the end of one looped flow to the start of the next
    scale: float = 1.0  # 0.01 plays a whole call in well under a second
    auth_fail_delay: float = 1.0  # real Asterisk answers a bad login after ~1 s

    @classmethod
    def fast(cls) -> Timing:
        """For tests on a real reactor: a whole call in tens of milliseconds."""
        return cls(first_call=0.05, gap=0.2, scale=0.01, auth_fail_delay=0.0)


#: Inbound callers, rotated; the plugin samples (CRM, Outlook) know them.
CALLERS: Sequence[tuple[str, str | None]] = (
    ("0301234567", "Ext Caller"),
    ("02079460958", None),
    ("+442079460959", None),
)

_NINE_NXX = re.compile(r"^9[2-9]\d{6}$")

#: The README dialplan's FILTER() sets for the caller id (why: README, "Always
#: filter a caller id"): what ``SET CALLERID``/``SET CALLERIDNAME`` may carry.
CALLERID_NUM_FILTER = "0-9+*#"
CALLERID_NAME_FILTER = "A-Za-z0-9 .'\\-\\x80-\\xff"


def dialplan_filter(allowed: str, text: str) -> str:
    """Asterisk's ``${FILTER(allowed,text)}`` (func_strings.c): ranges ``a-z``,
    ``\\xHH`` and ``\\-`` escapes, applied to the UTF-8 bytes of ``text``."""
    spec = allowed.encode("latin-1")
    keep: set[int] = set()
    i, chars = 0, []
    while i < len(spec):  # decode escapes, remembering which '-' are ranges
        c = spec[i]
        if c == 0x5C and spec[i + 1:i + 2] == b"x":
            chars.append((int(spec[i + 2:i + 4], 16), False))
            i += 4
        elif c == 0x5C and i + 1 < len(spec):
            chars.append((spec[i + 1], False))
            i += 2
        else:
            chars.append((c, c == 0x2D))
            i += 1
    j = 0
    while j < len(chars):
        c, _ = chars[j]
        if j + 2 < len(chars) and chars[j + 1][1]:
            keep.update(range(c, chars[j + 2][0] + 1))
            j += 3
        else:
            keep.add(c)
            j += 1
    data = text.encode("utf-8")
    return bytes(b for b in data if b in keep).decode("utf-8", "ignore")
BUSY_NUMBER = "5550000"


def split_callerid(text: str | None) -> tuple[str, str]:
    """``"Name" <num>`` -> (num, name); missing parts are ``<unknown>``."""
    if not text:
        return ami.UNKNOWN, ami.UNKNOWN
    m = re.match(r'^\s*"?([^"<]*?)"?\s*<([^>]*)>\s*$', text)
    if m:
        return (m.group(2) or ami.UNKNOWN), (m.group(1) or ami.UNKNOWN)
    return text.strip(), ami.UNKNOWN


class Flow:
    """One call being played: its channels, its script, its end."""

    kind = "flow"

    def __init__(self, engine: DemoEngine) -> None:
        self.engine = engine
        self.channels: list[Channel] = []
        self.done: Deferred[Flow] = Deferred()
        self.finished = False
        self.dialplan: Channel | None = None  # the channel whose h extension sends IDLE
        self.tapi_started = False
        self._script: Script | None = None
        self._pending = None

    # -- running -------------------------------------------------------------

    def start(self) -> Flow:
        self._script = self.script()
        self._step()
        return self

    def _step(self) -> None:
        self._pending = None
        assert self._script is not None
        try:
            delay = next(self._script)
        except StopIteration:
            self._finish()
            return
        self._pending = self.engine.clock.callLater(
            max(0.0, delay) * self.engine.timing.scale, self._step
        )

    def _stop_script(self) -> None:
        if self._pending is not None and self._pending.active():
            self._pending.cancel()
        self._pending = None
        if self._script is not None:
            self._script.close()
            self._script = None

    def _finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        for ch in list(self.channels):  # nothing may outlive its call
            self.engine.forget(ch)
        self.channels.clear()
        self.engine.flow_finished(self)
        self.done.callback(self)

    def cancel(self) -> None:
        """Stop silently (the PBX is shutting down): no more events."""
        self._stop_script()
        self._finish()

    def abort(self, cause: int = 16) -> None:
        """The ``Hangup`` action hit one of our channels: end the call now."""
        if self.finished:
            return
        self._stop_script()
        self.teardown(cause)
        self._finish()

    def redirect(self, ch: Channel, context: str, exten: str, priority: int) -> None:
        """The ``Redirect`` action moved *ch*: the call leaves us, then ends."""
        if self.finished:
            return
        self._stop_script()
        ch.context, ch.exten, ch.priority = context, exten, priority
        self.app(ch, "Wait", "2")
        self._script = self._after_redirect()
        self._step()

    def _after_redirect(self) -> Script:
        yield 2.0
        self.teardown(16)

    # -- building blocks -----------------------------------------------------

    def answer(self, near: Channel, far: Channel | None, priority: int) -> None:
        """A phone picks up: its dialplan leg (at ``priority``) runs Answer, both legs go Up."""
        if far is not None:
            far.priority = priority
            self.app(far, "Answer", "")
            self.set_state(far, UP)
        self.set_state(near, UP)
        self.device(near, "INUSE")

    def script(self) -> Script:  # pragma: no cover - abstract
        raise NotImplementedError
        yield 0.0

    def emit(self, pairs: ami.Pairs) -> None:
        self.engine.emit(pairs)

    def new_channel(self, name: str, context: str, exten: str, state: int,
                    uniqueid: str | None = None, linkedid: str | None = None,
                    callerid: tuple[str, str] | None = None) -> Channel:
        """A channel is born: Newchannel (a SIP phone or trunk already knows its caller id)."""
        uid = uniqueid or self.engine.new_uniqueid()
        ch = Channel(
            name=name, uniqueid=uid, linkedid=linkedid or uid, context=context, exten=exten,
            state=state, created=self.engine.clock.seconds(),
        )
        if callerid is not None:
            ch.callerid_num, ch.callerid_name = callerid
        self.channels.append(ch)
        self.engine.register(ch, self)
        self.emit(ami.newchannel(ch))
        return ch

    def legs(self, resource: str, linkedid: str, uniqueid: str | None = None,
             other_uniqueid: str | None = None) -> tuple[Channel, Channel | None]:
        """Channels for dialling *resource*: a ;1/;2 pair for ``Local/x@ctx``, else one."""
        if resource.startswith("Local/"):
            name1, name2 = self.engine.local_names(resource)
            exten, _, context = resource[len("Local/"):].partition("@")
            near = self.new_channel(name1, context or "default", exten, DOWN, uniqueid, linkedid)
            far = self.new_channel(name2, context or "default", exten, RING, other_uniqueid, linkedid)
            return near, far
        near = self.new_channel(self.engine.tech_name(resource), "default", "s", DOWN,
                                uniqueid, linkedid)
        return near, None

    def app(self, ch: Channel, application: str, appdata: str) -> None:
        ch.application, ch.application_data = application, appdata
        self.emit(ami.newexten(ch, application, appdata))

    def tapi(self, ch: Channel, text: str) -> None:
        """``same => n,UserEvent(TAPI,TAPIEVENT: text)``: Newexten, then the UserEvent."""
        self.app(ch, "UserEvent", f"TAPI,TAPIEVENT: {text}")
        self.emit(ami.user_event(ch, text))
        ch.priority += 1

    def set_state(self, ch: Channel, state: int) -> None:
        ch.state = state
        self.emit(ami.newstate(ch))

    def device(self, ch: Channel, state: str) -> None:
        self.emit(ami.device_state_change(ch.name.rsplit("-", 1)[0], state))

    def hang(self, ch: Channel, cause: int, request: str | None = "hard") -> None:
        """(Soft)HangupRequest (optional) and Hangup for *ch*; it is gone after."""
        if ch not in self.channels:
            return
        if request is not None:
            self.emit(ami.hangup_request(ch, cause, soft=(request == "soft")))
        self.emit(ami.hangup(ch, cause))
        self.channels.remove(ch)
        self.engine.forget(ch)

    def run_h(self, ch: Channel, cause: int = 16) -> None:
        """The dialplan channel ends: its ``h`` extension sends IDLE, then Hangup."""
        if ch not in self.channels:
            return
        self.emit(ami.hangup_request(ch, cause, soft=True))
        if self.tapi_started:
            ch.exten, ch.priority = "h", 1
            self.tapi(ch, "LINE_CALLSTATE LINECALLSTATE_IDLE")
        self.emit(ami.hangup(ch, cause))
        self.channels.remove(ch)
        self.engine.forget(ch)

    def teardown(self, cause: int) -> None:
        """Hang up every channel; the dialplan channel last, through its ``h``."""
        for ch in [c for c in self.channels if c is not self.dialplan]:
            self.hang(ch, cause)
        if self.dialplan is not None:
            self.run_h(self.dialplan, cause)


class InboundRingGroup(Flow):
    """The manual's inbound call: a trunk call rings bob and bobbett, bob answers."""

    kind = "inbound"

    def __init__(self, engine: DemoEngine, caller: tuple[str, str | None],
                 group: Sequence[tuple[str, str]], ring: float = 2.0, talk: float = 3.0,
                 trunk: str = "PJSIP/trunk", did: str = "100") -> None:
        super().__init__(engine)
        self.caller = caller
        self.group = list(group)  # [(phone channel, line name)], the first answers
        self.ring, self.talk = ring, talk
        self.trunk_resource, self.did = trunk, did

    def script(self) -> Script:
        num, name = self.caller
        cid_name = name or ami.UNKNOWN
        trunk = self.new_channel(self.engine.tech_name(self.trunk_resource), "inbound", self.did, RING)
        trunk.callerid_num, trunk.callerid_name = num, cid_name
        self.dialplan = trunk
        uid = trunk.uniqueid
        lines = [line for _, line in self.group]
        log.info("DEMO PBX (simulation): inbound call {uniqueid} from {number} rings {lines}",
                 uniqueid=uid, number=num, lines=", ".join(lines))

        self.app(trunk, "NoOp", f"Inbound call for {', '.join(lines)} from {num}")
        trunk.priority += 1
        self.tapi_started = True
        for line in lines:
            self.tapi(trunk, f"LINE_NEWCALL {line}")
        self.tapi(trunk, "LINE_CALLSTATE LINECALLSTATE_OFFERING")
        # The README's dialplan filters the caller id before UserEvent() sees it.
        self.tapi(trunk, f"SET CALLERID {dialplan_filter(CALLERID_NUM_FILTER, num)}")
        if name:
            self.tapi(trunk, f"SET CALLERIDNAME {dialplan_filter(CALLERID_NAME_FILTER, name)}")
        self.tapi(trunk, "LINE_CALLINFO LINECALLINFOSTATE_CALLERID")
        dialstring = "&".join(phone for phone, _ in self.group)
        self.app(trunk, "Dial", f"{dialstring},20,U(tapi^{uid})")
        for var in ("DIALSTATUS", "DIALEDPEERNUMBER", "DIALEDPEERNAME", "RINGTIME"):
            self.emit(ami.varset(trunk, var, ""))

        legs: list[tuple[Channel, Channel | None, str, str]] = []
        for phone, line in self.group:
            near, far = self.legs(phone, linkedid=uid)
            resource = phone.split("/", 1)[1]
            self.emit(ami.varset(near, "DIALEDPEERNUMBER", resource))
            near.callerid_num, near.callerid_name = self.did, cid_name
            near.connected_num, near.connected_name = num, cid_name
            self.emit(ami.newcallerid(near))
            if far is not None:
                far.callerid_num, far.callerid_name = num, cid_name
                far.connected_num, far.connected_name = self.did, cid_name
                self.emit(ami.newcallerid(far))
            self.emit(ami.dial_begin(trunk, near, resource))
            legs.append((near, far, phone, line))
        for near, far, _, _ in legs:
            if far is not None:
                self.app(far, "Ringing", "")
            self.set_state(near, RINGING)
            self.device(near, "RINGING")
            self.emit(ami.dial_state(trunk, near, "RINGING"))

        yield self.ring

        near, far, phone, line = legs[0]
        self.answer(near, far, priority=3)
        for other_near, other_far, _, _ in legs[1:]:
            self.emit(ami.dial_end(trunk, other_near, "CANCEL"))
            if other_far is not None:
                self.hang(other_far, 26)
            self.hang(other_near, 26, request=None)
            self.device(other_near, "NOT_INUSE")
        # Dial's U(tapi^UNIQUEID): the gosub runs on the answering channel.
        self.emit(ami.varset(near, "LOCAL(ARG1)", uid))
        near.context, near.exten, near.priority = "tapi", "s", 1
        self.tapi(near, f"[~{uid}&{line}] LINE_CALLSTATE LINECALLSTATE_CONNECTED")
        self.tapi(near, f"[~{uid}&!{line}] LINE_CALLSTATE LINECALLSTATE_HANGUP")
        self.app(near, "Return", "")
        self.emit(ami.varset(near, "GOSUB_RETVAL", ""))
        near.context, near.exten, near.priority = (phone.split("@", 1)[-1] if "@" in phone else "default"), "", 1
        self.emit(ami.dial_end(trunk, near, "ANSWER"))
        self.set_state(trunk, UP)
        self.emit(ami.varset(near, "BRIDGEPEER", trunk.name))
        self.emit(ami.varset(trunk, "BRIDGEPEER", near.name))

        yield self.talk

        # The phone hangs up.
        if far is not None:
            far.priority = 5
            self.app(far, "Hangup", "")
            self.emit(ami.hangup_request(far, 16, soft=True))
            self.hang(near, 16)
            self.hang(far, 16, request=None)
        else:
            self.hang(near, 16)
        self.device(near, "NOT_INUSE")
        self.emit(ami.varset(trunk, "ANSWEREDTIME", str(int(self.talk))))
        self.emit(ami.varset(trunk, "DIALSTATUS", "ANSWER"))
        self.run_h(trunk, 16)


class OutboundCall(Flow):
    """The manual's ``[trunklocal]`` call: the user's phone dials a 9NXXXXXX number."""

    kind = "outbound"

    def __init__(self, engine: DemoEngine, phone: str, line: str, number: str, *,
                 context: str = "trunklocal", callerid: tuple[str, str] | None = None,
                 channel_id: str | None = None, other_channel_id: str | None = None,
                 originate_action_id: str | None = None, originated: bool = False,
                 variables: Sequence[tuple[str, str]] = (), pickup: float = 1.0,
                 ring: float = 1.5, talk: float = 3.0) -> None:
        super().__init__(engine)
        self.phone, self.line, self.number, self.context = phone, line, number, context
        self.callerid = callerid
        self.channel_id, self.other_channel_id = channel_id, other_channel_id
        self.action_id, self.originated = originate_action_id, originated
        self.variables = list(variables)
        self.pickup, self.ring, self.talk = pickup, ring, talk
        self.answered = False

    @property
    def pstn_number(self) -> str:
        return self.number[1:] if _NINE_NXX.match(self.number) else self.number

    def _originate_response(self, success: bool, ch: Channel | None, reason: str) -> None:
        if not self.originated:
            return
        pairs = ami.originate_response(
            self.action_id, success, ch.name if ch else self.phone,
            [("Context", self.context), ("Exten", self.number)],
            ch.uniqueid if ch else (self.channel_id or ami.UNKNOWN),
            ch.callerid_num if ch else ami.UNKNOWN, ch.callerid_name if ch else ami.UNKNOWN,
        )
        if reason != ("4" if success else "0"):
            pairs = [(k, reason if k == "Reason" else v) for k, v in pairs]
        self.emit(pairs)
        self.originated = False  # only once

    def abort(self, cause: int = 16) -> None:
        if not self.finished and not self.answered:
            self._originate_response(False, None, "1")
        super().abort(cause)

    def script(self) -> Script:
        log.info("DEMO PBX (simulation): {line} dials {number} from {phone}",
                 line=self.line, number=self.number, phone=self.phone)
        near, far = self.legs(self.phone, linkedid=self.channel_id or "",
                              uniqueid=self.channel_id, other_uniqueid=self.other_channel_id)
        if not self.channel_id:  # linkedid is the ;1 uniqueid
            for ch in (near, far):
                if ch is not None:
                    ch.linkedid = near.uniqueid
        self.app(near, "AppDial2", "(Outgoing Line)")
        for key, value in self.variables:
            near.variables[key] = value
            self.emit(ami.varset(near, key, value))
        num, name = self.callerid or (ami.UNKNOWN, ami.UNKNOWN)
        for ch in (near, far):
            if ch is not None and self.callerid:
                ch.callerid_num, ch.callerid_name = num, name
                ch.connected_num, ch.connected_name = num, name
                self.emit(ami.newcallerid(ch))
        if far is not None:
            self.app(far, "Ringing", "")
        self.set_state(near, RINGING)
        self.device(near, "RINGING")

        yield self.pickup  # the user picks up their phone

        self.answered = True
        self.answer(near, far, priority=2)
        self._originate_response(True, near, "4")

        # [trunklocal] _9NXXXXXX
        self.dialplan = near
        near.context, near.exten, near.priority = self.context, self.number, 1
        self.tapi_started = True
        self.tapi(near, f"LINE_NEWCALL {self.line}")
        # What was dialled, and which way: a client shows "to 95551234, outbound".
        self.tapi(near, "SET CALLORIGIN LINECALLORIGIN_OUTBOUND")
        self.tapi(near, f"SET CALLEDID {self.number}")
        self.tapi(near, "LINE_CALLINFO LINECALLINFOSTATE_CALLEDID")
        self.tapi(near, "LINE_CALLSTATE LINECALLSTATE_DIALTONE")
        self.tapi(near, "LINE_CALLSTATE LINECALLSTATE_DIALING")
        self.tapi(near, "LINE_CALLSTATE LINECALLSTATE_PROCEEDING")
        pstn = f"Local/{self.pstn_number}@pstn"
        self.app(near, "Dial", f"{pstn},60,U(tapi-out^{near.uniqueid})")
        for var in ("DIALSTATUS", "DIALEDPEERNUMBER", "DIALEDPEERNAME", "RINGTIME"):
            self.emit(ami.varset(near, var, ""))
        p_near, p_far = self.legs(pstn, linkedid=near.linkedid)
        p_near.callerid_num, p_near.callerid_name = near.callerid_num, near.callerid_name
        self.emit(ami.varset(p_near, "DIALEDPEERNUMBER", f"{self.pstn_number}@pstn"))
        self.emit(ami.dial_begin(near, p_near, f"{self.pstn_number}@pstn"))

        if self.pstn_number == BUSY_NUMBER:
            yield self.ring / 2
            if p_far is not None:
                self.app(p_far, "Busy", "5")
                self.set_state(p_far, BUSY)
            self.emit(ami.dial_end(near, p_near, "BUSY"))
            if p_far is not None:
                self.emit(ami.hangup_request(p_far, 0))
                self.hang(p_far, 17, request=None)
            self.hang(p_near, 0, request=None)
            self.emit(ami.varset(near, "DIALSTATUS", "BUSY"))
            near.priority = 9
            self.app(near, "GotoIf", '0?busy')
            near.priority = 12
            self.tapi(near, "LINE_CALLSTATE LINECALLSTATE_BUSY")
            self.app(near, "Hangup", "")
            yield 0.0
            self.run_h(near, 16)
            if far is not None:
                self.hang(far, 16)
            self.device(near, "NOT_INUSE")
            return

        if p_far is not None:
            self.app(p_far, "Ringing", "")
        self.set_state(p_near, RINGING)
        self.emit(ami.dial_state(near, p_near, "RINGING"))

        yield self.ring

        if p_far is not None:
            p_far.priority = 2
            self.app(p_far, "Answer", "")
            self.set_state(p_far, UP)
        self.set_state(p_near, UP)
        # Dial's U(tapi-out^UNIQUEID) runs on the answered channel.
        self.emit(ami.varset(p_near, "LOCAL(ARG1)", near.uniqueid))
        p_near.context, p_near.exten, p_near.priority = "tapi-out", "s", 1
        self.tapi(p_near, f"[~{near.uniqueid}] LINE_CALLSTATE LINECALLSTATE_CONNECTED")
        self.app(p_near, "Return", "")
        p_near.context, p_near.exten, p_near.priority = "pstn", "", 1
        self.emit(ami.dial_end(near, p_near, "ANSWER"))
        self.emit(ami.varset(near, "BRIDGEPEER", p_near.name))

        yield self.talk

        # The far end hangs up.
        if p_far is not None:
            self.app(p_far, "Hangup", "")
            self.emit(ami.hangup_request(p_far, 16, soft=True))
            self.hang(p_near, 16)
            self.hang(p_far, 16, request=None)
        else:
            self.hang(p_near, 16)
        self.emit(ami.varset(near, "ANSWEREDTIME", str(int(self.talk))))
        self.emit(ami.varset(near, "DIALSTATUS", "ANSWER"))
        self.run_h(near, 16)
        if far is not None:
            self.hang(far, 16)
        self.device(near, "NOT_INUSE")


class HoldCall(Flow):
    """An Originate the demo has no TAPI dialplan for: answered, up for a while, ended."""

    kind = "hold"

    def __init__(self, engine: DemoEngine, phone: str, target: Sequence[tuple[str, str]], *,
                 application: str = "Wait", data: str = "30", callerid: tuple[str, str] | None = None,
                 channel_id: str | None = None, other_channel_id: str | None = None,
                 originate_action_id: str | None = None, originated: bool = False,
                 variables: Sequence[tuple[str, str]] = (), duration: float = 30.0) -> None:
        super().__init__(engine)
        self.phone, self.target = phone, list(target)
        self.application, self.data = application, data
        self.callerid = callerid
        self.channel_id, self.other_channel_id = channel_id, other_channel_id
        self.action_id, self.originated = originate_action_id, originated
        self.variables = list(variables)
        self.duration = duration

    def script(self) -> Script:
        near, far = self.legs(self.phone, linkedid=self.channel_id or "",
                              uniqueid=self.channel_id, other_uniqueid=self.other_channel_id)
        if not self.channel_id:
            for ch in (near, far):
                if ch is not None:
                    ch.linkedid = near.uniqueid
        self.app(near, "AppDial2", "(Outgoing Line)")
        for key, value in self.variables:
            self.emit(ami.varset(near, key, value))
        if self.callerid:
            for ch in (near, far):
                if ch is not None:
                    ch.callerid_num, ch.callerid_name = self.callerid
                    ch.connected_num, ch.connected_name = self.callerid
                    self.emit(ami.newcallerid(ch))
        if far is not None:
            self.app(far, "Answer", "")
            self.set_state(far, UP)
        self.set_state(near, UP)
        self.device(near, "INUSE")
        if self.originated:
            self.emit(ami.originate_response(
                self.action_id, True, near.name, self.target, near.uniqueid,
                near.callerid_num, near.callerid_name,
            ))
        target = dict(self.target)
        if "Context" in target:
            near.context, near.exten, near.priority = target["Context"], target.get("Exten", "s"), 1
        self.dialplan = near
        self.app(near, self.application, self.data)
        if far is not None:
            far.priority = 2
            self.app(far, "Wait", str(int(self.duration)))
        yield self.duration
        self.teardown(16)
        self.device(near, "NOT_INUSE")
