"""The demo's device line (line_3 = PJSIP/203): its flows through the real parser, device mapping and call model.

What the demo sends for the device is Asterisk's own channel events, never a
UserEvent; played through AMIParser -> DeviceLines -> CallModel, each flow must
give the TAPI sequence and call info a real phone's call gives (the same
checks tests/core/test_device_lines.py makes on the real captures).
"""

from __future__ import annotations

import pytest

from asttapi_server.ami.parser import AMIParser
from asttapi_server.core import CallModel
from asttapi_server.core import device_lines as D

from .helpers import Session, action, get, make_pbx, parse_blocks, run_until_idle

DEVICES = {"PJSIP/203": ["line_3"]}
NEWCALL = "LINE_NEWCALL"


def through_the_server(raw: bytes):
    """(model events, DeviceLines, model) of everything the demo sent, as the server maps it."""
    lines, model = D.DeviceLines(DEVICES), CallModel(boot_id="demo")
    events = []
    for n, message in enumerate(m for m in AMIParser().feed(raw) if m.kind == "event"):
        for signal in lines.feed(message.name, message.get, float(n), model.view()):
            events += model.apply(signal, float(n))
    return events, lines, model


def short(e) -> str:
    if e.msg == NEWCALL:
        return NEWCALL
    word = e.param.removeprefix("LINECALLSTATE_").removeprefix("LINECALLINFOSTATE_")
    if e.msg == "LINE_CALLINFO":
        word = "info:" + word
    mode = (e.mode or "").removeprefix("LINEDISCONNECTMODE_").removeprefix("LINEBUSYMODE_")
    return f"{word}({mode})" if mode else word


def calls(events, line="line_3") -> list[list[str]]:
    out: dict[int, list[str]] = {}
    for e in events:
        if e.line == line:
            out.setdefault(e.call, []).append(short(e))
    return list(out.values())


def final(events, line="line_3"):
    return [e for e in events if e.line == line][-1].callinfo


def play(kind, **kwargs):
    clock, engine, factory = make_pbx()
    s = Session(factory)
    s.login(events="on")
    flow = engine.play(kind, **kwargs)
    run_until_idle(clock)
    assert flow.finished and engine.channels == {} and engine.flows == []
    assert clock.getDelayedCalls() == []
    raw = s.raw()
    events, lines, model = through_the_server(raw)
    assert model.legs == {}  # nothing left behind
    assert [c for c in model._by_handle.values() if c.ended is None] == []
    assert model.stats["impossible"] == 0 and model.stats["synthetic_idle"] == 0
    blocks = parse_blocks(raw)
    assert not [b for b in blocks if get(b, "Event") == "UserEvent"], "a device line's call sent a UserEvent"
    return events, blocks


def test_inbound_answered_with_hold_and_resume():
    events, blocks = play("device_inbound", caller=("0301234567", "Ext Caller"), hold=1.0)
    assert calls(events) == [[NEWCALL, "OFFERING", "info:CONNECTEDID", "CONNECTED", "ONHOLD", "CONNECTED",
                              "DISCONNECTED(NORMAL)", "IDLE"]]
    newcall = events[0].callinfo  # the screen pop's data is in LINE_NEWCALL already
    assert (newcall["callerid"], newcall["calleridname"], newcall["calledid"]) == ("0301234567", "Ext Caller", "203")
    info = final(events)
    assert (info["connectedid"], info["connectedidname"], info["origin"]) == (
        "0301234567", "Ext Caller", "LINECALLORIGIN_EXTERNAL")
    names = [get(b, "Event") for b in blocks]
    for event in ("Newchannel", "NewConnectedLine", "DialBegin", "DialState", "DialEnd", "Newstate",
                  "BridgeEnter", "BridgeLeave", "Hold", "Unhold", "Hangup"):
        assert event in names, event
    hangup = next(b for b in blocks if get(b, "Event") == "Hangup" and get(b, "Channel").startswith("PJSIP/203-"))
    assert (get(hangup, "Cause"), get(hangup, "Cause-txt")) == ("16", "Normal Clearing")


def test_inbound_the_caller_gives_up():
    events, blocks = play("device_inbound", ending="gives_up")
    assert calls(events) == [[NEWCALL, "OFFERING", "DISCONNECTED(CANCELLED)", "IDLE"]]
    assert any(get(b, "Event") == "DialEnd" and get(b, "DialStatus") == "CANCEL" for b in blocks)


def test_inbound_rejected_by_the_user():
    events, _ = play("device_inbound", ending="reject")
    assert calls(events) == [[NEWCALL, "OFFERING", "DISCONNECTED(REJECT)", "IDLE"]]


def test_a_call_the_phone_places():
    events, _ = play("device_outbound")
    assert calls(events) == [[NEWCALL, "DIALING", "PROCEEDING", "RINGBACK", "info:CONNECTEDID", "CONNECTED",
                              "DISCONNECTED(NORMAL)", "IDLE"]]
    assert events[0].callinfo["callerid"] is None  # the user's own number is no caller to look up
    info = final(events)
    assert (info["callerid"], info["calleridname"], info["calledid"], info["connectedid"], info["origin"]) == (
        "203", "alice", "95551234", "95551234", "LINECALLORIGIN_OUTBOUND")


def test_a_call_the_phone_places_is_busy():
    events, blocks = play("device_busy")
    assert calls(events) == [[NEWCALL, "DIALING", "PROCEEDING", "BUSY(UNKNOWN)", "IDLE"]]
    assert final(events)["calledid"] == "95550000"
    phone = next(b for b in blocks if get(b, "Event") == "Hangup" and get(b, "Channel").startswith("PJSIP/203-"))
    assert (get(phone, "Cause"), get(phone, "Cause-txt")) == ("17", "User busy")


def click_to_dial(then=None):
    """An Originate of the device as the server's lineMakeCall sends it; ``then(s, clock)`` once it talks."""
    clock, engine, factory = make_pbx()
    s = Session(factory)
    s.login(events="on")
    s.send(action("Originate", ("ActionID", "o1"), ("Channel", "PJSIP/203"), ("Context", "plain-phones"),
                  ("Exten", "95551234"), ("Priority", "1"), ("Async", "true"), ("Timeout", "30000"),
                  ("ChannelId", "c2d-demo-1"), ("OtherChannelId", "c2d-demo-1-2"),
                  ("Variable", "TAPI_LINE=line_3"), ("Variable", "TAPI_CALL=7")))
    assert get(s.take()[0], "Message") == "Originate successfully queued"
    for _ in range(12):
        clock.advance(0.25)
    if then is not None:
        then(s, clock)
    run_until_idle(clock)
    assert engine.channels == {} and clock.getDelayedCalls() == []
    raw = s.raw()
    return (*through_the_server(raw), parse_blocks(raw))


def test_click_to_dial_rings_the_phone_first_like_the_s07_capture():
    events, lines, model, blocks = click_to_dial()
    assert calls(events) == [[NEWCALL, "DIALTONE", "info:CALLEDID", "PROCEEDING", "RINGBACK", "info:CONNECTEDID",
                              "CONNECTED", "DISCONNECTED(NORMAL)", "IDLE"]]
    assert {e.callinfo["uniqueid"] for e in events} == {"c2d-demo-1"}  # the Originate's ChannelId
    names = [get(b, "Event") for b in blocks]
    # s07's order: the phone rings and answers, then OriginateResponse, then the number is dialled
    assert names.index("OriginateResponse") < [i for i, b in enumerate(blocks) if get(b, "Event") == "DialBegin"
                                                and get(b, "Channel")][0]
    response = blocks[names.index("OriginateResponse")]
    assert (get(response, "ActionID"), get(response, "Response"), get(response, "Uniqueid"),
            get(response, "Channel").startswith("PJSIP/203-")) == ("o1", "Success", "c2d-demo-1", True)
    first = next(b for b in blocks if get(b, "Event") == "DialBegin")
    assert get(first, "Channel") is None and get(first, "DestUniqueid") == "c2d-demo-1"


def test_blind_transfer_of_the_device_call_ends_it_on_the_line():
    def transfer(s, clock):
        s.send(action("BlindTransfer", ("ActionID", "t1"), ("Channel", "c2d-demo-1"),
                      ("Context", "plain-phones"), ("Exten", "201")))
        assert get(s.take()[-1], "Message") == "Transfer succeeded"

    events, _, _, blocks = click_to_dial(transfer)
    assert calls(events) == [[NEWCALL, "DIALTONE", "info:CALLEDID", "PROCEEDING", "RINGBACK", "info:CONNECTEDID",
                              "CONNECTED", "IDLE"]]
    event = next(b for b in blocks if get(b, "Event") == "BlindTransfer")
    assert (get(event, "TransfererUniqueid"), get(event, "Extension"), get(event, "Result")) == (
        "c2d-demo-1", "201", "Success")


def test_hangup_action_on_the_ringing_phone_ends_its_call():
    clock, engine, factory = make_pbx()
    s = Session(factory)
    s.login(events="on")
    flow = engine.play("device_inbound", ring=30.0)
    clock.advance(1)
    s.send(action("Hangup", ("ActionID", "h"), ("Channel", flow.phone.name)))
    run_until_idle(clock)
    events, lines, model = through_the_server(s.raw())
    assert calls(events) == [[NEWCALL, "OFFERING", "DISCONNECTED(NORMAL)", "IDLE"]]
    assert model.legs == {}


def test_the_device_loop_plays_every_kind_beside_the_dialplan_loop():
    clock, engine, factory = make_pbx()
    s = Session(factory)
    s.login(events="on")
    engine.start()
    for _ in range(480):  # two minutes of demo
        clock.advance(0.25)
    engine.stop()
    assert clock.getDelayedCalls() == [] and engine.channels == {}
    events, _, _ = through_the_server(s.raw())
    got = calls(events)
    assert got[0][:2] == [NEWCALL, "OFFERING"]
    first = next(e for e in events if e.line == "line_3")
    assert first.callinfo["callerid"]
    kinds = {tuple(c) for c in got}
    assert any("ONHOLD" in c for c in kinds)
    assert any("DISCONNECTED(CANCELLED)" in c for c in kinds)
    assert any("BUSY(UNKNOWN)" in c for c in kinds)
    assert any("DIALING" in c for c in kinds)
    # and the dialplan lines kept playing with their UserEvents
    texts = [get(b, "TAPIEVENT") for b in parse_blocks(s.raw()) if get(b, "Event") == "UserEvent"]
    assert "LINE_NEWCALL line_1" in texts and not any("line_3" in t for t in texts)


def test_the_first_device_call_rings_soon_after_start():
    clock, engine, factory = make_pbx()
    s = Session(factory)
    s.login(events="call")
    engine.start()
    clock.advance(engine.timing.first_call * 2)
    events, _, _ = through_the_server(s.raw())
    assert calls(events) and calls(events)[0][:2] == [NEWCALL, "OFFERING"]
    engine.stop()


def test_an_engine_without_devices_plays_no_device_flow():
    from twisted.internet.task import Clock

    from asttapi_server.demo.engine import DemoEngine

    engine = DemoEngine(Clock(), phones={"Local/bob@phones": "line_1"})
    assert engine.devices == {}
    with pytest.raises(ValueError, match="no device lines"):
        engine.play("device_inbound")
    with pytest.raises(ValueError, match="unknown ending"):
        DemoEngine(Clock()).play("device_inbound", ending="maybe")


def test_a_queue_with_a_local_member_and_a_withheld_caller():
    """FreePBX-style queue 400, member Local/203@from-queue/n; the caller withholds the number. The
    events carry the number (Asterisk's do), the presentation reads say withheld; the line is offered
    the queue's number (the Local chain's root), not the member's 203."""
    clock, engine, factory = make_pbx()
    s = Session(factory)
    s.login(events="on")
    flow = engine.play("device_queue", caller=("0301234567", "Ext Caller"), withheld=True)
    clock.advance(0.5)  # ringing: what Getvar answers, per channel, as Asterisk's manager does
    phone = flow.phone.name
    member = next(ch.name for ch in engine.channels.values() if ch.name.startswith("Local/203@from-queue-")
                  and ch.name.endswith(";2"))
    for channel, variable, value in ((phone, "CONNECTEDLINE(pres)", "prohib_passed_screen"),
                                     (member, "CALLERID(pres)", "prohib_passed_screen"),
                                     (phone, "CALLERID(pres)", "allowed_not_screened"),
                                     (phone, "TAPI_NOSUCHVAR", ""),
                                     ("PJSIP/999-00000000", "CALLERID(pres)", None)):
        s.take()
        s.send(action("Getvar", ("ActionID", "g"), ("Channel", channel), ("Variable", variable)))
        (answer,) = s.take()
        if value is None:
            assert (get(answer, "Response"), get(answer, "Message")) == ("Error", "No such channel")
        else:
            assert (get(answer, "Response"), get(answer, "Variable"), get(answer, "Value")) == (
                "Success", variable, value)
    run_until_idle(clock)
    assert flow.finished and engine.channels == {} and clock.getDelayedCalls() == []
    events, lines, model = through_the_server(s.raw())
    assert model.legs == {} and model.stats["impossible"] == 0
    assert calls(events) == [[NEWCALL, "OFFERING", "info:CONNECTEDID", "CONNECTED", "DISCONNECTED(NORMAL)", "IDLE"]]
    info = final(events)
    assert (info["calledid"], info["origin"]) == ("400", "LINECALLORIGIN_EXTERNAL")
    blocks = parse_blocks(s.raw())
    pres = {get(b, "CID-CallingPres") for b in blocks if get(b, "Event") == "NewCallerid"}
    assert pres == {"33 (Presentation Prohibited, Passed Screen)"}
