"""Device lines: TAPI signals from Asterisk's own channel events, no dialplan edits.

Why this file, and why here: a *device line* (``[lines.bob] device =
"PJSIP/201"``) is a line whose calls come from the events Asterisk sends
anyway (Newchannel, Newstate, DialBegin, ...) instead of the dialplan's
``UserEvent(TAPI,...)``. This module is the whole of that mapping, pure like
the rest of :mod:`asttapi_server.core`: AMI event fields and ``now`` in,
:class:`~asttapi_server.core.grammar.TapiSignal` out, exactly the signals a
TAPI dialplan would send, so the call model (:mod:`.model`) and its
transition table (:mod:`.transitions`) treat both kinds of line alike. The
plugin that feeds it from the AMI link is :mod:`asttapi_server.mappings.channel_events`.

One call per device channel
---------------------------
Every channel of a device is its own call on the device's line(s), named by
that channel's ``Uniqueid`` (TAPI gives each line its own call handle, so a
ring group gives each ringing line its own call). Hence:

* a Hangup of the channel always ends the line's call (DISCONNECTED with the
  mode that fits, then IDLE), and the model's hangup safety net watches the
  very channel the call is about;
* lineDrop / lineBlindTransfer act on the device's own channel;
* click-to-dial: Asterisk gives the channel the ``ChannelId`` of the
  Originate as its Uniqueid, so the model absorbs the call into the handle
  the client already holds (no LINE_NEWCALL for the dialling client).

Which channels belong to a device (:func:`device_of`)
-----------------------------------------------------
A channel name is ``Tech/resource-SUFFIX`` where SUFFIX is Asterisk's
sequence number in hex (Local channels add ``;1``/``;2``). The part before
the last ``-`` is the device. The technology compares case-insensitively
(``SIP``/``sip``), the resource exactly (Asterisk endpoint names are
case-sensitive). Of a Local pair only ``;1`` is the device (the half a
``Dial(Local/...)`` or an Originate creates, facing the caller); ``;2`` runs
the dialplan and is ignored. Every other channel (other devices, trunks,
queue and conference channels, other Local pairs) never creates a call: it
only ever appears as the *other party* of a device channel.

Facts, not state
----------------
This mapping keeps nothing between two events. What it must remember of a
device channel (its :class:`~.legs.Leg`: who the phone is, what it dialled,
how the Dial that rang it ended, ...) the call model keeps, saves and
restores with the call; each event gets a read-only
:class:`~.legs.CallsView` of it and hands back, after its signals,
:class:`~.legs.DeviceNote` values saying what to remember. A device's call
is in the model's state (``UNSEEN`` until it is announced); each fact
Asterisk reports moves it as :data:`~.transitions.DEVICE_FACTS` (the one
transition module, :data:`TABLE` here) says; anything not listed changes
nothing (no event), so late and repeated events are harmless. Every move in
the table is one the model's :data:`~.transitions.TRANSITIONS` allows (a
test checks it). The facts and where they come from:

==============  ==========================================================
INCOMING        DialBegin with the device as DestChannel and a calling
                Channel: someone calls the device -> OFFERING
ORIGINATED      DialBegin with the device as DestChannel and no Channel
                (an AMI Originate, click-to-dial) -> tracked, no state yet
OFFHOOK         Newchannel in state OffHook (overlap dialling) -> DIALTONE
DIALLED         Newchannel in state Dialing/Ring (a SIP phone's INVITE
                carries the whole number) -> DIALING
ANSWERED        Newstate Up of the device channel: it answered -> CONNECTED
                (an originated leg: the user picked up, the PBX is about
                to dial -> DIALTONE)
PROCEEDING      DialBegin with the device as Channel: the PBX dials out
RINGBACK        DialState RINGING with the device as Channel
FAR_ANSWERED    DialEnd ANSWER with the device as Channel -> CONNECTED
FAR_BUSY        DialEnd BUSY with the device as Channel, once every
                destination of its Dial failed -> BUSY
FAR_FAILED      DialEnd NOANSWER/CONGESTION/CHANUNAVAIL/CANCEL as Channel,
                likewise -> DISCONNECTED (mode from the DialStatus); a
                CANCEL with ``Forward`` (a 302) is no end: the Dial goes on
BRIDGED         BridgeEnter of the device channel -> CONNECTED
HOLD / UNHOLD   Hold / Unhold of the device channel (its user pressed hold)
TRANSFERRED     BlindTransfer (Transferer) or AttendedTransfer (either
                transferer) with Result Success -> IDLE at once
HANGUP          Hangup -> DISCONNECTED (see :func:`disconnect_mode`), IDLE
==============  ==========================================================

Newstate Ringing of a device channel before its DialBegin (Asterisk sends
them in either order) only marks the leg; the DialBegin announces it.
``Pickup`` marks its TargetChannel (its Hangup ends it PICKUP) and moves
its Channel's call out (TRANSFERRED) and the picked-up call in: a new
LINE_NEWCALL, CONNECTED (:meth:`_Event._pickup`).

Call info
---------
* incoming: callerid/name = the calling Channel's CallerIDNum/Name (else
  the device channel's ConnectedLine), calledid = the number the caller
  dialled, followed back through Local channels (:meth:`_Event._root`:
  a queue's or FreePBX ring group's number, not its member's Exten); origin
  INTERNAL when that caller is a configured device, else EXTERNAL.
* placed from the phone / click-to-dial: callerid/name = the device
  channel's own CallerIDNum/Name as Newchannel showed it, calledid = its
  Exten; origin OUTBOUND, whoever it reaches.
* connectedid/name: the device channel's ConnectedLine once the call is
  connected (for a call placed, the dialled party's CallerIDNum when
  Asterisk knows no connected line, else the number dialled; for an offered
  call none: flags UNAVAIL), updated by NewConnectedLine and by the
  ConnectedLine every channel event carries (a transfer changes it).
* every party that comes from a channel (an offered call's caller, a
  connected party) carries a :class:`~.grammar.Screen` of the device
  channel's ``CONNECTEDLINE(pres)``: the core reads it before the party is
  shown, and a withheld one never is (:mod:`.parties`).

The first signals of a call are LINE_NEWCALL (carrying callerid, the
dialled number and the origin, so the screen pop needs nothing else; no
callerid for calls the phone places: there it is the user's own number),
the SETs (silent) and the first LINE_CALLSTATE, which carries the complete
call info. A change after that is a SET followed by LINE_CALLINFO with the
matching infostate. Every signal is marked ``device``: the model keeps a
device line's call apart from a dialplan's call on the same Uniqueid.

What this cannot know is listed in ``docs/device-lines.md``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Final

from ..idents import ByName
from . import grammar as G
from . import parties
from .causes import mode_for_cause
from .constants import (
    CONNECTED,
    DIALING,
    DIALTONE,
    IDLE,
    OFFERING,
    ONHOLD,
    PROCEEDING,
    RINGBACK,
)
from .legs import CHAIN, LEG, MEMBER_END, RESET, CallsView, DeviceNote, Leg
from .transitions import (
    ANSWERED,
    BRIDGED,
    DEVICE_FACTS,
    DIALLED,
    FAR_ANSWERED,
    FAR_BUSY,
    FAR_FAILED,
    HANGUP,
    HOLD,
    INCOMING,
    NEW,
    OFFHOOK,
    ORIGINATED,
    PROCEEDS,
    RINGS_BACK,
    TRANSFERRED,
    UNHOLD,
    UNSEEN,
)

#: The AMI events the mapping reads (the plugin declares these).
EVENT_NAMES: Final = (
    "Newchannel",
    "Newstate",
    "NewCallerid",
    "NewConnectedLine",
    "DialBegin",
    "DialState",
    "DialEnd",
    "BridgeEnter",
    "BridgeLeave",
    "Hold",
    "Unhold",
    "BlindTransfer",
    "AttendedTransfer",
    "Pickup",
    "Hangup",
    "Shutdown",
)

#: Channel names whose lines are remembered (:meth:`DeviceLines.lines_of`); all forgotten when full.
_CHANNELS_REMEMBERED = 4096

#: A DialEnd status of ours: CANCEL with ``Forward`` (the phone answered 302).
FORWARDED: Final = "FORWARD"

_DIALLING = (DIALTONE, DIALING, PROCEEDING, RINGBACK)
_LIVE = (NEW, OFFERING, *_DIALLING, CONNECTED, ONHOLD)

#: fact -> {state the device's call is in: state it moves to} (:data:`~.transitions.DEVICE_FACTS`).
TABLE: Mapping[str, Mapping[str, str]] = DEVICE_FACTS

#: DialEnd DialStatus of a call the phone placed -> LINEDISCONNECTMODE_* (BUSY is a state).
FAR_FAILED_MODE: Mapping[str, str] = {
    "NOANSWER": "LINEDISCONNECTMODE_NOANSWER",
    "CONGESTION": "LINEDISCONNECTMODE_CONGESTION",
    "CHANUNAVAIL": "LINEDISCONNECTMODE_UNAVAIL",
    "CANCEL": "LINEDISCONNECTMODE_NORMAL",  # the user hung up while it rang
    "DONTCALL": "LINEDISCONNECTMODE_REJECT",
    "TORTURE": "LINEDISCONNECTMODE_REJECT",
    "INVALIDARGS": "LINEDISCONNECTMODE_BADADDRESS",
}

#: DialEnd DialStatus of a call that rang at the device and was not answered there.
UNANSWERED_MODE: Mapping[str, str] = {
    "BUSY": "LINEDISCONNECTMODE_REJECT",  # the user rejected it (SIP 486 from a ringing phone)
    "NOANSWER": "LINEDISCONNECTMODE_NOANSWER",  # rang until the Dial timeout
    "CANCEL": "LINEDISCONNECTMODE_CANCELLED",  # the caller gave up (cause 26 says: answered elsewhere)
    "CONGESTION": "LINEDISCONNECTMODE_CONGESTION",
    "CHANUNAVAIL": "LINEDISCONNECTMODE_UNAVAIL",
    FORWARDED: "LINEDISCONNECTMODE_FORWARDED",  # the phone answered 302: the Dial went on elsewhere
}

#: When every destination of a Dial the phone placed failed, the status its line shows:
#: app_dial's DIALSTATUS puts BUSY first, then CONGESTION, then CHANUNAVAIL.
_FAILED_FIRST = ("BUSY", "CONGESTION", "CHANUNAVAIL", "NOANSWER", "DONTCALL", "TORTURE", "INVALIDARGS", "CANCEL")

_ANSWERED_ELSEWHERE = 26
_PICKUP = "LINEDISCONNECTMODE_PICKUP"
#: Where Asterisk keeps the presentation of a device channel's far party (what its phone shows:
#: res_pjsip_caller_id sends "Anonymous" exactly when this is not allowed).
CONNECTED_PRES: Final = "CONNECTEDLINE(pres)"

_STATE_UP = "6"
_STATE_RINGING = "5"
#: Newchannel ChannelState of a phone starting a call -> the fact.
_DIALLING_STATES = {"2": OFFHOOK, "3": DIALLED, "4": DIALLED, "8": DIALLED}

_HEX = re.compile(r"[0-9A-Fa-f]+")
_NUMBER = re.compile(r"\+?[0-9*#]+")
_UNKNOWN = ("", "<unknown>", "<Unknown>", "unknown")

_INFOSTATE = {
    "callerid": "LINECALLINFOSTATE_CALLERID",
    "calleridname": "LINECALLINFOSTATE_CALLERID",
    "calledid": "LINECALLINFOSTATE_CALLEDID",
    "connectedid": "LINECALLINFOSTATE_CONNECTEDID",
    "connectedidname": "LINECALLINFOSTATE_CONNECTEDID",
    "connectedidflags": "LINECALLINFOSTATE_CONNECTEDID",
    "origin": "LINECALLINFOSTATE_ORIGIN",
}
_INTERNAL, _EXTERNAL, _OUTBOUND = "LINECALLORIGIN_INTERNAL", "LINECALLORIGIN_EXTERNAL", "LINECALLORIGIN_OUTBOUND"

Fields = Callable[[str], "str | None"]


def device_of(channel: str | None) -> str | None:
    """The device a channel name belongs to, normalised (``"pjsip/201"``), or None.

    ``PJSIP/201-0000002a`` -> ``pjsip/201``; ``Local/201@phones-0000000a;1``
    -> ``local/201@phones``; ``;2`` halves, names without a hex sequence
    suffix and ``<ZOMBIE>`` names -> None. See the module docstring.
    """
    if not channel:
        return None
    base, sep, suffix = channel.rpartition("-")
    if not sep or not base:
        return None
    suffix, semi, half = suffix.partition(";")
    if semi and half != "1":
        return None
    if not _HEX.fullmatch(suffix):
        return None
    return normalise_device(base)


def normalise_device(device: str) -> str | None:
    """``"PJSIP/201"`` -> ``"pjsip/201"`` (technology lower-cased, resource kept); None if not Tech/resource."""
    device = device.strip()
    tech, slash, resource = device.partition("/")
    # (stripped: any whitespace left is inside, and splits it)
    if not slash or not tech or not resource or len(device.split()) > 1:
        return None
    return f"{tech.lower()}/{resource}"


def _known(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return None if value in _UNKNOWN else value


def _number(value: str | None) -> str | None:
    value = _known(value)
    return value if value is not None and _NUMBER.fullmatch(value) else None


class _Working(Leg):
    """A leg as one event sees it: its facts (copied from the model's, changed freely) and the
    state of its call (read from the model, moved as the event's signals will move it)."""

    __slots__ = ("state",)

    def __init__(self, uniqueid: str, channel: str, lines: tuple[str, ...], created: float) -> None:
        super().__init__(uniqueid, channel, lines, created)
        self.state = UNSEEN




class DeviceLines:
    """The device-line mapping for one set of configured devices; see the module docstring.

    ``devices`` maps a device (``"PJSIP/201"``, any case for the technology)
    to the line names it feeds. :meth:`feed` takes one AMI event (its
    ``Event`` name and a header getter), ``now`` and a read-only
    :class:`~.legs.CallsView` of the call model, and returns the signals for
    the model, in order, then the :class:`~.legs.DeviceNote` values that say
    what the model is to remember. It keeps no call state of its own, so one
    built by a reload carries on where the last one stopped.
    """

    def __init__(self, devices: Mapping[str, Iterable[str]]) -> None:
        self.devices: dict[str, tuple[str, ...]] = {}
        for device, lines in devices.items():
            key = normalise_device(device)
            if key is None:
                raise ValueError(f"not a device (Tech/resource, e.g. PJSIP/201): {device!r}")
            self.devices[key] = tuple(dict.fromkeys((*self.devices.get(key, ()), *lines)))
        self._lines_of: dict[str, tuple[str, ...]] = {}  # channel name -> lines_of(it); devices never change

    # -- reading -----------------------------------------------------------

    def lines_of(self, channel: str | None) -> tuple[str, ...]:
        """The lines a channel feeds (empty for every channel that is no configured device's).

        Remembered per channel name (a channel shows up in ten to twenty
        events of its call), at most :data:`_CHANNELS_REMEMBERED` names of at
        most 64 characters: a PBX's ever-new or huge names cost no memory."""
        lines = self._lines_of.get(channel)  # type: ignore[arg-type]
        if lines is None:
            device = device_of(channel)
            lines = self.devices.get(device, ()) if device is not None else ()
            if channel is not None and len(channel) <= 64:
                if len(self._lines_of) >= _CHANNELS_REMEMBERED:
                    self._lines_of.clear()
                self._lines_of[channel] = lines
        return lines

    # -- facts in ------------------------------------------------------------

    def feed(self, name: str, get: Fields, now: float, known: CallsView) -> list:
        """One AMI event (``get(header)`` reads its headers) -> the TAPI signals it causes, then the notes."""
        handler = _HANDLERS.get(name)
        if handler is None or not self.devices:
            return []
        # _Event(self, known), without a Python call: most events are another channel's
        event = _new(_Event)
        event.lines_of, event.known, event.out, event._reset = self.lines_of, known, [], False
        event._legs = event._gone = event._channels = event._chain = event._member_end = _NOTHING
        handler(event, get, now, event.out)
        if event._legs or event._gone or event._chain or event._member_end or event._reset:
            return event.result()
        return event.out  # (the common case of an event about no device channel: nothing to note)

    def resync(self, entries: Iterable[Fields], now: float, known: CallsView, *,
               since: float | None = None) -> list:
        """After a (re)connect: the ``CoreShowChannel`` list items -> signals and notes (:meth:`_Event.resync`)."""
        event = _Event(self, known)
        event.resync(entries, now, since)
        return event.result()

    def adopt(self, get: Fields, now: float, known: CallsView) -> list:
        """One ``CoreShowChannel`` item: take up a live device channel never seen start (:meth:`_Event.adopt`)."""
        event = _Event(self, known)
        event.adopt(get, now)
        return event.result()


#: The shared empty table of an event that changed nothing there (read only: never written to).
_NOTHING: dict = MappingProxyType({})  # type: ignore[assignment]
_new = object.__new__


class _Event:
    """One event's work: the legs it touches, copied from the model's, and what it says.

    Reads go to this event's copies first, then to the model's view; every
    change stays here until :meth:`result` hands it to the model as notes.
    """

    __slots__ = ("lines_of", "known", "out", "_legs", "_gone", "_channels", "_chain", "_member_end", "_reset")

    def __init__(self, mapping: DeviceLines, known: CallsView) -> None:
        self.lines_of = mapping.lines_of
        self.known = known
        self.out: list = []
        # Most events touch nothing (another channel's): the tables below start as one shared
        # empty mapping and get their own dict at the first change (_own).
        self._legs: dict[str, _Working] = _NOTHING  # Uniqueid -> the leg as this event left it
        self._gone: dict[str, None] = _NOTHING  # Uniqueids forgotten by this event
        self._channels: dict[str, str | None] = _NOTHING  # channel name -> Uniqueid, as changed here
        self._chain: dict[str, tuple[str | None, bool] | None] = _NOTHING
        self._member_end: dict[str, str | None] = _NOTHING
        self._reset = False

    def _own(self, table: str) -> dict:
        """This event's own dict for ``table`` (``"_legs"``, ``"_chain"``, ...), made at its first change."""
        mine = getattr(self, table)
        if mine is _NOTHING:
            mine = {}
            setattr(self, table, mine)
        return mine

    def result(self) -> list:
        """The signals, then the notes for the model."""
        out = self.out
        if self._reset:
            out.append(DeviceNote(RESET))
        for uid in self._gone:
            if uid not in self._legs:
                out.append(DeviceNote(LEG, uid, None))
        for uid, leg in self._legs.items():
            # What the model keeps of a leg: its facts, not its state (that is its call's, so the
            # copy's is unset: nobody reads it again). This event's copy becomes the model's.
            del leg.state
            out.append(DeviceNote(LEG, uid, leg))
        for channel, hit in self._chain.items():
            out.append(DeviceNote(CHAIN, channel, hit))
        for channel, end in self._member_end.items():
            out.append(DeviceNote(MEMBER_END, channel, end))
        return out

    # -- what the model knows, and this event's changes --------------------------

    def _get(self, uid: str) -> _Working | None:
        leg = self._legs.get(uid)
        if leg is not None or uid in self._gone or self._reset:
            return leg
        found = self.known.leg_state(uid)
        if found is None:
            return None
        k, state = found
        # A changeable copy of the model's leg for this event, field by field (four times
        # cheaper than a loop over LEG_FIELDS; a test holds it to every field).
        if self._legs is _NOTHING:
            self._legs = {}
        leg = self._legs[uid] = object.__new__(_Working)
        leg.uniqueid, leg.channel, leg.lines, leg.created, leg.updated = (
            k.uniqueid, k.channel, k.lines, k.created, k.updated)
        leg.own, leg.exten, leg.ringing, leg.dial_status, leg.via = k.own, k.exten, k.ringing, k.dial_status, k.via
        leg.picked, leg.placed, leg.connected, leg.far = k.picked, k.placed, k.connected, k.far
        leg.dialling = dict(k.dialling)
        leg.info = dict(k.info)
        leg.state = state
        return leg

    def _uniqueid_of(self, channel: str) -> str | None:
        if channel in self._channels:
            return self._channels[channel]
        return None if self._reset else self.known.uniqueid_of(channel)

    def _uniqueids(self) -> list[str]:
        """Every leg followed: the model's (unless forgotten here), then this event's new ones."""
        uids = [] if self._reset else [uid for uid in self.known.uniqueids() if uid not in self._gone]
        return uids + [uid for uid in self._legs if uid not in uids]

    def _legs_via(self, channel: str) -> list[_Working]:
        """The legs a Dial from ``channel`` rang (read without copying the others)."""
        found = [leg for leg in self._legs.values() if leg.via == channel]
        if not self._reset:
            known = self.known
            for uid in known.uniqueids():
                if uid in self._legs or uid in self._gone:
                    continue
                leg = known.leg(uid)
                if leg is not None and leg.via == channel:
                    found.append(self._get(uid))  # type: ignore[arg-type]
        return found

    def _create(self, uid: str, channel: str, lines: tuple[str, ...], now: float) -> _Working:
        if self._legs is _NOTHING:
            self._legs = {}
        leg = self._legs[uid] = _Working(uid, channel, lines, now)
        if self._gone is not _NOTHING:
            self._gone.pop(uid, None)
        if self._channels is _NOTHING:
            self._channels = {}
        self._channels[channel] = uid
        return leg

    def _forget(self, leg: Leg) -> None:
        if self._legs is not _NOTHING:
            self._legs.pop(leg.uniqueid, None)
        if self._gone is _NOTHING:
            self._gone = {}
        self._gone[leg.uniqueid] = None
        if self._uniqueid_of(leg.channel) == leg.uniqueid:
            if self._channels is _NOTHING:
                self._channels = {}
            self._channels[leg.channel] = None

    def _chain_of(self, channel: str) -> tuple[str | None, bool] | None:
        if channel in self._chain:
            return self._chain[channel]
        return None if self._reset else self.known.chain(channel)

    def _member_end_of(self, channel: str) -> str | None:
        if channel in self._member_end:
            return self._member_end[channel]
        return None if self._reset else self.known.member_end(channel)

    def _reset_all(self) -> None:
        """Forget every channel (Asterisk shut down). A dropped link keeps them: :meth:`resync` ends the gone ones."""
        self._reset = True
        self._legs = self._gone = self._channels = self._chain = self._member_end = _NOTHING

    def resync(self, entries: Iterable[Fields], now: float, since: float | None) -> None:
        """After a (re)connect: the ``CoreShowChannel`` list items (header getters) -> signals.

        (:meth:`DeviceLines.resync`.) The seam the bridge's resync calls with the items of its
        CoreShowChannels answer, before the model's own resync (so a device
        call whose channel is gone ends with its proper events, not the
        model's synthetic ones):

        * a listed device channel we never saw start (the server connected
          mid-call, or it started while the link was down) becomes a call:
          :meth:`adopt`;
        * a listed one we track but which moved on while we were away
          catches up: CONNECTED (see :func:`_answered_meanwhile`);
        * a tracked device channel that is not listed is gone (its Hangup
          was lost with the link): DISCONNECTED (mode UNKNOWN: the cause
          was lost too), IDLE. Channels heard of at or after ``since`` (the
          moment the link came back: events that arrived while the list
          was being gathered) are kept.
        """
        out = self.out
        listed: set[str] = set()
        for get in entries:
            uid = _known(get("Uniqueid"))
            channel = get("Channel")
            if uid is None or not self.lines_of(channel):
                continue
            leg = self._get(uid)
            if leg is not None and leg.channel != channel:
                # A leg restored from the call store whose channel is not the one Asterisk
                # lists for its Uniqueid (a hand-edited file): not followed, it ends below.
                continue
            listed.add(uid)
            if leg is None:
                self.adopt(get, now)
                continue
            leg.updated = now
            if _answered_meanwhile(leg.state, get):
                leg.connected = (_known(get("ConnectedLineNum")), _known(get("ConnectedLineName")))
                self._connected_info(leg, out)
                self._to(leg, CONNECTED, None, out)
        for leg in [leg for uid in self._uniqueids() if uid not in listed and (leg := self._get(uid)) is not None]:
            if since is not None and leg.updated >= since:
                continue
            if leg.state not in (UNSEEN, IDLE):
                self._apply(leg, HANGUP, "LINEDISCONNECTMODE_UNKNOWN", out)
                self._to(leg, IDLE, None, out)
            self._forget(leg)

    def adopt(self, get: Fields, now: float) -> None:
        """One ``CoreShowChannel`` item: take up a live device channel we never saw start.

        What Asterisk lists is all there is to know. The state: Up ->
        CONNECTED (connected = its ConnectedLine), Ringing -> OFFERING
        (caller = its ConnectedLine), Ring/Dialing/OffHook -> DIALING. The
        direction, from the application the channel runs: ``Dial`` means the
        phone placed the call (callerid = the phone's own, calledid = its
        Exten, origin OUTBOUND); ``AppDial`` means a Dial rang it (caller =
        its ConnectedLine); anything else leaves origin UNKNOWN.
        """
        leg = self._leg(get, "Channel", now, create=True)
        if leg is None or leg.state != UNSEEN:
            return
        out = self.out
        state = (get("ChannelState") or "").strip()
        app = (get("Application") or "").strip().lower()
        leg.own = (_known(get("CallerIDNum")), _known(get("CallerIDName")))
        leg.connected = (_known(get("ConnectedLineNum")), _known(get("ConnectedLineName")))
        placed = app == "dial" or (state in _DIALLING_STATES and not app.startswith("appdial"))
        if state not in (_STATE_UP, _STATE_RINGING) and state not in _DIALLING_STATES:
            self._forget(leg)
            return
        if placed:
            leg.exten = _known(get("Exten"))
            self._placed(leg, _number(leg.exten), out)
        elif app.startswith("appdial") or state == _STATE_RINGING:
            num, name = leg.connected
            self._announce(leg, num, name, None, out, screen=True)
        else:
            self._announce(leg, None, None, None, out)
        if state == _STATE_UP:
            self._connected_info(leg, out)
            self._to(leg, CONNECTED, None, out)
        elif state == _STATE_RINGING:
            self._to(leg, OFFERING, None, out)
        else:
            self._to(leg, DIALING, None, out)

    # -- the handlers (one per event) -------------------------------------------

    def _newchannel(self, get: Fields, now: float, out: list) -> None:
        leg = self._leg(get, "Channel", now, create=True)
        if leg is None:
            return
        leg.own = (_known(get("CallerIDNum")), _known(get("CallerIDName")))
        fact = _DIALLING_STATES.get((get("ChannelState") or "").strip())
        if fact is None or leg.state != UNSEEN:
            return  # Down: Asterisk made it to call the device (a Dial or an Originate)
        leg.exten = _known(get("Exten"))
        self._placed(leg, _number(leg.exten), out)
        self._apply(leg, fact, None, out)

    def _newstate(self, get: Fields, now: float, out: list) -> None:
        # create: a channel first seen here started before we connected (or its Newchannel was lost)
        leg = self._leg(get, "Channel", now, create=True)
        if leg is None:
            return
        self._note_connected(leg, get, "", out)
        state = (get("ChannelState") or "").strip()
        if state == _STATE_RINGING:
            leg.ringing = True
        elif state == _STATE_UP:
            if leg.state == UNSEEN:
                self._announce(leg, None, None, None, out)
            if leg.state in (OFFERING, UNSEEN) or (leg.placed and TABLE[ANSWERED].get(leg.state) == CONNECTED):
                # offered: the phone answered; placed: an application answered (a conference,
                # a parked call, voicemail): the far party is whoever the channel is connected to
                self._connected_info(leg, out)
            self._apply(leg, ANSWERED, None, out)

    def _dial_begin(self, get: Fields, now: float, out: list) -> None:
        source = get("Channel")
        dialled, internal = self._root(source, get)
        dest = get("DestChannel") or ""
        if _known(source) is not None and _local_one(dest):
            if self._chain_of(dest) is None:
                self._own("_chain")[dest] = (dialled, internal)
            member = dest[:-1] + "2"
            if dialled is not None:
                for leg in self._legs_via(member):
                    # Asterisk publishes this DialBegin after ast_call() started the Local pair, so
                    # the member's Dial may have rung its phone first: the number dialled follows.
                    if leg.state != UNSEEN:
                        self._set(leg, "calledid", dialled, out)
        caller = self._leg(get, "Channel", now)
        callee = self._leg(get, "DestChannel", now, create=True)
        if callee is not None:
            self._note_connected(callee, get, "Dest", out)
            if callee.state == UNSEEN:
                if _known(source) is None:
                    # An Originate rings the device (click-to-dial): the user's own call.
                    self._placed(callee, None, out)
                    self._apply(callee, ORIGINATED, None, out)
                else:
                    num = _known(get("CallerIDNum")) or callee.connected[0]
                    name = _known(get("CallerIDName")) or callee.connected[1]
                    callee.via = source
                    self._announce(callee, num, name, dialled or _number(get("DestExten")), out,
                                   origin=_INTERNAL if internal else _EXTERNAL, screen=True)
                    self._apply(callee, INCOMING, None, out)
        if caller is not None:
            self._note_connected(caller, get, "", out)
            caller.far = (_known(get("DestCallerIDNum")), _known(get("DestCallerIDName")))
            if dest:
                caller.dialling[dest] = None
            if caller.state == UNSEEN:
                return
            number = _number(get("Exten"))
            if number is not None:
                self._set(caller, "calledid", number, out)
            self._apply(caller, PROCEEDS, None, out)

    def _root(self, channel: str | None, get: Fields) -> tuple[str | None, bool]:
        """Whom a Dial from ``channel`` is for: (the number the caller dialled, the caller is a
        configured device), followed back through Local channels.

        A queue with members ``Local/201@from-queue/n`` or a ring group that
        dials ``Local/201@from-internal/n&...`` (FreePBX) reaches the phone
        from the ``;2`` half of a Local pair, whose Exten is the member (201).
        Its ``;1`` half was dialled by the caller's leg (DialBegin's
        DestChannel), so the chain ``;2`` -> ``;1`` -> the channel that
        dialled it leads back to what the caller dialled (the queue's or ring
        group's number) and to whether the caller is a station of ours.
        """
        if not _known(channel):
            return None, False  # an Originate: nobody dialled
        assert channel is not None
        if channel.endswith(";2"):
            hit = self._chain_of(channel[:-1] + "1")
            if hit is not None:
                return hit
        return _number(get("Exten")), bool(self.lines_of(channel))

    def _dial_state(self, get: Fields, now: float, out: list) -> None:
        caller = self._leg(get, "Channel", now)
        if caller is not None and (get("DialStatus") or "").strip().upper() in ("RINGING", "PROGRESS"):
            self._note_connected(caller, get, "", out)
            self._apply(caller, RINGS_BACK, None, out)

    def _dial_end(self, get: Fields, now: float, out: list) -> None:
        status = (get("DialStatus") or "").strip().upper()
        forwarded = status == "CANCEL" and _known(get("Forward")) is not None
        callee = self._leg(get, "DestChannel", now)
        if callee is not None and callee.dial_status is None:
            # the first end counts: a queue says NOANSWER when a member rang out, then CANCEL
            if forwarded:
                callee.dial_status = FORWARDED
            elif status == "CANCEL":
                callee.dial_status = self._member_end_of(get("Channel") or "") or status
            else:
                callee.dial_status = status
        dest = get("DestChannel") or ""
        if status != "ANSWER" and _local_one(dest):
            # A Local member (queue, ring group) ended: the Dial in it only says CANCEL to its
            # phone when the Local pair goes, so the phone's Dial end takes this status instead.
            if self._member_end_of(dest[:-1] + "2") is None:
                self._own("_member_end")[dest[:-1] + "2"] = status
        caller = self._leg(get, "Channel", now)
        if caller is None:
            return
        self._note_connected(caller, get, "", out)
        if status == "ANSWER":
            caller.dialling.clear()
            self._connected_info(caller, out)
            self._apply(caller, FAR_ANSWERED, None, out)
            return
        caller.dialling.pop(dest, None) if forwarded else caller.dialling.__setitem__(dest, status)
        if forwarded or any(end is None for end in caller.dialling.values()):
            return  # the Dial goes on (a forward's new destination, or another one still rings)
        ends = set(caller.dialling.values()) or {status}
        caller.dialling.clear()
        final = next((s for s in _FAILED_FIRST if s in ends), status)
        if final == "BUSY":
            busy = "LINEBUSYMODE_STATION" if self.lines_of(dest) else "LINEBUSYMODE_UNKNOWN"
            self._apply(caller, FAR_BUSY, busy, out)
        elif final in FAR_FAILED_MODE:
            self._apply(caller, FAR_FAILED, FAR_FAILED_MODE[final], out)

    def _bridge_enter(self, get: Fields, now: float, out: list) -> None:
        leg = self._leg(get, "Channel", now)
        if leg is not None and leg.state != UNSEEN:
            self._note_connected(leg, get, "", out)
            if leg.state != CONNECTED and leg.state in TABLE[BRIDGED]:
                self._connected_info(leg, out)
            self._apply(leg, BRIDGED, None, out)

    def _channel_event(self, get: Fields, now: float, out: list) -> None:
        """NewConnectedLine, BridgeLeave, NewCallerid: the ConnectedLine every channel event carries."""
        leg = self._leg(get, "Channel", now)
        if leg is not None:
            self._note_connected(leg, get, "", out)

    def _hold(self, get: Fields, now: float, out: list) -> None:
        leg = self._leg(get, "Channel", now)
        if leg is not None:
            self._apply(leg, HOLD, None, out)

    def _unhold(self, get: Fields, now: float, out: list) -> None:
        leg = self._leg(get, "Channel", now)
        if leg is not None:
            self._apply(leg, UNHOLD, None, out)

    def _blind_transfer(self, get: Fields, now: float, out: list) -> None:
        if (get("Result") or "").strip().lower() != "success":
            return
        self._transferred(self._leg(get, "TransfererChannel", now), out)

    def _attended_transfer(self, get: Fields, now: float, out: list) -> None:
        if (get("Result") or "").strip().lower() != "success":
            return
        self._transferred(self._leg(get, "OrigTransfererChannel", now), out)
        self._transferred(self._leg(get, "SecondTransfererChannel", now), out)

    def _transferred(self, leg: Leg | None, out: list) -> None:
        if leg is not None and leg.state != UNSEEN:
            self._apply(leg, TRANSFERRED, None, out)
            self._forget(leg)

    def _pickup(self, get: Fields, now: float, out: list) -> None:
        """Pickup (``*8`` group pickup, ``Pickup()``): another phone took a call ringing here.

        The ringing phone's call ends ``PICKUP`` at its Hangup. The picking
        phone's own call (it dialled the feature code, Asterisk answered it)
        goes IDLE, and the call it picked up appears on its line as a new
        call, as TAPI's ``linePickup`` gives one: the caller, the number they
        dialled and the origin of the call that rang, CONNECTED, so the
        screen pop (and contact lookup) comes to whoever answered it.
        """
        target = self._leg(get, "TargetChannel", now)
        if target is not None:
            target.picked = True
        picker = self._leg(get, "Channel", now, create=True)
        if picker is None:
            return
        if picker.state != UNSEEN:
            self._apply(picker, TRANSFERRED, None, out)
        self._forget(picker)
        leg = self._leg(get, "Channel", now, create=True)
        assert leg is not None
        leg.own = picker.own
        num, name = _known(get("TargetConnectedLineNum")), _known(get("TargetConnectedLineName"))
        if target is not None:
            dialled, origin = target.info.get("calledid"), target.info.get("origin")
        else:
            dialled, origin = _number(get("TargetExten")), None
        self._announce(leg, num, name, dialled, out, origin=origin, screen=True)
        leg.connected = (num, name)
        self._connected_info(leg, out)
        self._to(leg, CONNECTED, None, out)

    def _shutdown(self, get: Fields, now: float, out: list) -> None:
        """Asterisk is stopping: its channels die with it (their Hangups came first, if at all)."""
        self._reset_all()

    def _hangup(self, get: Fields, now: float, out: list) -> None:
        channel = get("Channel") or ""
        if channel[:6].lower() == "local/":  # (only Local channels are kept in these)
            if self._chain_of(channel) is not None:
                self._own("_chain")[channel] = None
            if self._member_end_of(channel) is not None:
                self._own("_member_end")[channel] = None
        leg = self._leg(get, "Channel", now)
        if leg is None:
            return
        if leg.state != UNSEEN and leg.state != IDLE:
            cause = _int(get("Cause"))
            self._apply(leg, HANGUP, disconnect_mode(leg, cause), out)
            self._to(leg, IDLE, None, out)
        self._forget(leg)

    # -- helpers ---------------------------------------------------------------

    def _leg(self, get: Fields, prefix: str, now: float, *, create: bool = False) -> Leg | None:
        """The leg of the channel named in header ``prefix`` (``Channel``, ``DestChannel``, ...)."""
        channel = get(prefix)
        if not channel:
            return None
        lines = self.lines_of(channel)
        if not lines:
            return None
        base = prefix[: -len("Channel")]
        uid = _known(get(base + "Uniqueid")) or self._uniqueid_of(channel)
        if uid is None:
            return None
        leg = self._get(uid)
        if leg is None and create:
            leg = self._create(uid, channel, lines, now)
        if leg is not None:
            leg.updated = now
        return leg

    def _note_connected(self, leg: Leg, get: Fields, base: str, out: list) -> None:
        """Every channel event carries the channel's ConnectedLine: follow it once the call is connected."""
        num, name = _known(get(base + "ConnectedLineNum")), _known(get(base + "ConnectedLineName"))
        if num is None and name is None:
            return
        leg.connected = (num, name)
        if leg.state in (CONNECTED, ONHOLD):
            self._connected_info(leg, out)

    def _connected_info(self, leg: Leg, out: list) -> None:
        """Who the call is connected to: the channel's ConnectedLine, screened for its presentation.

        Without one, a call the user placed shows the dialled party (as the
        Dial named it, else the number dialled); an offered call shows no
        connected party, flags ``UNAVAIL`` (the caller sent no id).
        """
        num, name = leg.connected
        if num is not None or name is not None:
            self._party(leg, "connectedid", num, name, out, G.Screen(CONNECTED_PRES, num, name))
        elif leg.placed:
            num, name = leg.far
            self._party(leg, "connectedid", num or leg.info.get("calledid"), name, out, None)
        else:
            self._set(leg, "connectedidflags", parties.UNAVAIL, out)

    def _party(self, leg: Leg, party: str, number: str | None, name: str | None, out: list,
               screen: G.Screen | None) -> None:
        """SET a party's number and name (the first SET carries ``screen``: the core reads the
        presentation before anything of the party is shown)."""
        name_key, flags_key = parties.PARTIES[party]
        for key, value in ((party, number), (name_key, name)):
            if value is not None and leg.info.get(key) != value:
                leg.info.pop(flags_key, None)
                self._set(leg, key, value, out, screen)
                screen = None

    def _announce(self, leg: Leg, callerid: str | None, name: str | None, dialled: str | None,
                  out: list, *, origin: str | None = None, screen: bool = False) -> None:
        """LINE_NEWCALL for the leg on each of its lines, with the caller (screened: the core
        reads the presentation of the phone's far party first) and the origin."""
        text = f"[~{leg.uniqueid}] LINE_NEWCALL {' '.join(leg.lines)}"
        cmd = G.TapiCommand(leg.uniqueid, (), (), G.NEWCALL, leg.lines, text)
        anyone = callerid is not None or name is not None
        out.append(G.TapiSignal(
            cmd, leg.uniqueid, leg.channel, callerid, name, dialled, origin=origin,
            # a caller Asterisk gives no id at all needs no reading: nothing to hide, flags UNAVAIL
            presentation=parties.ALLOWED if screen and not anyone else None,
            screen=G.Screen(CONNECTED_PRES, callerid, name) if screen and anyone else None, device=True))
        # The leg stays UNSEEN: the fact that follows (INCOMING, DIALLED, ...) moves it.
        for key, value in (("callerid", callerid), ("calleridname", name), ("calledid", dialled),
                           ("origin", origin)):
            if value is not None:
                leg.info[key] = value

    def _placed(self, leg: Leg, dialled: str | None, out: list) -> None:
        """LINE_NEWCALL for a call the user places (origin OUTBOUND): no callerid in it (their
        own number is no customer to look up); their number and name follow as silent SETs."""
        leg.placed = True
        self._announce(leg, None, None, dialled, out, origin=_OUTBOUND)
        self._set(leg, "callerid", leg.own[0], out)
        self._set(leg, "calleridname", leg.own[1], out)

    def _set(self, leg: Leg, key: str, value: str | None, out: list, screen: G.Screen | None = None) -> None:
        """SET a callinfo field if it changed; LINE_CALLINFO too once clients have seen a state."""
        if value is None or leg.info.get(key) == value:
            return
        leg.info[key] = value
        fld = G.FIELD_OF[key]
        out.append(self._signal(leg, G.SET, (fld, value), f"SET {fld} {value}", screen))
        if leg.state not in (UNSEEN, NEW):
            info = _INFOSTATE[key]
            last = out[-2] if len(out) > 1 else None
            if last is not None and last.command.verb == G.CALLINFO and last.command.args == (info,):
                out.pop(-2)  # number and name: one LINE_CALLINFO after both
            out.append(self._signal(leg, G.CALLINFO, (info,), f"LINE_CALLINFO {info}"))

    def _apply(self, leg: Leg, fact: str, mode: str | None, out: list) -> None:
        new = TABLE[fact].get(leg.state)
        if new is not None:
            self._to(leg, new, mode, out)

    def _to(self, leg: Leg, state: str, mode: str | None, out: list) -> None:
        leg.state = state
        if state == NEW:
            return
        args = (state,) if mode is None else (state, mode)
        out.append(self._signal(leg, G.CALLSTATE, args, "LINE_CALLSTATE " + " ".join(args)))

    def _signal(self, leg: Leg, verb: str, args: tuple[str, ...], text: str,
                screen: G.Screen | None = None) -> G.TapiSignal:
        lines = leg.lines
        raw = f"[~{leg.uniqueid}&{'&'.join(lines)}] {text}"
        return G.TapiSignal(G.TapiCommand(leg.uniqueid, lines, (), verb, args, raw), leg.uniqueid, leg.channel,
                            screen=screen, device=True)


def disconnect_mode(leg: Leg, cause: int | None) -> str:
    """LINEDISCONNECTMODE_* for a device channel that hung up in ``leg.state``.

    A call that rang and was never answered here says why from the Dial's
    first status (rejected, not answered, the caller gave up, forwarded by
    a 302; BUSY before it ever rang is BUSY, not a rejection; for a Local
    queue member, how the queue's ring of the member ended), cause 26 or a
    Pickup taking precedence (answered elsewhere, picked up); every other
    call uses the Q.850 cause (:func:`~.causes.mode_for_cause`: 16 -> NORMAL).
    """
    if leg.state == OFFERING:
        if cause == _ANSWERED_ELSEWHERE or leg.picked:
            return _PICKUP
        if leg.dial_status == "BUSY" and not leg.ringing:
            return "LINEDISCONNECTMODE_BUSY"  # refused before it rang (busy, do-not-disturb)
        mode = UNANSWERED_MODE.get(leg.dial_status or "")
        if mode is not None:
            return mode
    if leg.state == NEW and leg.dial_status == "NOANSWER":
        return "LINEDISCONNECTMODE_NOANSWER"
    return mode_for_cause(cause)


def _answered_meanwhile(state: str, get: Fields) -> bool:
    """Does a listed channel show that a leg in ``state`` was answered while we were away?

    Offered: its channel is Up (the phone answered). Dialling: its channel
    is in a bridge (``BridgeId``), not merely Up: the phone's own channel is
    Up from the moment the user picks up a click-to-dial, or a dialplan
    answers early, while the far end still rings.
    """
    if (get("ChannelState") or "").strip() != _STATE_UP:
        return False
    if state == OFFERING:
        return True
    return state in _DIALLING and bool((get("BridgeId") or "").strip())


def _local_one(channel: str) -> bool:
    """Is ``channel`` the ;1 half of a Local pair (``Local/201@from-queue-0000001a;1``)?"""
    return channel.endswith(";1") and channel[:6].lower() == "local/"


def _int(value: str | None) -> int | None:
    try:
        return int((value or "").strip())
    except ValueError:
        return None


# Names compared by the one case rule (idents.wanted_name).
_HANDLERS: ByName[Callable[[_Event, Fields, float, list], None]] = ByName({
    "newchannel": _Event._newchannel,
    "newstate": _Event._newstate,
    "newcallerid": _Event._channel_event,
    "newconnectedline": _Event._channel_event,
    "dialbegin": _Event._dial_begin,
    "dialstate": _Event._dial_state,
    "dialend": _Event._dial_end,
    "bridgeenter": _Event._bridge_enter,
    "bridgeleave": _Event._channel_event,
    "hold": _Event._hold,
    "unhold": _Event._unhold,
    "blindtransfer": _Event._blind_transfer,
    "attendedtransfer": _Event._attended_transfer,
    "pickup": _Event._pickup,
    "hangup": _Event._hangup,
    "shutdown": _Event._shutdown,
})
