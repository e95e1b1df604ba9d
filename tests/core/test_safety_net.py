"""Grace-period IDLE, resync, max_age, linger, link state, annotate, timers."""

import pytest

from asttapi_server.core import CallModel
from asttapi_server.core.causes import mode_for_cause, mode_for_originate_reason
from tests.core.helpers import brief, sig

UID = "1795674354.1"


def live_call(m, uid=UID, line="line_1", t=0.0, state="LINECALLSTATE_CONNECTED"):
    m.apply(sig(f"LINE_NEWCALL {line}", uid), t)
    m.apply(sig(f"LINE_CALLSTATE {state}", uid), t)
    return m.by_uniqueid(uid)


def test_hangup_without_idle_gets_synthetic_idle_after_grace():
    m = CallModel(hangup_grace=5.0, linger=30.0)
    call = live_call(m)
    assert m.next_deadline() == 14400.0  # max_age
    assert m.channel_hangup(UID, 16, 10.0) == []
    assert m.next_deadline() == 15.0
    assert m.tick(14.99) == []
    events = m.tick(15.0)
    assert brief(events) == [
        ("LINE_CALLSTATE", "line_1", call.handle, "LINECALLSTATE_DISCONNECTED", "LINEDISCONNECTMODE_NORMAL"),
        ("LINE_CALLSTATE", "line_1", call.handle, "LINECALLSTATE_IDLE", None),
    ]
    assert all(e.synthetic for e in events) and m.stats["synthetic_idle"] == 1
    assert m.get(call.handle).ended == 15.0 and m.next_deadline() == 45.0
    assert m.tick(45.0) == [] and m.tracked == 0 and m.next_deadline() is None


def test_idle_within_grace_cancels_the_safety_net():
    m = CallModel(hangup_grace=5.0, linger=30.0)
    live_call(m)
    m.channel_hangup(UID, 16, 10.0)
    assert [e.synthetic for e in m.apply(sig("LINE_CALLSTATE LINECALLSTATE_IDLE", UID), 12.0)] == [False]
    assert m.next_deadline() == 42.0
    assert m.tick(100.0) == [] and m.tracked == 0 and m.stats["synthetic_idle"] == 0


def test_hangup_of_another_channel_or_twice_changes_nothing():
    m = CallModel(hangup_grace=5.0)
    live_call(m)
    assert m.channel_hangup("1795674354.2", 26, 1.0) == []
    assert m.next_deadline() == 14400.0
    m.channel_hangup(UID, 17, 2.0)
    m.channel_hangup(UID, 16, 3.0)  # the first cause and time count
    assert m.tick(7.0)[0].mode == "LINEDISCONNECTMODE_BUSY"


def test_grace_zero_ends_at_once():
    m = CallModel(hangup_grace=0, linger=0)
    live_call(m)
    assert [e.param for e in m.channel_hangup(UID, 19, 1.0)] == [
        "LINECALLSTATE_DISCONNECTED", "LINECALLSTATE_IDLE"]
    assert m.tracked == 0


def test_synthetic_teardown_respects_what_each_line_already_saw():
    m = CallModel(hangup_grace=1.0)
    m.apply(sig("LINE_NEWCALL line_1", UID), 0.0)
    m.apply(sig("LINE_NEWCALL line_2", UID), 0.0)
    m.apply(sig("LINE_NEWCALL line_3", UID), 0.0)
    m.apply(sig("[line_2] LINE_CALLSTATE LINECALLSTATE_DISCONNECTED", UID), 0.5)
    m.apply(sig(f"[~{UID}&line_3] LINE_CALLSTATE LINECALLSTATE_IDLE"), 0.5)
    m.channel_hangup(UID, 21, 1.0)
    assert [(e.line, e.param, e.mode) for e in m.tick(2.0)] == [
        ("line_1", "LINECALLSTATE_DISCONNECTED", "LINEDISCONNECTMODE_REJECT"),
        ("line_1", "LINECALLSTATE_IDLE", None),
        ("line_2", "LINECALLSTATE_IDLE", None),
    ]


def test_late_idle_after_synthetic_one_is_a_quiet_duplicate():
    m = CallModel(hangup_grace=1.0)
    live_call(m)
    m.channel_hangup(UID, 16, 1.0)
    m.tick(2.0)
    assert m.apply(sig("LINE_CALLSTATE LINECALLSTATE_IDLE", UID), 3.0) == []
    assert m.apply(sig("[line_1] LINE_CALLSTATE LINECALLSTATE_IDLE", UID), 3.0) == []
    assert m.stats["impossible"] == 0 and m.stats["unknown_call"] == 0


@pytest.mark.parametrize("cause,mode", [
    (16, "NORMAL"), (17, "BUSY"), (18, "NOANSWER"), (19, "NOANSWER"), (21, "REJECT"),
    (1, "BADADDRESS"), (28, "BADADDRESS"), (34, "CONGESTION"), (42, "CONGESTION"),
    (26, "PICKUP"), (27, "OUTOFORDER"), (38, "OUTOFORDER"), (22, "NUMBERCHANGED"),
    (41, "TEMPFAILURE"), (0, "UNKNOWN"), (127, "UNKNOWN"), (None, "UNKNOWN"), (999, "UNKNOWN"),
])
def test_cause_mapping(cause, mode):
    assert mode_for_cause(cause) == "LINEDISCONNECTMODE_" + mode
    m = CallModel(hangup_grace=1.0)
    live_call(m)
    m.channel_hangup(UID, cause, 0.0)
    assert m.tick(1.0)[0].mode == "LINEDISCONNECTMODE_" + mode


@pytest.mark.parametrize("reason,mode", [(0, "UNREACHABLE"), (1, "REJECT"), (3, "NOANSWER"),
                                         (5, "BUSY"), (8, "CONGESTION"), (None, "UNKNOWN"), (42, "UNKNOWN")])
def test_originate_reason_mapping(reason, mode):
    assert mode_for_originate_reason(reason) == "LINEDISCONNECTMODE_" + mode


def test_resync_ends_calls_whose_channels_are_gone():
    m = CallModel(linger=0)
    a = live_call(m, "1.1", "line_1")
    b = live_call(m, "1.2", "line_2")
    c = m.make_call("line_3", "200", owner="x", now=0.0)
    m.originate_response(c.channel_id, "1.3", None, True, 0.5)  # known by its second uniqueid
    events = m.resync(["1.2", "1.3", "9.9"], 1.0)
    assert brief(events) == [
        ("LINE_CALLSTATE", "line_1", a.handle, "LINECALLSTATE_DISCONNECTED", "LINEDISCONNECTMODE_UNKNOWN"),
        ("LINE_CALLSTATE", "line_1", a.handle, "LINECALLSTATE_IDLE", None),
    ]
    assert all(e.synthetic for e in events)
    assert m.get(a.handle) is None and m.get(b.handle) is b and m.get(c.handle) is c
    assert m.resync(set(), 2.0) and m.tracked == 0


def test_max_age_is_the_last_resort():
    m = CallModel(max_age=100.0, linger=10.0)
    call = live_call(m, t=5.0)
    assert m.next_deadline() == 105.0
    assert m.tick(104.0) == []
    events = m.tick(105.0)
    assert [(e.param, e.mode, e.synthetic) for e in events] == [
        ("LINECALLSTATE_DISCONNECTED", "LINEDISCONNECTMODE_UNKNOWN", True),
        ("LINECALLSTATE_IDLE", None, True)]
    assert m.get(call.handle) is call
    m.tick(115.0)
    assert m.tracked == 0


def test_max_age_for_an_app_call_that_never_got_an_answer():
    m = CallModel(max_age=60.0, linger=0)
    call = m.make_call("line_1", "200", owner="x", now=0.0)
    assert [e.line for e in m.tick(60.0)] == ["line_1", "line_1"] and m.get(call.handle) is None


def test_record_lingers_after_idle_then_is_freed():
    m = CallModel(linger=30.0)
    call = live_call(m)
    m.apply(sig("SET CALLERID 0301234567", UID), 1.0)
    m.apply(sig("LINE_CALLSTATE LINECALLSTATE_IDLE", UID), 2.0)
    assert m.get(call.handle) is call and m.tracked == 1
    snap = m.snapshot(call, "line_1")
    assert snap["state"] == "LINECALLSTATE_IDLE" and snap["callinfo"]["callerid"] == "0301234567"
    assert snap["ended"] == 2.0 and snap["lines"] == []
    assert m.calls_on_line("line_1") == []
    assert m.tick(31.99) == [] and m.tracked == 1
    m.tick(32.0)
    assert m.get(call.handle) is None and m.by_uniqueid(UID) is None and m.tracked == 0


def test_linger_zero_frees_at_idle():
    m = CallModel(linger=0)
    live_call(m)
    m.apply(sig("LINE_CALLSTATE LINECALLSTATE_IDLE", UID), 1.0)
    assert m.tracked == 0 and m.next_deadline() is None


def test_annotate_sends_callinfo_other_to_tracking_lines():
    m = CallModel()
    live_call(m, line="line_1")
    m.apply(sig("LINE_NEWCALL line_2", UID), 0.0)
    call = m.by_uniqueid(UID)
    contact = {"name": "Ada", "crm_id": 7}
    events = m.annotate(call.handle, "contact", contact, 1.0)
    assert brief(events) == [
        ("LINE_CALLINFO", "line_1", call.handle, "LINECALLINFOSTATE_OTHER", None),
        ("LINE_CALLINFO", "line_2", call.handle, "LINECALLINFOSTATE_OTHER", None)]
    assert events[0].callinfo["contact"] == contact
    assert m.annotate(call.handle, "contact", contact, 2.0) == []  # unchanged
    assert m.annotate(999, "contact", contact, 2.0) == []
    m.apply(sig("LINE_CALLSTATE IDLE", UID), 3.0)
    assert m.annotate(call.handle, "contact", {"name": "Late"}, 4.0) == []  # recorded, not sent
    assert m.get(call.handle).callinfo["contact"] == {"name": "Late"}


def test_heap_stays_bounded_over_many_calls():
    m = CallModel(linger=1.0)
    for i in range(20000):
        uid = f"9.{i}"
        live_call(m, uid, t=float(i))
        m.channel_hangup(uid, 16, float(i))
        m.apply(sig("LINE_CALLSTATE LINECALLSTATE_IDLE", uid), float(i))
        m.tick(float(i))
    assert m.tracked <= 2
    assert len(m._heap) <= 2 * m.tracked + 1024
    m.tick(1e9)
    assert m.tracked == 0 and m.next_deadline() is None


def test_calls_on_line_and_by_uniqueid():
    m = CallModel()
    a = live_call(m, "1.1", "line_1")
    b = live_call(m, "1.2", "line_1")
    live_call(m, "1.3", "line_2")
    assert m.calls_on_line("line_1") == [a, b] and m.calls_on_line("nope") == []
    assert m.by_uniqueid("1.2") is b
