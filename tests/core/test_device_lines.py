"""Device lines on the real captures: tests/data/ami-native (Asterisk 22, real SIP phones, no UserEvent).

Each capture is played through the real AMI parser, the device mapping
(:mod:`asttapi_server.core.device_lines`) and the real call model; per line
we check the whole TAPI sequence the model emits and the call info, against
what the scenario's timeline (the ``.txt`` beside the capture) says the
phones did. 201 = bob, 202 = bobbett, 203 = alice, as in the lab.

The hand-written events at the end (marked so) cover what no capture holds:
a caller who gives up, a busy far end, Local devices, a resync.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from asttapi_server.ami.message import Message
from asttapi_server.ami.parser import AMIParser
from asttapi_server.core import CallModel, parse_tapievent
from asttapi_server.core import device_lines as D
from asttapi_server.core.legs import RESET, DeviceNote
from asttapi_server.core.transitions import NEW, TRANSITIONS

DATA = Path(__file__).resolve().parents[1] / "data"
NATIVE = DATA / "ami-native"
LAB = {"PJSIP/201": ["bob"], "PJSIP/202": ["bobbett"], "PJSIP/203": ["alice"]}

NEWCALL, CALLINFO = "LINE_NEWCALL", "LINE_CALLINFO"
OFFERING, CONNECTED, IDLE = "LINECALLSTATE_OFFERING", "LINECALLSTATE_CONNECTED", "LINECALLSTATE_IDLE"
DISCONNECTED, ONHOLD, BUSY = "LINECALLSTATE_DISCONNECTED", "LINECALLSTATE_ONHOLD", "LINECALLSTATE_BUSY"
DIALTONE, DIALING = "LINECALLSTATE_DIALTONE", "LINECALLSTATE_DIALING"
PROCEEDING, RINGBACK = "LINECALLSTATE_PROCEEDING", "LINECALLSTATE_RINGBACK"
CONNID, ORIGIN, CALLEDID = ("LINECALLINFOSTATE_CONNECTEDID", "LINECALLINFOSTATE_ORIGIN",
                            "LINECALLINFOSTATE_CALLEDID")
NORMAL = "LINEDISCONNECTMODE_NORMAL"
EXTERNAL, INTERNAL, OUTBOUND = "LINECALLORIGIN_EXTERNAL", "LINECALLORIGIN_INTERNAL", "LINECALLORIGIN_OUTBOUND"


def messages(path: Path) -> list[Message]:
    return [m for m in AMIParser().feed(path.read_bytes()) if m.kind == "event"]


def play(messages, devices=LAB, model=None):
    """Signals and model events of a message list, in order."""
    lines = D.DeviceLines(devices)
    model = model if model is not None else CallModel(boot_id="test")
    signals, events = [], []
    for n, msg in enumerate(messages):
        for signal in lines.feed(msg.name, msg.get, float(n), model.view()):
            if type(signal) is not DeviceNote:
                signals.append(signal)
            events.extend(model.apply(signal, float(n)))
    return lines, model, signals, events


def tapi(out):
    """The TAPI signals of a mapping's answer (without the notes for the model)."""
    return [s for s in out if type(s) is not DeviceNote]


def seq(events, line):
    """One line's sequence: each event as 'MSG' / 'STATE' / 'STATE MODE' / 'INFOSTATE', per call."""
    out: dict[int, list[str]] = {}
    for e in events:
        if e.line != line:
            continue
        item = e.msg if e.msg == NEWCALL else (f"{e.param} {e.mode}" if e.mode else e.param)
        out.setdefault(e.call, []).append(item)
    return list(out.values())


def last(events, line, call_index=0):
    """The call info of a line's call after its last event."""
    calls = []
    for e in events:
        if e.line == line and e.call not in calls:
            calls.append(e.call)
    handle = calls[call_index]
    return [e for e in events if e.line == line and e.call == handle][-1].callinfo


def at(events, line, param):
    return next(e for e in events if e.line == line and e.param == param).callinfo


def clean(lines, model):
    """Nothing left behind: no leg tracked, no live call, nothing the model refused."""
    assert model.legs == {} and model.leg_channels == {}
    assert [c for c in model._by_handle.values() if c.ended is None] == []
    assert model.stats["impossible"] == 0 and model.stats["unknown_call"] == 0
    assert model.stats["synthetic_idle"] == 0


def run(name, devices=LAB):
    lines, model, signals, events = play(messages(NATIVE / f"{name}.raw"), devices)
    clean(lines, model)
    return signals, events


# -- the captures ------------------------------------------------------------


def test_s01_ring_group_answered_by_bob_answered_elsewhere_for_bobbett():
    _, events = run("s01_inbound_ringgroup_answered")
    assert seq(events, "bob") == [[NEWCALL, OFFERING, CONNID, CONNECTED, f"{DISCONNECTED} {NORMAL}", IDLE]]
    assert seq(events, "bobbett") == [[NEWCALL, OFFERING, f"{DISCONNECTED} LINEDISCONNECTMODE_PICKUP", IDLE]]
    assert seq(events, "alice") == []
    for line in ("bob", "bobbett"):
        newcall = at(events, line, None)  # LINE_NEWCALL already names the caller: the screen pop
        assert (newcall["callerid"], newcall["calleridname"], newcall["calledid"]) == (
            "0301234567", "Ext Caller", "100")
        offering = at(events, line, OFFERING)
        assert offering["origin"] == EXTERNAL and offering["connectedid"] is None
    bob = last(events, "bob")
    assert (bob["connectedid"], bob["connectedidname"]) == ("0301234567", "Ext Caller")
    # each line its own call handle, as TAPI gives each line device its own hCall
    assert len({e.call for e in events}) == 2


def test_s03_bob_rejects_the_ringing_call():
    _, events = run("s03_inbound_101_rejected")
    assert seq(events, "bob") == [[NEWCALL, OFFERING, f"{DISCONNECTED} LINEDISCONNECTMODE_REJECT", IDLE]]
    assert last(events, "bob")["calledid"] == "101"


def test_s04_internal_call_both_ends():
    _, events = run("s04_internal_201_to_203")
    # one origin per side, set once (issue 21): no LINE_CALLINFO ORIGIN on either line
    assert seq(events, "bob") == [[NEWCALL, DIALING, PROCEEDING, RINGBACK, CONNID, CONNECTED,
                                   f"{DISCONNECTED} {NORMAL}", IDLE]]
    assert seq(events, "alice") == [[NEWCALL, OFFERING, CONNID, CONNECTED, f"{DISCONNECTED} {NORMAL}", IDLE]]
    # a call the phone places: LINE_NEWCALL has no callerid (no contact lookup of the user's own number)
    assert at(events, "bob", None)["callerid"] is None
    # the caller's side is OUTBOUND from its LINE_NEWCALL on; the called side INTERNAL (it arrived
    # from a station of the same switch), also from its LINE_NEWCALL on
    assert {e.callinfo["origin"] for e in events if e.line == "bob"} == {OUTBOUND}
    assert {e.callinfo["origin"] for e in events if e.line == "alice"} == {INTERNAL}
    bob, alice = last(events, "bob"), last(events, "alice")
    assert (bob["callerid"], bob["calleridname"], bob["calledid"]) == ("201", "bob", "203")
    assert (bob["connectedid"], bob["connectedidname"], bob["origin"]) == ("203", "alice", OUTBOUND)
    assert (alice["callerid"], alice["calleridname"], alice["calledid"]) == ("201", "bob", "203")
    assert (alice["connectedid"], alice["connectedidname"], alice["origin"]) == ("201", "bob", INTERNAL)


def test_s05_outbound_call_answered():
    _, events = run("s05_outbound_answered")
    assert seq(events, "bob") == [[NEWCALL, DIALING, PROCEEDING, CONNID, CONNECTED,
                                   f"{DISCONNECTED} {NORMAL}", IDLE]]
    bob = last(events, "bob")
    assert (bob["callerid"], bob["calledid"], bob["origin"]) == ("201", "95551234", OUTBOUND)
    # Asterisk knows no connected line for [pstn]: the dialled party as the Dial named it
    assert bob["connectedid"] == "95551234"


def test_s07_click_to_dial_rings_the_phone_then_dials():
    _, events = run("s07_click_to_dial")
    assert seq(events, "bob") == [[NEWCALL, DIALTONE, CALLEDID, PROCEEDING, CONNID, CONNECTED,
                                   f"{DISCONNECTED} {NORMAL}", IDLE]]
    bob = last(events, "bob")
    # the Originate's display CallerID ("95551234") is not taken for the user's own number
    assert (bob["callerid"], bob["calleridname"]) == ("201", "bob")
    assert (bob["calledid"], bob["origin"], bob["uniqueid"]) == ("95551234", OUTBOUND, "c2d-1e8b533511d1")


def test_s07_click_to_dial_made_by_a_client_is_absorbed_into_its_handle():
    """lineMakeCall pre-creates the call with the ChannelId the Originate carries: no second call."""
    model = CallModel(boot_id="test")
    call = model.make_call("bob", "95551234", owner="crm", now=0.0, device=True)
    msgs = messages(NATIVE / "s07_click_to_dial.raw")
    # as the bridge would have sent it: our ChannelId instead of the lab's
    raw = (NATIVE / "s07_click_to_dial.raw").read_bytes().replace(b"c2d-1e8b533511d1", call.channel_id.encode())
    msgs = [m for m in AMIParser().feed(raw) if m.kind == "event"]
    lines, model, _, events = play(msgs, model=model)
    clean(lines, model)
    assert {e.call for e in events} == {call.handle}
    newcall = [e for e in events if e.msg == NEWCALL]
    assert len(newcall) == 1 and newcall[0].owner == "crm"  # the hub hides it from the dialling client
    assert [e.param for e in events if e.msg == "LINE_CALLSTATE"] == [
        DIALTONE, PROCEEDING, CONNECTED, DISCONNECTED, IDLE]


def test_s08_blind_transfer_by_ami_bob_goes_idle_alice_gets_the_caller():
    _, events = run("s08_blind_transfer_ami")
    assert seq(events, "bob") == [[NEWCALL, OFFERING, CONNID, CONNECTED, IDLE]]
    assert seq(events, "alice") == [[NEWCALL, OFFERING, CONNID, CONNECTED, f"{DISCONNECTED} {NORMAL}", IDLE]]
    alice = last(events, "alice")
    assert (alice["callerid"], alice["calleridname"], alice["calledid"]) == ("0301234567", "Ext Caller", "203")
    assert (alice["connectedid"], alice["origin"]) == ("0301234567", EXTERNAL)


def test_s09_attended_transfer_from_the_phone():
    _, events = run("s09_attended_transfer_phone")
    first, consultation = seq(events, "bob")
    # Asterisk sends Unhold for the held call while it carries out the REFER: it shows as CONNECTED
    assert first == [NEWCALL, OFFERING, CONNID, CONNECTED, ONHOLD, CONNECTED, IDLE]
    assert consultation == [NEWCALL, DIALING, PROCEEDING, RINGBACK, CONNID, CONNECTED, IDLE]
    assert seq(events, "alice") == [[NEWCALL, OFFERING, CONNID, CONNECTED, CONNID,
                                     f"{DISCONNECTED} {NORMAL}", IDLE]]
    alice = last(events, "alice")
    # the line that took the call now talks to the original caller
    assert (alice["connectedid"], alice["connectedidname"]) == ("0301234567", "Ext Caller")
    assert (alice["callerid"], alice["origin"]) == ("201", INTERNAL)


def test_s10_hold_and_resume():
    _, events = run("s10_hold_unhold")
    assert seq(events, "bob") == [[NEWCALL, OFFERING, CONNID, CONNECTED, ONHOLD, CONNECTED,
                                   f"{DISCONNECTED} {NORMAL}", IDLE]]


def test_s11_pbx_restart_hangs_the_call_up_first_and_the_reconnect_brings_nothing():
    _, events = run("s11_pbx_restart_during_call")
    assert seq(events, "bob") == [[NEWCALL, OFFERING, CONNID, CONNECTED, f"{DISCONNECTED} {NORMAL}", IDLE]]
    _, events = run("s11_pbx_restart_during_call_reconnect")
    assert events == []


ALL = sorted(p.stem for p in NATIVE.glob("*.raw"))


@pytest.mark.parametrize("name", ALL)
def test_every_signal_is_what_the_dialplan_would_send(name):
    """Each signal's raw text parses (real grammar) into exactly its command: the dialplan's own language."""
    signals, _ = run(name)
    for signal in signals:
        assert parse_tapievent(signal.command.raw) == signal.command
        assert signal.command.call_id == signal.uniqueid


@pytest.mark.parametrize("name", ALL)
def test_only_configured_devices_get_calls(name):
    """With only bob configured, bob's calls are the same and nobody else gets any.

    Only the origin may differ: a call to 203 is INTERNAL only when 203 is a configured device.
    """
    _, everyone = run(name)
    lines, model, _, only_bob = play(messages(NATIVE / f"{name}.raw"), {"PJSIP/201": ["bob"]})
    clean(lines, model)
    assert {e.line for e in only_bob} <= {"bob"}
    def states(events):
        return [[item for item in call if item != ORIGIN] for call in seq(events, "bob")]

    assert states(only_bob) == states(everyone)


def test_tapi_userevent_captures_give_nothing_without_device_lines():
    captures = sorted((DATA / "ami").glob("*.raw"))
    assert len(captures) > 10
    lines = D.DeviceLines({})
    for path in captures:
        for msg in messages(path):
            assert lines.feed(msg.name, msg.get, 0.0, CallModel().view()) == []


def test_tapi_userevent_captures_give_nothing_for_devices_they_do_not_use():
    """The TAPI lab's calls run on Local/bob@phones etc.; PJSIP devices there get no call from them."""
    lines, model = D.DeviceLines(LAB), CallModel()
    for path in sorted((DATA / "ami").glob("*.raw")):
        for msg in messages(path):
            assert tapi(lines.feed(msg.name, msg.get, 0.0, model.view())) == []


# -- the table -----------------------------------------------------------------


def test_every_move_in_the_table_is_allowed_by_the_model():
    for fact, moves in D.TABLE.items():
        for old, new in moves.items():
            source = NEW if old == D.UNSEEN else old
            assert new == NEW or new in TRANSITIONS[source], (fact, old, new)
    # a hangup's DISCONNECTED (and a BUSY) always ends with IDLE
    assert IDLE in TRANSITIONS[DISCONNECTED] and IDLE in TRANSITIONS[BUSY]


@pytest.mark.parametrize(
    "channel, device",
    [
        ("PJSIP/201-0000002a", "pjsip/201"),
        ("SIP/Bob-desk-0000002a", "sip/Bob-desk"),  # a '-' in the resource: only the last one counts
        ("DAHDI/1-1", "dahdi/1"),
        ("IAX2/alice-1234", "iax2/alice"),
        ("Local/201@phones-0000000a;1", "local/201@phones"),
        ("Local/201@phones-0000000a;2", None),  # the dialplan half of a Local pair
        ("PJSIP/201", None),  # a device, not a channel
        ("PJSIP/201-0000002a<ZOMBIE>", None),
        ("", None),
        (None, None),
    ],
)
def test_device_of(channel, device):
    assert D.device_of(channel) == device


def test_device_names_compare_technology_case_insensitively_resource_exactly():
    lines = D.DeviceLines({"pjsip/201": ["bob"], "SIP/Bob": ["old"]})
    assert lines.lines_of("PJSIP/201-00000001") == ("bob",)
    assert lines.lines_of("sip/Bob-00000001") == ("old",)
    assert lines.lines_of("SIP/bob-00000001") == ()
    with pytest.raises(ValueError, match="Tech/resource"):
        D.DeviceLines({"201": ["bob"]})
    for bad in ("PJSIP/2 01", "PJSIP/201\u2003x", "PJSIP\t/201"):  # whitespace inside: no device
        assert D.normalise_device(bad) is None
    assert D.normalise_device("  PJSIP/201\n") == "pjsip/201"


def test_the_lines_of_a_channel_are_remembered_within_bounds():
    """Remembered per channel name (bench/event_cost.py: a third of the device-line mix's
    calls went into reading names again); ever-new or huge names from a PBX cost no memory."""
    lines = D.DeviceLines({"PJSIP/201": ["bob"]})
    for n in range(3 * D._CHANNELS_REMEMBERED):
        assert lines.lines_of(f"PJSIP/201-{n:08x}") == ("bob",)
        assert lines.lines_of(f"PJSIP/999-{n:08x}") == ()
    assert len(lines._lines_of) <= D._CHANNELS_REMEMBERED
    huge = "PJSIP/201-" + "0" * 100_000
    assert lines.lines_of(huge) == ("bob",) and huge not in lines._lines_of
    assert lines.lines_of(None) == () and lines.lines_of("") == ()


# -- hand-written events (edge cases no capture holds) -----------------------------------


def ev(name, **headers):
    """A hand-written AMI event; ``Dest_`` stands for the ``Dest`` prefix."""
    items = [("Event", name)] + [(k.replace("Dest_", "Dest"), v) for k, v in headers.items()]
    return Message.from_items(items)


CALLER = dict(Channel="PJSIP/trunk-00000001", Uniqueid="9.1", CallerIDNum="0301234567",
              CallerIDName="Ext Caller", Exten="100")
BOB = dict(Dest_Channel="PJSIP/201-00000002", Dest_Uniqueid="9.2", Dest_CallerIDNum="201",
           Dest_ConnectedLineNum="0301234567")


HANDMADE = DATA / "ami-native-handmade"


def test_handmade_capture_ring_group_caller_gives_up_every_ringing_line_is_cancelled():
    """h01 (HAND-MADE from s01): both phones ring, the caller hangs up before anyone answers."""
    lines, model, _, events = play(messages(HANDMADE / "h01_ringgroup_caller_gives_up.raw"))
    clean(lines, model)
    for line in ("bob", "bobbett"):
        assert seq(events, line) == [[NEWCALL, OFFERING, f"{DISCONNECTED} LINEDISCONNECTMODE_CANCELLED", IDLE]]
        info = last(events, line)
        assert (info["callerid"], info["calleridname"], info["calledid"], info["origin"]) == (
            "0301234567", "Ext Caller", "100", EXTERNAL)
        assert info["connectedid"] is None  # never connected
    assert seq(events, "alice") == []
    assert len({e.call for e in events}) == 2


def test_handmade_capture_outbound_busy():
    """h02 (HAND-MADE from s05 + capture 07's Busy): bob dials 95550000, the far end is busy."""
    lines, model, _, events = play(messages(HANDMADE / "h02_outbound_busy.raw"))
    clean(lines, model)
    assert seq(events, "bob") == [[NEWCALL, DIALING, PROCEEDING, f"{BUSY} LINEBUSYMODE_UNKNOWN", IDLE]]
    info = last(events, "bob")
    assert (info["callerid"], info["calleridname"], info["calledid"], info["origin"]) == (
        "201", "bob", "95550000", OUTBOUND)
    assert info["connectedid"] is None
    assert at(events, "bob", None)["callerid"] is None  # no lookup of the user's own number


def test_handmade_caller_gives_up_while_it_rings():
    msgs = [
        ev("Newchannel", Channel="PJSIP/201-00000002", Uniqueid="9.2", ChannelState="0", CallerIDNum="201"),
        ev("DialBegin", **CALLER, **BOB),
        ev("Newstate", Channel="PJSIP/201-00000002", Uniqueid="9.2", ChannelState="5"),
        ev("DialEnd", **CALLER, **BOB, DialStatus="CANCEL"),
        ev("Hangup", Channel="PJSIP/201-00000002", Uniqueid="9.2", Cause="16"),
    ]
    lines, model, _, events = play(msgs)
    clean(lines, model)
    assert seq(events, "bob") == [[NEWCALL, OFFERING, f"{DISCONNECTED} LINEDISCONNECTMODE_CANCELLED", IDLE]]


def test_handmade_ring_group_timeout():
    msgs = [ev("DialBegin", **CALLER, **BOB), ev("DialEnd", **CALLER, **BOB, DialStatus="NOANSWER"),
            ev("Hangup", Channel="PJSIP/201-00000002", Uniqueid="9.2", Cause="16")]
    _, _, _, events = play(msgs)
    assert seq(events, "bob") == [[NEWCALL, OFFERING, f"{DISCONNECTED} LINEDISCONNECTMODE_NOANSWER", IDLE]]


PHONE = dict(Channel="PJSIP/201-00000003", Uniqueid="9.3", CallerIDNum="201", CallerIDName="bob",
             Exten="95550000")
FAR = dict(Dest_Channel="Local/5550000@pstn-00000004;1", Dest_Uniqueid="9.4", Dest_CallerIDNum="95550000")


def test_handmade_outbound_busy():
    msgs = [ev("Newchannel", **PHONE, ChannelState="4"), ev("DialBegin", **PHONE, **FAR),
            ev("DialEnd", **PHONE, **FAR, DialStatus="BUSY"),
            ev("Hangup", **PHONE, Cause="17")]
    lines, model, _, events = play(msgs)
    clean(lines, model)
    assert seq(events, "bob") == [[NEWCALL, DIALING, PROCEEDING, f"{BUSY} LINEBUSYMODE_UNKNOWN", IDLE]]
    assert last(events, "bob")["calledid"] == "95550000"


def test_handmade_outbound_not_answered():
    msgs = [ev("Newchannel", **PHONE, ChannelState="4"), ev("DialBegin", **PHONE, **FAR),
            ev("DialState", **PHONE, **FAR, DialStatus="RINGING"),
            ev("DialEnd", **PHONE, **FAR, DialStatus="NOANSWER"), ev("Hangup", **PHONE, Cause="16")]
    _, _, _, events = play(msgs)
    assert seq(events, "bob") == [[NEWCALL, DIALING, PROCEEDING, RINGBACK,
                                   f"{DISCONNECTED} LINEDISCONNECTMODE_NOANSWER", IDLE]]


def test_handmade_local_device_only_its_first_half():
    """A Local device (Dial(Local/bob@phones)): the ;1 half is the line's, the ;2 half runs the dialplan."""
    local = dict(Dest_Channel="Local/bob@phones-00000005;1", Dest_Uniqueid="9.5")
    msgs = [ev("DialBegin", **CALLER, **local),
            ev("Newchannel", Channel="Local/bob@phones-00000005;2", Uniqueid="9.6", ChannelState="4",
               CallerIDNum="0301234567", Exten="bob"),
            ev("DialBegin", Channel="Local/bob@phones-00000005;2", Uniqueid="9.6",
               Dest_Channel="PJSIP/201-00000007", Dest_Uniqueid="9.7"),
            ev("Hangup", Channel="Local/bob@phones-00000005;2", Uniqueid="9.6", Cause="16"),
            ev("Hangup", Channel="Local/bob@phones-00000005;1", Uniqueid="9.5", Cause="16")]
    lines, model, _, events = play(msgs, {"Local/bob@phones": ["bob"]})
    clean(lines, model)
    # no DialEnd before the hangup: the Q.850 cause is all there is
    assert seq(events, "bob") == [[NEWCALL, OFFERING, f"{DISCONNECTED} {NORMAL}", IDLE]]
    assert {e.call for e in events} == {model.by_uniqueid("9.5").handle}


def test_handmade_a_hangup_always_ends_the_call_whatever_came_before():
    msgs = [ev("Newstate", Channel="PJSIP/201-00000008", Uniqueid="9.8", ChannelState="6",
               ConnectedLineNum="0301234567"),
            ev("Hold", Channel="PJSIP/201-00000008", Uniqueid="9.8"),
            ev("Hangup", Channel="PJSIP/201-00000008", Uniqueid="9.8", Cause="0")]
    lines, model, _, events = play(msgs)
    clean(lines, model)
    # a channel that answered without a Dial we saw (connected mid-call, Page, ...): CONNECTED at once
    assert seq(events, "bob") == [[NEWCALL, CONNECTED, ONHOLD, f"{DISCONNECTED} LINEDISCONNECTMODE_UNKNOWN",
                                   IDLE]]


def test_handmade_resync_adopts_live_device_channels_only():
    lines = D.DeviceLines(LAB)
    model = CallModel(boot_id="test")
    listed = [
        ev("CoreShowChannel", Channel="PJSIP/201-00000009", Uniqueid="9.9", ChannelState="6",
           CallerIDNum="201", ConnectedLineNum="0301234567", ConnectedLineName="Ext Caller"),
        ev("CoreShowChannel", Channel="PJSIP/202-0000000a", Uniqueid="9.10", ChannelState="5",
           ConnectedLineNum="0301234567"),
        ev("CoreShowChannel", Channel="Local/100@plain-inbound-0000000b;2", Uniqueid="9.11", ChannelState="6"),
        ev("CoreShowChannel", Channel="PJSIP/trunk-0000000c", Uniqueid="9.12", ChannelState="6"),
    ]
    events = [e for m in listed for s in lines.adopt(m.get, 0.0, model.view()) for e in model.apply(s, 0.0)]
    assert seq(events, "bob") == [[NEWCALL, CONNECTED]]
    assert last(events, "bob")["connectedid"] == "0301234567"
    assert seq(events, "bobbett") == [[NEWCALL, OFFERING]]
    assert last(events, "bobbett")["callerid"] == "0301234567"
    assert tapi(lines.adopt(listed[0].get, 1.0, model.view())) == []  # listed twice: adopted once
    hangup = ev("Hangup", Channel="PJSIP/201-00000009", Uniqueid="9.9", Cause="16")
    events = [e for s in lines.feed("Hangup", hangup.get, 2.0, model.view()) for e in model.apply(s, 2.0)]
    assert seq(events, "bob") == [[f"{DISCONNECTED} {NORMAL}", IDLE]]


def test_reset_forgets_every_channel():
    _, model, _, _ = play(messages(NATIVE / "s10_hold_unhold.raw")[:40])
    assert model.legs
    model.apply(DeviceNote(RESET), 40.0)
    assert model.legs == {} and model.leg_channels == {} and model.chain == {} and model.member_end == {}


def test_shutdown_forgets_every_channel():
    """The s11 capture's last event: Asterisk restarts, no channel survives it."""
    msgs = messages(NATIVE / "s11_pbx_restart_during_call.raw")
    hangups = [i for i, m in enumerate(msgs) if m.name == "Hangup" and "PJSIP" in (m.get("Channel") or "")]
    # without the Hangup of bob's channel (lost with the link), the Shutdown still clears it
    lines, model, _, _ = play(msgs[: hangups[0]])
    assert model.legs
    shutdown = next(m for m in msgs if m.name == "Shutdown")
    out = lines.feed("Shutdown", shutdown.get, 1.0, model.view())
    assert tapi(out) == []
    for note in out:
        model.apply(note, 1.0)
    assert model.legs == {}


def test_a_device_call_whose_hangup_was_lost_ends_after_calls_max_age():
    """Issue 25: a device call follows ``[calls] max_age`` like every call (no 4-hour sweep of its own):
    the model ends it and forgets its channel, and a late event about that channel changes nothing."""
    lines, model = D.DeviceLines(LAB), CallModel(boot_id="test", max_age=100.0)
    up = ev("Newstate", Channel="PJSIP/201-00000008", Uniqueid="9.8", ChannelState="6")
    events = [e for s in lines.feed("Newstate", up.get, 1000.0, model.view()) for e in model.apply(s, 1000.0)]
    assert seq(events, "bob") == [[NEWCALL, CONNECTED]] and model.legs
    assert model.tick(1090.0) == [] and model.legs  # 90 s: kept
    ended = model.tick(1100.0)
    assert seq(ended, "bob") == [["LINECALLSTATE_DISCONNECTED LINEDISCONNECTMODE_UNKNOWN", IDLE]]
    assert all(e.synthetic for e in ended) and model.endings["max_age"] == 1
    assert model.legs == {} and model.leg_channels == {}
    hangup = ev("Hangup", Channel="PJSIP/201-00000008", Uniqueid="9.8", Cause="16")
    assert lines.feed("Hangup", hangup.get, 1200.0, model.view()) == []


def test_a_channel_never_announced_is_forgotten_after_calls_max_age():
    """A device channel Asterisk made (Newchannel Down) whose Dial and Hangup never came: its leg goes
    once ``[calls] max_age`` passed without news."""
    lines, model = D.DeviceLines(LAB), CallModel(boot_id="test", max_age=100.0)
    down = ev("Newchannel", Channel="PJSIP/201-00000008", Uniqueid="9.8", ChannelState="0")
    assert [model.apply(s, 1000.0) for s in lines.feed("Newchannel", down.get, 1000.0, model.view())] == [[]]
    assert list(model.legs) == ["9.8"] and model.tracked == 0
    model.tick(1090.0)
    assert model.legs
    model.tick(1150.0)
    assert model.legs == {} and model.leg_channels == {}


# -- docs/device-lines.md ----------------------------------------------------------------

DOC = Path(__file__).resolve().parents[2] / "docs" / "device-lines.md"


def _short(e) -> str:
    if e.msg == NEWCALL:
        return "NEWCALL"
    text = e.param.replace("LINECALLSTATE_", "").replace("LINECALLINFOSTATE_", "info:")
    return text + (f"({e.mode.split('_', 1)[1]})" if e.mode else "")


def test_the_docs_sequences_are_what_the_code_gives():
    import re

    block = re.search(r"## On the real captures.*?```text\n(.*?)```", DOC.read_text(), re.S).group(1)
    produced = []
    for path in sorted(NATIVE.glob("s*.raw")):
        _, _, _, events = play(messages(path))
        calls: dict = {}
        for e in events:
            calls.setdefault((e.line, e.call), []).append(_short(e))
        produced += [f"{path.stem[:3]} {line:8} {' '.join(items)}" for (line, _), items in calls.items()]
    assert block.splitlines() == produced


def test_the_docs_config_loads(tmp_path):
    import re

    from asttapi_server.mappings.channel_events import devices_of
    from asttapi_server.config import load_config

    snippet = re.search(r"```toml\n(.*?)```", DOC.read_text(), re.S).group(1)
    path = tmp_path / "asttapi.toml"
    path.write_text(snippet)
    cfg = load_config(str(path))
    assert devices_of(cfg) == {"PJSIP/201": ["bob"], "PJSIP/203": ["alice"]}
    assert cfg.lines["bob"].channel == "PJSIP/201"


def test_handmade_busy_before_ringing_is_busy_not_a_rejection():
    msgs = [ev("DialBegin", **CALLER, **BOB), ev("DialEnd", **CALLER, **BOB, DialStatus="BUSY"),
            ev("Hangup", Channel="PJSIP/201-00000002", Uniqueid="9.2", Cause="17")]
    _, _, _, events = play(msgs)
    assert seq(events, "bob") == [[NEWCALL, OFFERING, f"{DISCONNECTED} LINEDISCONNECTMODE_BUSY", IDLE]]


def test_the_benchmark_runs():
    """Smoke test only (no timing asserted): bench/device_lines.py replays the captures and leaks nothing."""
    from bench import device_lines as bench

    figures = bench.run(rounds=2)
    assert figures["events"] > 0 and figures["signals"] > 0


# -- resync after a (re)connect: the real s11 restart ---------------------------------------


def _listed(msgs, upto):
    """A CoreShowChannels list (hand-made, labelled: Asterisk was not asked for one in the lab) of
    the channels alive after ``msgs[:upto]``: each channel's last real snapshot, with the
    application it last ran and the bridge it is in, as CoreShowChannel items carry them."""
    alive: dict[str, list] = {}
    apps: dict[str, str] = {}
    bridges: dict[str, str] = {}
    for msg in msgs[:upto]:
        channel = msg.get("Channel")
        if not channel or msg.get("Uniqueid") is None:
            continue
        if msg.name in ("BridgeEnter", "BridgeLeave"):
            bridges[channel] = msg.get("BridgeUniqueid") if msg.name == "BridgeEnter" else ""
        if msg.name == "Hangup":
            alive.pop(channel, None)
            continue
        if msg.name == "Newexten":
            apps[channel] = msg.get("Application")
        keys = ("Channel", "ChannelState", "ChannelStateDesc", "CallerIDNum", "CallerIDName",
                "ConnectedLineNum", "ConnectedLineName", "Context", "Exten", "Priority", "Uniqueid", "Linkedid")
        alive[channel] = [(k, msg.get(k) or "") for k in keys]
    return [Message.from_items([("Event", "CoreShowChannel"), *items, ("Application", apps.get(ch, "")),
                                ("BridgeId", bridges.get(ch, ""))])
            for ch, items in alive.items()]


def test_s11_server_connects_mid_call_and_adopts_it_from_the_channel_list():
    msgs = messages(NATIVE / "s11_pbx_restart_during_call.raw")
    bridged = next(i for i, m in enumerate(msgs) if m.name == "BridgeEnter") + 2
    listed = _listed(msgs, bridged)
    assert len(listed) == 3  # Local ;1 and ;2 of the caller, bob's phone
    lines, model = D.DeviceLines(LAB), CallModel(boot_id="test")
    events = [e for s in lines.resync([m.get for m in listed], 0.0, model.view()) for e in model.apply(s, 0.0)]
    assert seq(events, "bob") == [[NEWCALL, CONNECTED]]
    bob = last(events, "bob")
    # AppDial: a Dial rang it, so the caller is its connected line
    assert (bob["callerid"], bob["calleridname"]) == ("0301234567", "Ext Caller")
    assert (bob["connectedid"], bob["connectedidname"]) == ("0301234567", "Ext Caller")
    again = lines.resync([m.get for m in listed], 1.0, model.view())
    assert tapi(again) == []  # listed again: nothing new
    rest = [e for s in again for e in model.apply(s, 1.0)]
    for n, msg in enumerate(msgs[bridged:]):
        rest += [e for s in lines.feed(msg.name, msg.get, 2.0 + n, model.view()) for e in model.apply(s, 2.0 + n)]
    assert seq(rest, "bob") == [[f"{DISCONNECTED} {NORMAL}", IDLE]]
    clean(lines, model)


def test_s11_link_lost_mid_call_and_the_reconnect_lists_no_channel_ends_the_call():
    """The Hangups are lost with the link; after the restart (the real reconnect capture) no channel exists."""
    msgs = messages(NATIVE / "s11_pbx_restart_during_call.raw")
    first_hangup = next(i for i, m in enumerate(msgs) if m.name in ("SoftHangupRequest", "Hangup"))
    lines, model, _, events = play(msgs[:first_hangup])
    assert seq(events, "bob") == [[NEWCALL, OFFERING, CONNID, CONNECTED]]
    reconnect = messages(NATIVE / "s11_pbx_restart_during_call_reconnect.raw")
    later = [e for m in reconnect for s in lines.feed(m.name, m.get, 500.0, model.view())
             for e in model.apply(s, 500.0)]
    assert later == []  # the new Asterisk says nothing about the old call...
    listed = [m for m in reconnect if m.name == "CoreShowChannel"]  # ...and lists no channel
    ended = [e for s in lines.resync([m.get for m in listed], 501.0, model.view(), since=500.0)
             for e in model.apply(s, 501.0)]
    assert seq(ended, "bob") == [[f"{DISCONNECTED} LINEDISCONNECTMODE_UNKNOWN", IDLE]]
    clean(lines, model)


def test_resync_catches_up_a_call_answered_while_away_and_keeps_channels_heard_since():
    msgs = messages(NATIVE / "s01_inbound_ringgroup_answered.raw")
    ringing = next(i for i, m in enumerate(msgs) if m.name == "Newstate" and m.get("ChannelState") == "6")
    lines, model, _, _ = play(msgs[:ringing])
    assert {model.view().state(uid) for uid in model.legs} == {OFFERING}
    listed = _listed(msgs, next(i for i, m in enumerate(msgs) if m.name == "BridgeEnter") + 2)
    # bob answered while we were away; bobbett's leg is gone but was heard of after the link came back
    events = [e for s in lines.resync([m.get for m in listed], 1000.0, model.view(), since=0.0)
              for e in model.apply(s, 1000.0)]
    assert seq(events, "bob") == [[CONNID, CONNECTED]]
    assert seq(events, "bobbett") == []
    events = [e for s in lines.resync([m.get for m in listed], 1001.0, model.view()) for e in model.apply(s, 1001.0)]
    assert seq(events, "bobbett") == [[f"{DISCONNECTED} LINEDISCONNECTMODE_UNKNOWN", IDLE]]


def test_adopt_a_call_the_phone_placed_from_its_application():
    item = ev("CoreShowChannel", Channel="PJSIP/201-00000020", Uniqueid="9.20", ChannelState="6",
              CallerIDNum="201", CallerIDName="bob", ConnectedLineNum="203", ConnectedLineName="alice",
              Exten="203", Application="Dial")
    lines, model = D.DeviceLines(LAB), CallModel(boot_id="test")
    events = [e for s in lines.resync([item.get], 0.0, model.view()) for e in model.apply(s, 0.0)]
    assert seq(events, "bob") == [[NEWCALL, CONNECTED]]
    bob = last(events, "bob")
    assert (bob["callerid"], bob["calledid"], bob["connectedid"], bob["origin"]) == ("201", "203", "203", OUTBOUND)


# -- hand-made adversarial events (labelled: shapes of the real captures, values invented) ------


def test_handmade_a_local_channel_named_like_the_device_is_not_the_device():
    """Local/201@plain-phones;1/;2 is a Local pair whose resource happens to be 201: not PJSIP/201."""
    local = [dict(Channel=f"Local/201@plain-phones-00000030;{half}", Uniqueid=f"9.3{half}", ChannelState="4",
                  CallerIDNum="0301234567", Exten="201") for half in (1, 2)]
    msgs = [ev("Newchannel", **local[0]), ev("Newchannel", **local[1]),
            ev("DialBegin", **CALLER, Dest_Channel=local[0]["Channel"], Dest_Uniqueid="9.31"),
            ev("Newstate", **{**local[0], "ChannelState": "6"}),
            ev("BridgeEnter", **local[1]), ev("Hold", **local[0]),
            ev("Hangup", **local[0], Cause="16"), ev("Hangup", **local[1], Cause="16")]
    lines, model, signals, events = play(msgs)
    assert signals == [] and events == [] and model.legs == {}


def test_handmade_a_queue_call_offers_on_the_member_device_only():
    """app_queue rings member Local/201@from-queue: its ;1/;2 create nothing, the PJSIP/201 leg is bob's."""
    queue = dict(Channel="PJSIP/trunk-00000040", Uniqueid="9.40", CallerIDNum="0301234567",
                 CallerIDName="Ext Caller", Exten="500")
    member1 = dict(Channel="Local/201@from-queue-00000041;1", Uniqueid="9.41")
    member2 = dict(Channel="Local/201@from-queue-00000041;2", Uniqueid="9.42", CallerIDNum="0301234567",
                   CallerIDName="Ext Caller", Exten="201")
    phone = dict(Dest_Channel="PJSIP/201-00000043", Dest_Uniqueid="9.43", Dest_ConnectedLineNum="0301234567")
    msgs = [ev("Newchannel", **member1, ChannelState="0"), ev("Newchannel", **member2, ChannelState="4"),
            ev("DialBegin", **queue, Dest_Channel=member1["Channel"], Dest_Uniqueid="9.41"),
            ev("Newchannel", Channel="PJSIP/201-00000043", Uniqueid="9.43", ChannelState="0", CallerIDNum="201"),
            ev("DialBegin", **member2, **phone),
            ev("Newstate", Channel="PJSIP/201-00000043", Uniqueid="9.43", ChannelState="6",
               ConnectedLineNum="0301234567", ConnectedLineName="Ext Caller"),
            ev("DialEnd", **member2, **phone, DialStatus="ANSWER"),
            ev("Newstate", **member1, ChannelState="6"),
            ev("DialEnd", **queue, Dest_Channel=member1["Channel"], Dest_Uniqueid="9.41", DialStatus="ANSWER"),
            ev("Hangup", Channel="PJSIP/201-00000043", Uniqueid="9.43", Cause="16"),
            ev("Hangup", **member2, Cause="16"), ev("Hangup", **member1, Cause="16")]
    lines, model, _, events = play(msgs)
    clean(lines, model)
    assert seq(events, "bob") == [[NEWCALL, OFFERING, CONNID, CONNECTED, f"{DISCONNECTED} {NORMAL}", IDLE]]
    bob = last(events, "bob")
    # the number the caller dialled (the queue's), not the member's Exten (issue 21 item 1)
    assert (bob["callerid"], bob["calleridname"], bob["calledid"]) == ("0301234567", "Ext Caller", "500")
    assert {e.call for e in events} == {model.by_uniqueid("9.43").handle}


def test_handmade_a_conference_join_is_the_phones_call_and_nobody_elses():
    """bob dials 800 -> ConfBridge; alice joins the same conference: each line sees only its own channel."""
    def joiner(n, number):
        return dict(Channel=f"PJSIP/{number}-0000005{n}", Uniqueid=f"9.5{n}", CallerIDNum=number, Exten="800")
    bob, alice = joiner(0, "201"), joiner(1, "203")
    announcer = dict(Channel="CBAnn/800-00000052;1", Uniqueid="9.52")
    msgs = []
    for who in (bob, alice):
        msgs += [ev("Newchannel", **who, ChannelState="4"), ev("Newstate", **{**who, "ChannelState": "6"}),
                 ev("ConfbridgeJoin", **who, Conference="800"), ev("BridgeEnter", **who, BridgeType="conference")]
    msgs += [ev("Newchannel", **announcer, ChannelState="6"), ev("BridgeEnter", **announcer),
             ev("Hangup", **bob, Cause="16"), ev("Hangup", **announcer, Cause="16"),
             ev("Hangup", **alice, Cause="16")]
    lines, model, _, events = play(msgs)
    clean(lines, model)
    # the conference answers the phone: an application that answers, so CONNECTED from DIALING,
    # connected to what the phone dialled (a conference is no party with an id of its own)
    for line in ("bob", "alice"):
        assert seq(events, line) == [[NEWCALL, DIALING, CONNID, CONNECTED, f"{DISCONNECTED} {NORMAL}", IDLE]]
        assert last(events, line)["calledid"] == last(events, line)["connectedid"] == "800"
    assert seq(events, "bobbett") == []


# -- a server restart at any point of every capture ------------------------------------------


def _restarted(msgs, cut):
    """Play ``msgs[:cut]``, save the model (as the call store does, through JSON), then a fresh model
    restores it (the device legs with their calls: no repair hook) and a fresh mapping resyncs on the
    channel list of that moment and plays the rest. Returns the model events of both runs, in order."""
    import json

    from asttapi_server.ami import normalise

    _, model, _, before = play(msgs[:cut])
    now = cut - 0.5
    fresh, lines = CallModel(boot_id="restarted"), D.DeviceLines(LAB)
    fresh.restore_state(json.loads(json.dumps(model.save_state())), now)
    listed = _listed(msgs, cut)
    after = [e for s in lines.resync([m.get for m in listed], now, fresh.view(), since=now)
             for e in fresh.apply(s, now)]
    after += fresh.resync(normalise.live_channels(listed), now)
    for n, msg in enumerate(msgs[cut:], start=cut):
        after += [e for s in lines.feed(msg.name, msg.get, float(n), fresh.view()) for e in fresh.apply(s, float(n))]
    return before + after, lines, fresh


def _per_call(events):
    """Each call's (line, Uniqueid) -> its client-visible events, handles left out (a restart keeps them;
    calls born after it get new ones)."""
    out: dict[tuple, list] = {}
    for e in events:
        if e.msg != "LINE_LINEDEVSTATE":
            out.setdefault((e.line, e.callinfo.get("uniqueid")), []).append((e.msg, e.param, e.mode, e.synthetic))
    return out


def _windows(msgs):
    """Cuts where a restart cannot be seamless (docs/device-lines.md, "A server restart"): after a
    device channel was transferred away, a Dial it rang (or the queue's ring of the Local member that
    rang it) ended unanswered, or another phone picked it up, up to its Hangup; and from a Dial of a
    phone that then refuses it without ringing (busy, do-not-disturb)."""
    starts: dict[str, int] = {}
    out: set[int] = set()
    offered: dict[str, int] = {}  # device channel -> where its Dial began, while it has not rung
    member_of: dict[str, str] = {}  # device channel -> the channel whose Dial rang it
    for i, m in enumerate(msgs):
        if m.get("Result") == "Success" and m.name in ("BlindTransfer", "AttendedTransfer"):
            for key in ("TransfererChannel", "OrigTransfererChannel", "SecondTransfererChannel"):
                if D.device_of(m.get(key)):
                    starts.setdefault(m.get(key), i + 1)
        dest = m.get("DestChannel") or ""
        if m.name == "DialBegin" and D.device_of(dest):
            offered.setdefault(dest, i + 1)
            member_of[dest] = m.get("Channel") or ""
        if m.name == "Newstate" and m.get("ChannelState") == "5":
            offered.pop(m.get("Channel"), None)
        if m.name == "DialEnd" and m.get("DialStatus") != "ANSWER" and D.device_of(dest):
            starts.setdefault(dest, offered.get(dest, i + 1) if m.get("DialStatus") == "BUSY" else i + 1)
        if m.name == "DialEnd" and m.get("DialStatus") != "ANSWER" and dest.endswith(";1"):
            for phone, member in member_of.items():
                if member == dest[:-1] + "2":
                    starts.setdefault(phone, i + 1)
        if m.name == "Pickup" and D.device_of(m.get("TargetChannel")):
            starts.setdefault(m.get("TargetChannel"), i + 1)
        if m.name == "Hangup" and m.get("Channel") in starts:
            out.update(range(starts.pop(m.get("Channel")), i + 1))
    return out


@pytest.mark.parametrize("name", [p.stem for p in sorted(NATIVE.glob("s*.raw"))])
def test_a_restart_at_any_point_changes_nothing_clients_see(name):
    """Every cut of every capture: the restored calls carry on under their handles exactly as an
    uninterrupted run (no second LINE_NEWCALL, no state read off the channel list, the same end),
    but in the known windows."""
    msgs = messages(NATIVE / f"{name}.raw")
    _, _, _, whole = play(msgs)
    want = _per_call(whole)
    windows = _windows(msgs)
    differ = []
    for cut in range(len(msgs) + 1):
        events, lines, model = _restarted(msgs, cut)
        if _per_call(events) != want:
            differ.append(cut)
        elif cut not in windows:
            clean(lines, model)
    assert set(differ) <= windows, differ


def test_a_restored_leg_whose_channel_asterisk_lists_under_another_name_is_not_followed():
    """Issue 22 item 8: a hand-edited call store gives a live Uniqueid another device's
    channel; the resync lists that Uniqueid with its real channel, so the restored leg
    ends (with its events) instead of standing for the other phone's channel."""
    model, lines = CallModel(boot_id="test"), D.DeviceLines(LAB)
    model.restore_state({"format": "asttapi-calls", "version": 1, "next_handle": 2, "calls": [{
        "handle": 1, "uniqueid": "1795674354.5", "uniqueids": ["1795674354.5"], "channel": "PJSIP/203-00000009",
        "channel_id": None, "owner_line": None, "owner_announced": False, "states": {"alice": CONNECTED},
        "modes": None, "callinfo": {}, "ci_version": 0, "ci_sent": None, "created": 0.0, "updated": 0.0,
        "hangup_at": None, "hangup_cause": None, "device": True}]}, 0.0)  # a store from before issue 25
    assert model.view().state("1795674354.5") == CONNECTED
    listed = [Message.from_items([("Event", "CoreShowChannel"), ("Channel", "PJSIP/201-00000004"),
                                  ("ChannelState", "6"), ("ChannelStateDesc", "Up"), ("Uniqueid", "1795674354.5"),
                                  ("Application", "AppDial")])]
    out = lines.resync([m.get for m in listed], 10.0, model.view())
    assert [(s.command.verb, s.uniqueid, s.channel) for s in tapi(out)] == [
        ("LINE_CALLSTATE", "1795674354.5", "PJSIP/203-00000009"),
        ("LINE_CALLSTATE", "1795674354.5", "PJSIP/203-00000009")]
    for s in out:
        model.apply(s, 10.0)
    assert "1795674354.5" not in model.legs and model.leg_channels == {}


@pytest.mark.parametrize("name", ["s01_inbound_ringgroup_answered", "s03_inbound_101_rejected", "s12_queue_rrmemory",
                                  "s15_followme_simring", "s16_group_pickup"])
def test_a_restart_in_a_dial_status_window_is_now_seamless(name):
    """Issue 25 item 3: the call store keeps each device channel's facts with its call (how the Dial that
    rang it ended, a pickup of it), so a restart between a Dial's end and the phone's Hangup gives the
    same mode as an uninterrupted run (before, the Hangup cause's mode: ``_windows`` still lists them)."""
    msgs = messages(NATIVE / f"{name}.raw")
    want = _per_call(play(msgs)[3])
    assert _windows(msgs), "the capture has such a window"
    assert [cut for cut in range(len(msgs) + 1) if _per_call(_restarted(msgs, cut)[0]) != want] == []


def test_an_events_copy_of_a_leg_has_every_field_and_the_model_keeps_no_state():
    """The mapping copies the legs an event touches field by field (core/device_lines.py ``_Event._get``):
    a field added to ``Leg`` must be copied too; what goes back to the model has no state of its own."""
    from asttapi_server.core.legs import LEG_FIELDS, Leg

    model = CallModel(boot_id="test")
    leg = Leg("9.8", "PJSIP/201-00000008", ("bob",), 1.0, 2.0, own=("201", "Bob"), exten="203", ringing=True,
              dial_status="NOANSWER", via="Local/x-1;2", picked=True, placed=True, connected=("1", "One"),
              far=("2", "Two"), dialling={"PJSIP/203-1": None}, info={"callerid": "201"})
    model.apply(DeviceNote("leg", "9.8", leg), 0.0)
    copy = D._Event(D.DeviceLines(LAB), model.view())._get("9.8")
    assert [getattr(copy, f) for f in LEG_FIELDS] == [getattr(leg, f) for f in LEG_FIELDS]
    assert copy.dialling is not leg.dialling and copy.info is not leg.info and copy.state == D.UNSEEN
    _, model, _, _ = play(messages(NATIVE / "s10_hold_unhold.raw")[:40])
    assert model.legs and all(not hasattr(leg, "state") for leg in model.legs.values())
