"""Device-line call flows: a SIP phone on a plain dialplan, as Asterisk 22 reports it.

The demo's dialplan lines (:mod:`asttapi_server.demo.scenarios`) announce
their calls with ``UserEvent(TAPI,...)``. A *device line* (``[lines.line_3]
device = "PJSIP/203"``) needs no dialplan change: the server follows the
events Asterisk sends anyway. These flows play such a phone's calls with
those events only, never a UserEvent, field for field as the real captures
in ``tests/data/ami-native`` show them (Asterisk 22, baresip phones, the
plain dialplan of ``asterisk-etc/extensions_plain.conf``):

* :class:`DeviceInbound`: a trunk call to the phone's DID, ``Dial(PJSIP/203,20)``
  (capture s10: Newchannel, AppDial, NewConnectedLine, DialBegin, Newstate
  Ringing, DialState; then Newstate Up, DialEnd ANSWER, BridgeCreate,
  BridgeEnter; optionally Hold/Unhold; the phone hangs up: HangupRequest,
  BridgeLeave, Hangup cause 16). It can also end the two other ways a
  ringing phone's call ends: the caller gives up (DialEnd CANCEL, Hangup
  cause 16) or the user rejects it (capture s03: HangupRequest cause 17,
  DialEnd BUSY).
* :class:`DeviceCall`: the phone dials ``9NXXXXXX`` and the dialplan runs
  ``Dial(Local/NXXXXXX@pstn,20)`` (capture s05), or a client's lineMakeCall
  Originates the phone first (capture s07: the channel takes the
  Originate's ``ChannelId`` as its Uniqueid, DialBegin with no calling
  channel, OriginateResponse once the phone answered). ``[pstn]`` answers,
  or is busy for ``95550000`` (``Busy(5)``, DialEnd BUSY, the phone's
  Hangup cause 17 "User busy").

* :class:`DeviceQueue`: a trunk call to a queue (``400``) whose member is the
  phone behind a Local channel, as FreePBX writes members
  (``Local/203@from-queue/n``): the queue's DialBegin for the Local ``;1``,
  the ``;2`` dials the phone (the layouts of capture s12 and the hand-made
  h03 of tests/data/ami-native-handmade). The caller may withhold the
  number: the events still carry it, as Asterisk's do, and the channels'
  ``CALLERID(pres)`` / ``CONNECTEDLINE(pres)`` answer ``prohib_passed_screen``
  to the server's Getvar, so its line shows the call with no number.

A ``BlindTransfer`` action on the phone's bridged channel sends its peer on
(capture s08: the BlindTransfer event, BridgeLeave, the phone's Hangup).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from twisted.logger import Logger

from asttapi_server.demo import channels as ami
from asttapi_server.demo.channels import BUSY, DOWN, RING, RINGING, UP, Channel
from asttapi_server.demo.scenarios import Flow, Script

if TYPE_CHECKING:  # pragma: no cover
    from asttapi_server.demo.engine import DemoEngine

log = Logger()

#: The plain dialplan's contexts (asterisk-etc/extensions_plain.conf of the lab).
PLAIN_PHONES = "plain-phones"
PLAIN_INBOUND = "plain-inbound"
#: Who the lab's phones are; a device the table does not know is named by its resource.
PHONE_NAMES = {"201": "bob", "202": "bobbett", "203": "alice", "204": "carol"}
_NINE_NXX = re.compile(r"^9[2-9]\d{6}$")
BUSY_NUMBER = "5550000"


def resource_of(device: str) -> str:
    """``PJSIP/203`` -> ``203`` (what Dial is given, and the phone's own number)."""
    return device.split("/", 1)[1]


def phone_callerid(device: str) -> tuple[str, str]:
    """The caller id a phone's channels carry (``203``, ``alice``): its endpoint's callerid."""
    resource = resource_of(device)
    return resource, PHONE_NAMES.get(resource, ami.UNKNOWN)


class DeviceFlow(Flow):
    """A call of one demo device: its own channel (``phone``) and the party bridged to it (``peer``)."""

    def __init__(self, engine: DemoEngine, device: str, line: str) -> None:
        super().__init__(engine)
        self.endpoint, self.line = device, line  # (self.device() is the DeviceStateChange)
        self.phone: Channel | None = None
        self.peer: Channel | None = None
        self.bridge_id: str | None = None

    def phone_channel(self, state: int, exten: str, *, uniqueid: str | None = None,
                      linkedid: str | None = None) -> Channel:
        return self.new_channel(self.engine.tech_name(self.endpoint), PLAIN_PHONES, exten, state,
                                uniqueid, linkedid, callerid=phone_callerid(self.endpoint))

    def bridge(self, first: Channel, second: Channel) -> None:
        """Dial connected them: a basic bridge, *first* enters first (as the captures show)."""
        bid = self.bridge_id = self.engine.new_bridge_id()
        self.emit(ami.bridge_create(bid))
        for n, ch in enumerate((first, second), 1):
            ch.bridge_id = bid
            self.emit(ami.bridge_enter(bid, n, ch))

    def unbridge(self, first: Channel, second: Channel) -> None:
        """*first* leaves, then *second*; the bridge is gone."""
        bid = self.bridge_id
        if bid is None:
            return
        for n, ch in ((1, first), (0, second)):
            ch.bridge_id = ""
            self.emit(ami.bridge_leave(bid, n, ch))
        self.emit(ami.bridge_destroy(bid))
        self.bridge_id = None

    def blind_transfer(self, ch: Channel, context: str, exten: str, priority: int = 1) -> None:
        """``BlindTransfer`` of the phone's channel: its bridged peer goes to exten@context (s08).

        The phone's channel leaves the call (its line's call ends: the mapping
        sees the BlindTransfer); the peer runs the target extension, which the
        demo simulates as a short wait before it hangs up.
        """
        phone, peer = self.phone, self.peer
        if self.finished or ch is not phone or peer is None or self.bridge_id is None:
            self.redirect(ch, context, exten, priority)
            return
        self._stop_script()
        bid = self.bridge_id
        self.emit(ami.blind_transfer(phone, peer, bid, context, exten))
        peer.context, peer.exten, peer.priority = context, exten, priority
        self.unbridge(peer, phone)
        self.hang(phone, 16, request=None)
        self.device(phone, "NOT_INUSE")
        self.app(peer, "Wait", "2")
        self._script = self._after_redirect()
        self._step()


class DeviceInbound(DeviceFlow):
    """A trunk call to the phone's number: it rings, then is answered, rejected or given up on."""

    kind = "device_inbound"
    ENDINGS = ("answer", "gives_up", "reject")

    def __init__(self, engine: DemoEngine, device: str, line: str, caller: tuple[str, str | None], *,
                 ending: str = "answer", ring: float = 2.0, talk: float = 3.0, hold: float = 0.0,
                 trunk: str = "PJSIP/trunk", did: str | None = None) -> None:
        super().__init__(engine, device, line)
        if ending not in self.ENDINGS:
            raise ValueError(f"unknown ending {ending!r} ({', '.join(self.ENDINGS)})")
        self.caller, self.ending = caller, ending
        self.ring, self.talk, self.hold_for = ring, talk, hold
        self.trunk_resource = trunk
        self.did = did or resource_of(device)

    def script(self) -> Script:
        num, name = self.caller
        cid = (num, name or ami.UNKNOWN)
        resource = resource_of(self.endpoint)
        trunk = self.new_channel(self.engine.tech_name(self.trunk_resource), PLAIN_INBOUND, self.did,
                                 RING, callerid=cid)
        self.peer = trunk
        log.info("DEMO PBX (simulation): inbound call {uniqueid} from {number} rings {device} ({line}, a"
                 " device line: channel events only, no UserEvent)", uniqueid=trunk.uniqueid, number=num,
                 device=self.endpoint, line=self.line)
        self.app(trunk, "Dial", f"{self.endpoint},20")
        phone = self.phone = self.phone_channel(DOWN, "s", linkedid=trunk.uniqueid)
        phone.exten = self.did
        phone.connected_num, phone.connected_name = cid
        self.app(phone, "AppDial", "(Outgoing Line)")
        self.emit(ami.newconnectedline(phone))
        self.emit(ami.dial_begin(trunk, phone, resource))
        trunk.connected_num, trunk.connected_name = phone.callerid_num, phone.callerid_name
        self.emit(ami.newconnectedline(trunk))
        self.set_state(phone, RINGING)
        self.emit(ami.dial_state(trunk, phone, "RINGING"))
        self.device(phone, "RINGING")

        yield self.ring

        if self.ending == "gives_up":  # the caller hangs up first: Dial cancels the phone's leg
            self.emit(ami.hangup_request(trunk, 16))
            self.emit(ami.dial_end(trunk, phone, "CANCEL"))
            self.hang(phone, 16, request=None)
            self.device(phone, "NOT_INUSE")
            self.hang(trunk, 16, request=None)
            return
        if self.ending == "reject":  # s03: the user rejects the call (SIP 486)
            self.emit(ami.hangup_request(phone, 17))
            self.emit(ami.dial_end(trunk, phone, "BUSY"))
            self.hang(phone, 17, request=None)
            self.device(phone, "NOT_INUSE")
            self.emit(ami.hangup_request(trunk, 16, soft=True))
            self.hang(trunk, 17, request=None)
            return

        self.set_state(phone, UP)
        phone.exten = ""
        self.emit(ami.dial_end(trunk, phone, "ANSWER"))
        self.set_state(trunk, UP)
        self.bridge(phone, trunk)
        self.device(phone, "INUSE")
        if self.hold_for > 0:
            yield self.talk / 2
            self.emit(ami.hold(phone))
            yield self.hold_for
            self.emit(ami.unhold(phone))
            yield self.talk / 2
        else:
            yield self.talk

        # s10: the phone hangs up
        self.emit(ami.hangup_request(phone, 16))
        self.unbridge(phone, trunk)
        self.emit(ami.hangup_request(trunk, 16, soft=True))
        self.hang(trunk, 16, request=None)
        self.hang(phone, 16, request=None)
        self.device(phone, "NOT_INUSE")


class DeviceCall(DeviceFlow):
    """The phone places a call: dialled on its keypad (s05) or click-to-dial by Originate (s07)."""

    kind = "device_outbound"

    def __init__(self, engine: DemoEngine, device: str, line: str, number: str, *,
                 context: str = PLAIN_PHONES, callerid: tuple[str, str] | None = None,
                 channel_id: str | None = None, other_channel_id: str | None = None,
                 originate_action_id: str | None = None, originated: bool = False,
                 variables: Sequence[tuple[str, str]] = (), pickup: float = 1.0,
                 ring: float = 1.5, talk: float = 3.0) -> None:
        super().__init__(engine, device, line)
        self.number, self.context, self.callerid = number, context, callerid
        # other_channel_id names the second half of a Local pair; a phone's channel has none.
        self.channel_id = channel_id
        self.action_id, self.originated = originate_action_id, originated
        self.clicked = originated or channel_id is not None
        self.variables = list(variables)
        self.pickup, self.ring, self.talk = pickup, ring, talk
        self.answered = False

    @property
    def pstn_number(self) -> str:
        """``Dial(Local/${EXTEN:1}@pstn)`` for 9NXXXXXX; any other number as it is."""
        return self.number[1:] if _NINE_NXX.match(self.number) else self.number.lstrip("+")

    def _originate_response(self, success: bool) -> None:
        """OriginateResponse (Reason 4 once the phone answered, 0 if it never did), once."""
        if not self.originated:
            return
        phone = self.phone
        self.emit(ami.originate_response(
            self.action_id, success, phone.name if phone and success else self.endpoint,
            [("Context", self.context), ("Exten", self.number)],
            phone.uniqueid if phone and success else (self.channel_id or ami.UNKNOWN),
            phone.callerid_num if phone and success else ami.UNKNOWN,
            phone.callerid_name if phone and success else ami.UNKNOWN,
        ))
        self.originated = False  # only once

    def abort(self, cause: int = 16) -> None:
        if not self.finished and not self.answered:
            self._originate_response(False)
        super().abort(cause)

    def script(self) -> Script:
        log.info("DEMO PBX (simulation): {device} ({line}, a device line) dials {number}",
                 device=self.endpoint, line=self.line, number=self.number)
        resource = resource_of(self.endpoint)
        if self.clicked:
            # s07: the Originate rings the user's own phone first
            phone = self.phone = self.phone_channel(DOWN, "s", uniqueid=self.channel_id)
            self.app(phone, "AppDial2", "(Outgoing Line)")
            for key, value in self.variables:
                phone.variables[key] = value
                self.emit(ami.varset(phone, key, value))
            if self.callerid:
                phone.callerid_num, phone.callerid_name = self.callerid
                self.emit(ami.newcallerid(phone))
                phone.connected_num, phone.connected_name = self.callerid
                self.emit(ami.newconnectedline(phone))
            self.emit(ami.dial_begin(None, phone, resource))
            self.set_state(phone, RINGING)
            self.emit(ami.dial_state(None, phone, "RINGING"))
            self.device(phone, "RINGING")

            yield self.pickup  # the user picks up

            self.answered = True
            self.set_state(phone, UP)
            self.emit(ami.dial_end(None, phone, "ANSWER"))
            self.device(phone, "INUSE")
            self._originate_response(True)
            phone.context, phone.exten, phone.priority = self.context, self.number, 1
        else:
            # s05: the phone sends its INVITE with the whole number
            phone = self.phone = self.phone_channel(RING, self.number)
            self.answered = True

        pstn = self.pstn_number
        self.app(phone, "Dial", f"Local/{pstn}@pstn,20")
        near, far = self.legs(f"Local/{pstn}@pstn", linkedid=phone.linkedid)
        assert far is not None
        self.peer = near
        self.emit(ami.varset(near, "DIALEDPEERNUMBER", f"{pstn}@pstn"))
        near.exten = self.number
        near.callerid_num, near.callerid_name = self.number, ami.UNKNOWN
        near.connected_num, near.connected_name = phone.callerid_num, phone.callerid_name
        self.app(near, "AppDial", "(Outgoing Line)")
        self.emit(ami.newcallerid(near))
        self.emit(ami.newconnectedline(near))
        far.callerid_num, far.callerid_name = phone.callerid_num, phone.callerid_name
        far.connected_num, far.connected_name = self.number, ami.UNKNOWN
        self.emit(ami.newcallerid(far))
        self.emit(ami.newconnectedline(far))
        self.emit(ami.dial_begin(phone, near, f"{pstn}@pstn"))

        if pstn == BUSY_NUMBER:
            yield self.ring / 2
            self.app(far, "Busy", "5")
            self.set_state(far, BUSY)
            self.emit(ami.dial_end(phone, near, "BUSY"))
            self.emit(ami.hangup_request(far, 0))
            self.hang(far, 17, request=None)
            self.hang(near, 0, request=None)
            # The plain dialplan has nothing after Dial: the phone's channel ends with the Dial's cause.
            self.hang(phone, 17, request=None)
            self.device(phone, "NOT_INUSE")
            return

        self.app(far, "Ringing", "")
        self.set_state(near, RINGING)
        self.emit(ami.dial_state(phone, near, "RINGING"))

        yield self.ring

        far.priority = 2
        self.app(far, "Answer", "")
        self.set_state(far, UP)
        self.set_state(near, UP)
        self.emit(ami.dial_end(phone, near, "ANSWER"))
        if phone.state != UP:
            self.set_state(phone, UP)  # s05: the phone's leg answers once the far end did
        near.exten = ""
        self.bridge(near, phone)
        self.device(phone, "INUSE")

        yield self.talk

        # s07: the far end hangs up
        far.priority = 3
        self.app(far, "Hangup", "")
        self.emit(ami.hangup_request(far, 16, soft=True))
        self.emit(ami.hangup_request(near, 16))
        self.hang(far, 16, request=None)
        self.unbridge(near, phone)
        self.hang(near, 16, request=None)
        self.hang(phone, 16, request="soft")
        self.device(phone, "NOT_INUSE")


class DeviceQueue(DeviceFlow):
    """A trunk call to a queue whose member is the phone through a Local channel; the caller may withhold
    the number (CLIR)."""

    kind = "device_queue"
    QUEUE = "400"

    def __init__(self, engine: DemoEngine, device: str, line: str, caller: tuple[str, str | None], *,
                 withheld: bool = False, ring: float = 2.0, talk: float = 3.0,
                 trunk: str = "PJSIP/trunk") -> None:
        super().__init__(engine, device, line)
        self.caller, self.withheld = caller, withheld
        self.ring, self.talk = ring, talk
        self.trunk_resource = trunk

    def script(self) -> Script:
        num, name = self.caller
        cid = (num, name or ami.UNKNOWN)
        pres = "prohib_passed_screen" if self.withheld else "allowed_not_screened"
        resource = resource_of(self.endpoint)
        trunk = self.new_channel(self.engine.tech_name(self.trunk_resource), PLAIN_INBOUND, self.QUEUE, RING,
                                 callerid=cid)
        trunk.callerid_pres = pres
        self.peer = trunk
        log.info("DEMO PBX (simulation): a caller{withheld} calls queue {queue}; its member is {device} ({line},"
                 " a device line) behind Local/{resource}@from-queue", withheld=" who withholds the number"
                 if self.withheld else "", queue=self.QUEUE, device=self.endpoint, line=self.line, resource=resource)
        self.app(trunk, "Queue", "support,r,,,60")
        # app_queue's member Local/203@from-queue/n: the pair, the caller id copied to it (s12's order)
        near, far = self.legs(f"Local/{resource}@from-queue", linkedid=trunk.uniqueid)
        assert far is not None
        for ch in (near, far):
            ch.callerid_num, ch.callerid_name = cid
            ch.connected_num, ch.connected_name = cid
            ch.callerid_pres = ch.connected_pres = pres
            self.emit(ami.newcallerid(ch))
            self.emit(ami.newconnectedline(ch))
        self.emit(ami.dial_begin(trunk, near, f"Local/{resource}@from-queue/n"))
        self.app(far, "Dial", f"{self.endpoint},,tr")
        phone = self.phone = self.phone_channel(DOWN, "s", linkedid=trunk.uniqueid)
        phone.exten = resource
        phone.connected_num, phone.connected_name = cid
        phone.connected_pres = pres  # what the phone is shown: "Anonymous" when withheld
        self.app(phone, "AppDial", "(Outgoing Line)")
        self.emit(ami.newconnectedline(phone))
        self.emit(ami.dial_begin(far, phone, resource))
        self.set_state(phone, RINGING)
        self.emit(ami.dial_state(far, phone, "RINGING"))
        self.set_state(near, RINGING)
        self.emit(ami.dial_state(trunk, near, "RINGING"))
        self.device(phone, "RINGING")

        yield self.ring

        self.set_state(phone, UP)
        phone.exten = ""
        self.emit(ami.dial_end(far, phone, "ANSWER"))
        self.set_state(far, UP)
        self.bridge(phone, far)
        self.set_state(near, UP)
        self.emit(ami.dial_end(trunk, near, "ANSWER"))
        self.set_state(trunk, UP)
        queue_bridge = self.engine.new_bridge_id()
        self.emit(ami.bridge_create(queue_bridge))
        for n, ch in enumerate((trunk, near), 1):
            self.emit(ami.bridge_enter(queue_bridge, n, ch))
        self.device(phone, "INUSE")

        yield self.talk

        # the member hangs up; the Local pair and the queue caller follow
        self.emit(ami.hangup_request(phone, 16))
        self.unbridge(phone, far)
        self.hang(phone, 16, request=None)
        self.hang(far, 16, request="soft")
        for n, ch in ((1, near), (0, trunk)):
            self.emit(ami.bridge_leave(queue_bridge, n, ch))
        self.emit(ami.bridge_destroy(queue_bridge))
        self.hang(near, 16, request=None)
        self.hang(trunk, 16, request="soft")
        self.device(phone, "NOT_INUSE")
