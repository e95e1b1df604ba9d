"""Header builders for the demo PBX: the exact layouts Asterisk 22 sends.

Every builder returns an AMI message as ordered ``(key, value)`` pairs; the
layouts (which keys, in which order) are copied from the real captures in
``tests/data/ami/`` (``05_inbound_call.monitor.raw`` and friends: the TAPI
dialplan) and ``tests/data/ami-native/`` (real SIP phones, a plain dialplan:
the bridge, hold and transfer events of the device lines), and a test
compares them key for key. :func:`encode` turns pairs into wire bytes.

Pure: no reactor, no clock (callers pass times in).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

Pairs = list[tuple[str, str]]

#: ChannelState numbers and descriptions (Asterisk's ast_channel_state).
STATE_DESC = {0: "Down", 4: "Ring", 5: "Ringing", 6: "Up", 7: "Busy"}
DOWN, RING, RINGING, UP, BUSY = 0, 4, 5, 6, 7

#: Hangup causes the demo uses, with Asterisk's Cause-txt.
CAUSE_TXT = {
    0: "Unknown",
    1: "Unallocated (unassigned) number",
    16: "Normal Clearing",
    17: "User busy",
    19: "User alerting, no answer",
    21: "Call Rejected",
    26: "Answered elsewhere",
    34: "Circuit/channel congestion",
}

UNKNOWN = "<unknown>"


@dataclass
class Channel:
    """One live channel as the demo PBX knows it (a channel snapshot)."""

    name: str
    uniqueid: str
    linkedid: str
    context: str
    exten: str
    priority: int = 1
    state: int = DOWN
    callerid_num: str = UNKNOWN
    callerid_name: str = UNKNOWN
    connected_num: str = UNKNOWN
    connected_name: str = UNKNOWN
    language: str = "en"
    accountcode: str = ""
    created: float = 0.0
    application: str = ""
    application_data: str = ""
    bridge_id: str = ""
    variables: dict[str, str] = field(default_factory=dict)
    #: CALLERID(pres) and CONNECTEDLINE(pres) as Getvar reads them (main/callerid.c's names):
    #: no AMI event carries them, like on a real Asterisk.
    callerid_pres: str = "allowed_not_screened"
    connected_pres: str = "allowed_not_screened"

    def getvar(self, variable: str) -> str:
        """What ``Getvar`` answers for ``variable`` on this channel (``""`` for one not set)."""
        name = variable.strip().upper()
        if name in ("CALLERID(PRES)", "CALLERID(NUM-PRES)", "CALLERID(NAME-PRES)"):
            return self.callerid_pres
        if name in ("CONNECTEDLINE(PRES)", "CONNECTEDLINE(NUM-PRES)", "CONNECTEDLINE(NAME-PRES)"):
            return self.connected_pres
        return self.variables.get(variable.strip(), "")

    def snapshot(self, prefix: str = "") -> Pairs:
        """The standard channel headers, in Asterisk's order."""
        p = prefix
        return [
            (f"{p}Channel", self.name),
            (f"{p}ChannelState", str(self.state)),
            (f"{p}ChannelStateDesc", STATE_DESC.get(self.state, "Unknown")),
            (f"{p}CallerIDNum", self.callerid_num),
            (f"{p}CallerIDName", self.callerid_name),
            (f"{p}ConnectedLineNum", self.connected_num),
            (f"{p}ConnectedLineName", self.connected_name),
            (f"{p}Language", self.language),
            (f"{p}AccountCode", self.accountcode),
            (f"{p}Context", self.context),
            (f"{p}Exten", self.exten),
            (f"{p}Priority", str(self.priority)),
            (f"{p}Uniqueid", self.uniqueid),
            (f"{p}Linkedid", self.linkedid),
        ]


# ---------------------------------------------------------------- events


def _event(name: str, privilege: str, body: Iterable[tuple[str, str]]) -> Pairs:
    return [("Event", name), ("Privilege", privilege), *body]


def newchannel(ch: Channel) -> Pairs:
    return _event("Newchannel", "call,all", ch.snapshot())


def newstate(ch: Channel) -> Pairs:
    return _event("Newstate", "call,all", ch.snapshot())


#: CALLERID(pres) names -> NewCallerid's "CID-CallingPres: %d (%s)" (main/callerid.c's pres_types).
CALLING_PRES = {
    "allowed_not_screened": "0 (Presentation Allowed, Not Screened)",
    "allowed_passed_screen": "1 (Presentation Allowed, Passed Screen)",
    "prohib_not_screened": "32 (Presentation Prohibited, Not Screened)",
    "prohib_passed_screen": "33 (Presentation Prohibited, Passed Screen)",
    "unavailable": "67 (Number Unavailable)",
}


def newcallerid(ch: Channel) -> Pairs:
    return _event(
        "NewCallerid",
        "call,all",
        [*ch.snapshot(), ("CID-CallingPres", CALLING_PRES.get(ch.callerid_pres, CALLING_PRES["allowed_not_screened"]))],
    )


def newconnectedline(ch: Channel) -> Pairs:
    return _event("NewConnectedLine", "call,all", ch.snapshot())


def newexten(ch: Channel, application: str, appdata: str) -> Pairs:
    return _event(
        "Newexten",
        "dialplan,all",
        [*ch.snapshot(), ("Extension", ch.exten), ("Application", application), ("AppData", appdata)],
    )


def varset(ch: Channel, variable: str, value: str) -> Pairs:
    return _event("VarSet", "dialplan,all", [*ch.snapshot(), ("Variable", variable), ("Value", value)])


def user_event(ch: Channel, tapievent: str, name: str = "TAPI") -> Pairs:
    """``UserEvent(TAPI,TAPIEVENT: ...)`` as Asterisk 12+ sends it: the body header last."""
    return _event("UserEvent", "user,all", [*ch.snapshot(), ("UserEvent", name), ("TAPIEVENT", tapievent)])


def dial_begin(caller: Channel | None, dest: Channel, dialstring: str) -> Pairs:
    body = caller.snapshot() if caller is not None else []
    return _event("DialBegin", "call,all", [*body, *dest.snapshot("Dest"), ("DialString", dialstring)])


def dial_state(caller: Channel | None, dest: Channel, status: str) -> Pairs:
    body = caller.snapshot() if caller is not None else []
    return _event("DialState", "call,all", [*body, *dest.snapshot("Dest"), ("DialStatus", status)])


def dial_end(caller: Channel | None, dest: Channel, status: str) -> Pairs:
    body = caller.snapshot() if caller is not None else []
    return _event("DialEnd", "call,all", [*body, *dest.snapshot("Dest"), ("DialStatus", status)])


def hangup_request(ch: Channel, cause: int, soft: bool = False) -> Pairs:
    name = "SoftHangupRequest" if soft else "HangupRequest"
    return _event(name, "call,all", [*ch.snapshot(), ("Cause", str(cause))])


def hangup(ch: Channel, cause: int) -> Pairs:
    return _event(
        "Hangup",
        "call,all",
        [*ch.snapshot(), ("Cause", str(cause)), ("Cause-txt", CAUSE_TXT.get(cause, "Unknown"))],
    )


def bridge_snapshot(bridge_id: str, members: int) -> Pairs:
    """The bridge headers of BridgeCreate/Enter/Leave/Destroy (a two-party ``basic`` bridge)."""
    return [
        ("BridgeUniqueid", bridge_id),
        ("BridgeType", "basic"),
        ("BridgeTechnology", "simple_bridge"),
        ("BridgeCreator", UNKNOWN),
        ("BridgeName", UNKNOWN),
        ("BridgeNumChannels", str(members)),
        ("BridgeVideoSourceMode", "none"),
    ]


def bridge_create(bridge_id: str) -> Pairs:
    return _event("BridgeCreate", "call,all", bridge_snapshot(bridge_id, 0))


def bridge_destroy(bridge_id: str) -> Pairs:
    return _event("BridgeDestroy", "call,all", bridge_snapshot(bridge_id, 0))


def bridge_enter(bridge_id: str, members: int, ch: Channel) -> Pairs:
    """*members*: how many channels the bridge holds with *ch* in it."""
    return _event("BridgeEnter", "call,all", [*bridge_snapshot(bridge_id, members), *ch.snapshot()])


def bridge_leave(bridge_id: str, members: int, ch: Channel) -> Pairs:
    """*members*: how many channels the bridge holds once *ch* has left."""
    return _event("BridgeLeave", "call,all", [*bridge_snapshot(bridge_id, members), *ch.snapshot()])


def hold(ch: Channel) -> Pairs:
    """The phone put its call on hold (a SIP re-INVITE sendonly): ``Hold`` with the music class."""
    return _event("Hold", "call,all", [*ch.snapshot(), ("MusicClass", "default")])


def unhold(ch: Channel) -> Pairs:
    return _event("Unhold", "call,all", ch.snapshot())


def blind_transfer(transferer: Channel, transferee: Channel, bridge_id: str, context: str,
                   exten: str) -> Pairs:
    """``BlindTransfer`` as the AMI action of that name makes it (capture s08): Result first."""
    return _event("BlindTransfer", "call,all", [
        ("Result", "Success"),
        *transferer.snapshot("Transferer"),
        *transferee.snapshot("Transferee"),
        *bridge_snapshot(bridge_id, 2),
        ("IsExternal", "Yes"),
        ("Context", context),
        ("Extension", exten),
    ])


def device_state_change(device: str, state: str) -> Pairs:
    return _event("DeviceStateChange", "call,all", [("Device", device), ("State", state)])


def originate_response(
    action_id: str | None,
    success: bool,
    channel: str,
    target: Sequence[tuple[str, str]],
    uniqueid: str,
    callerid_num: str,
    callerid_name: str,
) -> Pairs:
    """*target* is ``[("Context", c), ("Exten", e)]`` or ``[("Application", a), ("Data", d)]``."""
    head = [("ActionID", action_id)] if action_id is not None else []
    return _event(
        "OriginateResponse",
        "call,all",
        [
            *head,
            ("Response", "Success" if success else "Failure"),
            ("Channel", channel),
            *target,
            ("Reason", "4" if success else "0"),
            ("Uniqueid", uniqueid),
            ("CallerIDNum", callerid_num),
            ("CallerIDName", callerid_name),
        ],
    )


def fully_booted(uptime: int) -> Pairs:
    return _event(
        "FullyBooted",
        "system,all",
        [("Uptime", str(uptime)), ("LastReload", str(uptime)), ("Status", "Fully Booted")],
    )


def successful_auth(account: str, event_tv: str, session_id: str, local: str, remote: str,
                    using_password: bool) -> Pairs:
    return _event(
        "SuccessfulAuth",
        "security,all",
        [
            ("EventTV", event_tv),
            ("Severity", "Informational"),
            ("Service", "AMI"),
            ("EventVersion", "1"),
            ("AccountID", account),
            ("SessionID", session_id),
            ("LocalAddress", local),
            ("RemoteAddress", remote),
            ("UsingPassword", "1" if using_password else "0"),
            ("SessionTV", event_tv),
        ],
    )


def core_show_channel(ch: Channel, action_id: str | None, now: float) -> Pairs:
    head = [("ActionID", action_id)] if action_id is not None else []
    secs = max(0, int(now - ch.created))
    duration = f"{secs // 3600:02d}:{secs % 3600 // 60:02d}:{secs % 60:02d}"
    return [
        ("Event", "CoreShowChannel"),
        *head,
        *ch.snapshot(),
        ("Application", ch.application),
        ("ApplicationData", ch.application_data),
        ("Duration", duration),
        ("BridgeId", ch.bridge_id),
    ]


def list_complete(event: str, action_id: str | None, items: int) -> Pairs:
    head = [("ActionID", action_id)] if action_id is not None else []
    return [("Event", event), *head, ("EventList", "Complete"), ("ListItems", str(items))]


# ---------------------------------------------------------------- responses


def response(status: str, action_id: str | None, *body: tuple[str, str]) -> Pairs:
    """``Response: X``, then ``ActionID`` (only if the action had one), then *body*."""
    head = [("ActionID", action_id)] if action_id is not None else []
    return [("Response", status), *head, *body]


def encode(pairs: Iterable[tuple[str, str]]) -> bytes:
    """Wire form: ``Key: value\\r\\n`` per header, a blank line after."""
    return ("".join(f"{k}: {v}\r\n" for k, v in pairs) + "\r\n").encode("utf-8")
