"""The flows the demo plays: TAPIEVENT sequences, timing, the loop, clean ends."""

from __future__ import annotations

from asttapi_server.demo.scenarios import CALLERS, Timing

from .helpers import Session, get, make_pbx, run_until_idle, tapievents


def play(kind, **kwargs):
    clock, engine, factory = make_pbx()
    s = Session(factory)
    s.login(events="on")
    flow = engine.play(kind, **kwargs)
    run_until_idle(clock)
    assert flow.finished
    assert engine.channels == {} and engine.flows == []
    assert clock.getDelayedCalls() == []
    return flow, s.take()


def test_inbound_ring_group():
    flow, msgs = play("inbound", caller=("0301234567", "Ext Caller"))
    uid = flow.dialplan.uniqueid
    events = tapievents(msgs)
    bob_uid = events[6][0]
    assert events == [
        (uid, "LINE_NEWCALL line_1"),
        (uid, "LINE_NEWCALL line_2"),
        (uid, "LINE_CALLSTATE LINECALLSTATE_OFFERING"),
        (uid, "SET CALLERID 0301234567"),
        (uid, "SET CALLERIDNAME Ext Caller"),
        (uid, "LINE_CALLINFO LINECALLINFOSTATE_CALLERID"),
        (bob_uid, f"[~{uid}&line_1] LINE_CALLSTATE LINECALLSTATE_CONNECTED"),
        (bob_uid, f"[~{uid}&!line_1] LINE_CALLSTATE LINECALLSTATE_HANGUP"),
        (uid, "LINE_CALLSTATE LINECALLSTATE_IDLE"),
    ]
    connected = next(m for m in msgs if "CONNECTED" in (get(m, "TAPIEVENT") or ""))
    assert get(connected, "Channel").startswith("Local/bob@phones-")
    assert get(connected, "Context") == "tapi"
    assert get(connected, "Linkedid") == uid
    # bobbett was cancelled with "Answered elsewhere", bob and the trunk cleared normally
    causes = {get(m, "Channel").split("-")[0]: get(m, "Cause") for m in msgs
              if get(m, "Event") == "Hangup"}
    assert causes == {"Local/bobbett@phones": "26", "Local/bob@phones": "16", "PJSIP/trunk": "16"}
    names = [get(m, "Event") for m in msgs]
    for noise in ("Newchannel", "Newexten", "VarSet", "Newstate", "DialBegin", "DialEnd",
                  "HangupRequest", "DeviceStateChange", "NewCallerid"):
        assert noise in names, noise


def test_inbound_without_a_name_sends_no_calleridname():
    flow, msgs = play("inbound", caller=("+442079460959", None))
    texts = [t for _, t in tapievents(msgs)]
    assert "SET CALLERID +442079460959" in texts
    assert not any(t.startswith("SET CALLERIDNAME") for t in texts)


def test_callers_rotate_and_ring_time_varies():
    clock, engine, factory = make_pbx()
    flows = [engine.play("inbound") for _ in range(4)]
    assert [f.caller for f in flows] == [CALLERS[0], CALLERS[1], CALLERS[2], CALLERS[0]]
    assert [f.ring for f in flows] == [3.0, 2.0, 1.0, 3.0]
    assert ("0301234567", "Ext Caller") in CALLERS
    assert {c[0] for c in CALLERS} == {"0301234567", "02079460958", "+442079460959"}
    engine.stop()
    assert clock.getDelayedCalls() == []


def test_outbound_9nxxxxxx():
    flow, msgs = play("outbound")
    uid = flow.dialplan.uniqueid
    events = tapievents(msgs)
    assert events[:7] == [
        (uid, "LINE_NEWCALL line_1"),
        (uid, "SET CALLORIGIN LINECALLORIGIN_OUTBOUND"),
        (uid, "SET CALLEDID 95551234"),
        (uid, "LINE_CALLINFO LINECALLINFOSTATE_CALLEDID"),
        (uid, "LINE_CALLSTATE LINECALLSTATE_DIALTONE"),
        (uid, "LINE_CALLSTATE LINECALLSTATE_DIALING"),
        (uid, "LINE_CALLSTATE LINECALLSTATE_PROCEEDING"),
    ]
    assert events[7][1] == f"[~{uid}] LINE_CALLSTATE LINECALLSTATE_CONNECTED"
    assert events[8] == (uid, "LINE_CALLSTATE LINECALLSTATE_IDLE")
    assert len(events) == 9
    newcall = next(m for m in msgs if get(m, "TAPIEVENT") == "LINE_NEWCALL line_1")
    assert (get(newcall, "Context"), get(newcall, "Exten")) == ("trunklocal", "95551234")
    assert not [m for m in msgs if get(m, "Event") == "OriginateResponse"]


def test_busy():
    flow, msgs = play("busy")
    uid = flow.dialplan.uniqueid
    assert tapievents(msgs) == [
        (uid, "LINE_NEWCALL line_1"),
        (uid, "SET CALLORIGIN LINECALLORIGIN_OUTBOUND"),
        (uid, f"SET CALLEDID {flow.number}"),
        (uid, "LINE_CALLINFO LINECALLINFOSTATE_CALLEDID"),
        (uid, "LINE_CALLSTATE LINECALLSTATE_DIALTONE"),
        (uid, "LINE_CALLSTATE LINECALLSTATE_DIALING"),
        (uid, "LINE_CALLSTATE LINECALLSTATE_PROCEEDING"),
        (uid, "LINE_CALLSTATE LINECALLSTATE_BUSY"),
        (uid, "LINE_CALLSTATE LINECALLSTATE_IDLE"),
    ]
    assert any(get(m, "Event") == "Hangup" and get(m, "Cause") == "17"
               and get(m, "Cause-txt") == "User busy" for m in msgs)
    assert any(get(m, "Event") == "DialEnd" and get(m, "DialStatus") == "BUSY" for m in msgs)


def test_first_inbound_call_within_three_seconds_then_the_loop_goes_on():
    clock, engine, factory = make_pbx()
    s = Session(factory)
    s.login(events="user")
    engine.start()
    clock.advance(2.0)
    first = tapievents(s.take())
    assert [t for _, t in first][:3] == ["LINE_NEWCALL line_1", "LINE_NEWCALL line_2",
                                         "LINE_CALLSTATE LINECALLSTATE_OFFERING"]
    assert "SET CALLERID 0301234567" in [t for _, t in first]
    seen = []
    for _ in range(400):
        clock.advance(0.25)
        seen += [t for _, t in tapievents(s.take())]
    assert seen.count("LINE_CALLSTATE LINECALLSTATE_BUSY") >= 1
    assert seen.count("LINE_CALLSTATE LINECALLSTATE_DIALTONE") >= 2
    assert seen.count("LINE_NEWCALL line_2") >= 1
    engine.stop()
    assert clock.getDelayedCalls() == []
    assert engine.channels == {}


def test_fast_timing_scales_the_flow():
    clock, engine, factory = make_pbx(Timing.fast())
    flow = engine.play("inbound")
    clock.advance(0.5)
    for _ in range(10):
        clock.advance(0.05)
    assert flow.finished


def test_uniqueids_look_like_asterisks():
    flow, msgs = play("outbound")
    uids = {get(m, "Uniqueid") for m in msgs if get(m, "Uniqueid")}
    epoch = None
    for uid in uids:
        sec, _, seq = uid.partition(".")
        assert sec.isdigit() and seq.isdigit(), uid
        epoch = epoch or sec
    assert len(uids) == 4


def test_stop_cancels_everything():
    clock, engine, factory = make_pbx()
    engine.start()
    clock.advance(2.5)
    assert engine.channels
    engine.stop()
    assert clock.getDelayedCalls() == []
    assert engine.channels == {} and engine.flows == []


def test_a_newcomer_sees_an_offering_within_15_seconds_whenever_they_connect():
    """The looping demo never goes 15 s without a call OFFERING on line_1.

    lineOpen announces a call that is already ringing, so a client that
    connects at any moment sees LINE_NEWCALL + OFFERING (with caller id)
    within the longest stretch without one; issue 2 checks 15 s.
    """
    from twisted.internet.task import Clock

    from asttapi_server.demo.engine import DemoEngine
    from asttapi_server.demo.scenarios import Timing

    clock = Clock()
    engine = DemoEngine(clock, timing=Timing())
    windows: list[list[float]] = []

    def listener(_privilege, data: bytes) -> None:
        for line in data.split(b"\r\n"):
            if not line.startswith(b"TAPIEVENT"):
                continue
            if b"LINECALLSTATE_OFFERING" in line:
                windows.append([clock.seconds(), None])
            elif b"&line_1] LINE_CALLSTATE LINECALLSTATE_CONNECTED" in line and windows and windows[-1][1] is None:
                windows[-1][1] = clock.seconds()

    engine.add_listener(listener)
    engine.start()
    for _ in range(3000):  # five minutes of demo
        clock.advance(0.1)
    engine.stop()
    assert windows[0][0] <= 3.0  # the first call rings right after start-up
    closed = [w for w in windows if w[1] is not None]
    assert len(closed) >= 15
    longest = max(b[0] - a[1] for a, b in zip(closed, closed[1:]))
    assert longest < 13.0
