"""The manual's flows, event by event (signals built by hand from the manual's dialplan)."""

from asttapi_server.core import CallModel
from tests.core.helpers import brief, per_line, sig

UID = "1795674354.1"  # an inbound channel's Uniqueid (as in capture 05)


def model(**kw):
    return CallModel(boot_id="test", **kw)


def run(m, texts, uid=UID, t0=10.0):
    events = []
    for i, text in enumerate(texts):
        events += m.apply(sig(text, uid), t0 + i)
    return events


INBOUND = [  # [macro-stdexten] for a ring group bob & bobbett, then [macro-tapi] on bob's leg, then h
    "LINE_NEWCALL sip/bob",
    "LINE_NEWCALL sip/bobbett",
    "LINE_CALLSTATE LINECALLSTATE_OFFERING",
    "SET CALLERID 0301234567",
    "LINE_CALLINFO LINECALLINFOSTATE_CALLERID",
    f"[~{UID}&sip/bob] LINE_CALLSTATE LINECALLSTATE_CONNECTED",
    f"[~{UID}&!sip/bob] LINE_CALLSTATE LINECALLSTATE_HANGUP",
    "LINE_CALLSTATE LINECALLSTATE_IDLE",
]


def test_inbound_ring_group_bob_and_bobbett():
    m = model()
    events = run(m, INBOUND)
    assert brief(events) == [
        ("LINE_NEWCALL", "sip/bob", 1, None, None),
        ("LINE_NEWCALL", "sip/bobbett", 1, None, None),
        ("LINE_CALLSTATE", "sip/bob", 1, "LINECALLSTATE_OFFERING", None),
        ("LINE_CALLSTATE", "sip/bobbett", 1, "LINECALLSTATE_OFFERING", None),
        ("LINE_CALLINFO", "sip/bob", 1, "LINECALLINFOSTATE_CALLERID", None),
        ("LINE_CALLINFO", "sip/bobbett", 1, "LINECALLINFOSTATE_CALLERID", None),
        ("LINE_CALLSTATE", "sip/bob", 1, "LINECALLSTATE_CONNECTED", None),
        # HANGUP is not a TAPI state: the other ring-group member sees DISCONNECTED
        ("LINE_CALLSTATE", "sip/bobbett", 1, "LINECALLSTATE_DISCONNECTED", "LINEDISCONNECTMODE_NORMAL"),
        ("LINE_CALLSTATE", "sip/bob", 1, "LINECALLSTATE_IDLE", None),
        ("LINE_CALLSTATE", "sip/bobbett", 1, "LINECALLSTATE_IDLE", None),
    ]
    # the NEWCALL already carries what is known; CALLINFO carries the new caller id
    assert events[0].callinfo["uniqueid"] == UID and events[0].callinfo["callerid"] is None
    assert events[4].callinfo["callerid"] == "0301234567"
    assert all(not e.synthetic and e.owner is None for e in events)
    call = m.get(1)
    assert call.ended == 17.0 and call.lines == ()
    assert m.calls_on_line("sip/bob") == [] and m.calls_on_line("sip/bobbett") == []


def test_manual_single_line_inbound():
    m = model()
    events = run(m, [
        "LINE_NEWCALL line_1",
        "LINE_CALLSTATE LINECALLSTATE_OFFERING",
        "SET CALLERID 0301234567",
        "LINE_CALLINFO LINECALLINFOSTATE_CALLERID",
        "LINE_CALLSTATE LINECALLSTATE_CONNECTED",
        "LINE_CALLSTATE LINECALLSTATE_HANGUP",
        "LINE_CALLSTATE LINECALLSTATE_IDLE",
    ])
    assert per_line(events) == {"line_1": [
        "LINE_NEWCALL", "LINECALLSTATE_OFFERING", "LINECALLINFOSTATE_CALLERID",
        "LINECALLSTATE_CONNECTED", "LINECALLSTATE_DISCONNECTED", "LINECALLSTATE_IDLE"]}


def test_outbound_9nxxxxxx_from_the_phone():
    m = model()
    events = run(m, [
        "LINE_NEWCALL line_1",
        "LINE_CALLSTATE LINECALLSTATE_DIALTONE",
        "LINE_CALLSTATE LINECALLSTATE_DIALING",
        "LINE_CALLSTATE LINECALLSTATE_PROCEEDING",
        f"[~{UID}&line_1] LINE_CALLSTATE LINECALLSTATE_CONNECTED",  # M(tapi^${{UNIQUEID}})
        f"[~{UID}&!line_1] LINE_CALLSTATE LINECALLSTATE_HANGUP",  # nobody else tracks it
        "LINE_CALLSTATE LINECALLSTATE_IDLE",
    ])
    assert per_line(events) == {"line_1": [
        "LINE_NEWCALL", "LINECALLSTATE_DIALTONE", "LINECALLSTATE_DIALING",
        "LINECALLSTATE_PROCEEDING", "LINECALLSTATE_CONNECTED", "LINECALLSTATE_IDLE"]}


def test_outbound_busy():
    m = model()
    events = run(m, [
        "LINE_NEWCALL line_1",
        "LINE_CALLSTATE LINECALLSTATE_DIALTONE",
        "LINE_CALLSTATE LINECALLSTATE_DIALING",
        "LINE_CALLSTATE LINECALLSTATE_PROCEEDING",
        "LINE_CALLSTATE LINECALLSTATE_BUSY",
        "LINE_CALLSTATE LINECALLSTATE_IDLE",
    ])
    assert per_line(events)["line_1"][-2:] == ["LINECALLSTATE_BUSY", "LINECALLSTATE_IDLE"]
    assert m.stats["impossible"] == 0


def test_inbound_no_answer():
    m = model()
    events = run(m, [
        "LINE_NEWCALL line_1",
        "LINE_CALLSTATE LINECALLSTATE_OFFERING",
        "SET CALLERID 0301234567",
        "LINE_CALLINFO LINECALLINFOSTATE_CALLERID",
        "LINE_CALLSTATE LINECALLSTATE_DISCONNECTED",
        "LINE_CALLSTATE LINECALLSTATE_IDLE",
    ])
    assert brief(events)[-2:] == [
        ("LINE_CALLSTATE", "line_1", 1, "LINECALLSTATE_DISCONNECTED", "LINEDISCONNECTMODE_NORMAL"),
        ("LINE_CALLSTATE", "line_1", 1, "LINECALLSTATE_IDLE", None),
    ]


def test_dialplan_may_give_the_disconnect_mode():
    m = model()
    events = run(m, ["LINE_NEWCALL line_1", "LINE_CALLSTATE OFFERING",
                     "LINE_CALLSTATE LINECALLSTATE_DISCONNECTED LINEDISCONNECTMODE_NOANSWER"])
    assert events[-1].mode == "LINEDISCONNECTMODE_NOANSWER"
    assert m.snapshot(m.get(1), "line_1")["mode"] == "LINEDISCONNECTMODE_NOANSWER"


class Hub:
    """What clients.hub does with owner: a stand-in to check who sees what."""

    def __init__(self, clients):
        self.clients = clients  # client -> set of open lines
        self.seen = {c: [] for c in clients}

    def publish(self, events):
        for e in events:
            for client, lines in self.clients.items():
                if e.line is not None and e.line not in lines:
                    continue
                if e.msg == "LINE_NEWCALL" and e.owner == client:
                    continue
                self.seen[client].append((e.call, e.param or e.msg))


def app_call(m, hub, newcall_uid_for, *, response_uid=None):
    call = m.make_call("line_1", "95551234", owner="alice", now=1.0)
    hub.publish(m.originate_response(call.channel_id, response_uid or call.channel_id,
                                     "SIP/alice-00000001", True, 2.0, reason=4))
    uid = newcall_uid_for(call)
    for i, text in enumerate([
        "LINE_NEWCALL line_1",
        "LINE_CALLSTATE LINECALLSTATE_DIALTONE",
        "LINE_CALLSTATE LINECALLSTATE_DIALING",
        "LINE_CALLSTATE LINECALLSTATE_PROCEEDING",
        f"[~{uid}&line_1] LINE_CALLSTATE LINECALLSTATE_CONNECTED",
        f"[~{uid}&!line_1] LINE_CALLSTATE LINECALLSTATE_HANGUP",
        "LINE_CALLSTATE LINECALLSTATE_IDLE",
        "LINE_CALLSTATE LINECALLSTATE_IDLE",  # h extension fired twice
    ]):
        hub.publish(m.apply(sig(text, uid), 3.0 + i))
    return call


EXPECT_STATES = ["LINECALLSTATE_DIALTONE", "LINECALLSTATE_DIALING", "LINECALLSTATE_PROCEEDING",
                 "LINECALLSTATE_CONNECTED", "LINECALLSTATE_IDLE"]


def test_app_initiated_call_asterisk_12_channelid():
    m = model()
    hub = Hub({"alice": {"line_1"}, "supervisor": {"line_1"}, "other": {"line_2"}})
    call = app_call(m, hub, lambda c: c.channel_id)
    assert call.channel_id == "asttapi-test-1" and call.handle == 1
    # the client that dialled: its own handle, never a NEWCALL
    assert hub.seen["alice"] == [(1, s) for s in EXPECT_STATES]
    # another client with line_1 open: the call is new to it
    assert hub.seen["supervisor"] == [(1, "LINE_NEWCALL")] + [(1, s) for s in EXPECT_STATES]
    assert hub.seen["other"] == []
    assert m.stats["calls"] == 1 and m.stats["duplicate"] >= 1
    assert call.callinfo["calledid"] == "95551234"
    assert call.callinfo["origin"] == "LINECALLORIGIN_OUTBOUND"
    assert call.channel == "SIP/alice-00000001"


def test_app_initiated_call_older_asterisk_originate_uniqueid():
    m = model()
    hub = Hub({"alice": {"line_1"}, "supervisor": {"line_1"}})
    call = app_call(m, hub, lambda c: "1136996111.9", response_uid="1136996111.9")
    assert hub.seen["alice"] == [(1, s) for s in EXPECT_STATES]
    assert hub.seen["supervisor"][0] == (1, "LINE_NEWCALL")
    assert call.uniqueid == "1136996111.9" and call.callinfo["uniqueid"] == "1136996111.9"
    assert m.stats["calls"] == 1


def test_app_call_initial_state_is_unknown_and_listed():
    m = model()
    call = m.make_call("line_1", "200", owner="alice", now=1.0)
    snap = m.snapshot(call, "line_1")
    assert snap["state"] == "LINECALLSTATE_UNKNOWN" and snap["call"] == call.handle
    assert m.calls_on_line("line_1") == [call]
    # handles and channel ids are never reused
    other = m.make_call("line_1", "201", owner="bob", now=1.0)
    assert other.handle != call.handle and other.channel_id != call.channel_id


def test_app_call_newcall_on_a_second_line_is_not_hidden_from_the_owner():
    m = model()
    call = m.make_call("line_1", "200", owner="alice", now=1.0)
    ev = m.apply(sig("LINE_NEWCALL line_1 line_2", call.channel_id), 2.0)
    assert [(e.line, e.owner) for e in ev] == [("line_1", "alice"), ("line_2", None)]


def test_originate_failure_disconnects_and_idles_the_owner_line():
    m = model()
    call = m.make_call("line_1", "95550000", owner="alice", now=1.0)
    events = m.originate_response(call.channel_id, None, None, False, 2.0, reason=5)
    assert brief(events) == [
        ("LINE_CALLSTATE", "line_1", call.handle, "LINECALLSTATE_DISCONNECTED", "LINEDISCONNECTMODE_BUSY"),
        ("LINE_CALLSTATE", "line_1", call.handle, "LINECALLSTATE_IDLE", None),
    ]
    assert all(e.synthetic for e in events)
    assert m.originate_response(call.channel_id, None, None, False, 3.0) == []  # once
    assert m.originate_response("asttapi-nope-9", None, None, True, 3.0) == []


def test_newcall_before_originate_response_on_old_asterisk():
    m = model()
    call = m.make_call("line_1", "200", owner="alice", now=1.0)
    first = m.apply(sig("LINE_NEWCALL line_1", "1136996111.9"), 2.0)  # dialplan's call won the race
    assert first[0].owner is None and first[0].call != call.handle
    events = m.originate_response(call.channel_id, "1136996111.9", "SIP/alice-1", True, 3.0)
    assert [e.param for e in events] == ["LINECALLSTATE_DISCONNECTED", "LINECALLSTATE_IDLE"]
    assert m.by_uniqueid("1136996111.9").handle == first[0].call


def test_duplicates_are_sent_once():
    m = model()
    events = run(m, [
        "LINE_NEWCALL line_1",
        "LINE_NEWCALL line_1",
        "LINE_CALLSTATE LINECALLSTATE_OFFERING",
        "LINE_CALLSTATE LINECALLSTATE_OFFERING",
        "SET CALLERID 1",
        "LINE_CALLINFO LINECALLINFOSTATE_CALLERID",
        "LINE_CALLINFO LINECALLINFOSTATE_CALLERID",
        "SET CALLERID 1",  # unchanged: still the same info
        "LINE_CALLINFO LINECALLINFOSTATE_CALLERID",
        "SET CALLERID 2",  # changed: worth telling
        "LINE_CALLINFO LINECALLINFOSTATE_CALLERID",
        "LINE_CALLSTATE LINECALLSTATE_CONNECTED",
        "[line_1] LINE_CALLSTATE LINECALLSTATE_CONNECTED",
        "LINE_CALLSTATE LINECALLSTATE_IDLE",
        "LINE_CALLSTATE LINECALLSTATE_IDLE",
        "[line_1] LINE_CALLSTATE LINECALLSTATE_IDLE",
    ])
    assert per_line(events)["line_1"] == [
        "LINE_NEWCALL", "LINECALLSTATE_OFFERING", "LINECALLINFOSTATE_CALLERID",
        "LINECALLINFOSTATE_CALLERID", "LINECALLSTATE_CONNECTED", "LINECALLSTATE_IDLE"]
    assert [e.callinfo["callerid"] for e in events if e.msg == "LINE_CALLINFO"] == ["1", "2"]
    assert m.stats["duplicate"] == 7 and m.stats["impossible"] == 0


def test_impossible_transitions_are_dropped_and_the_state_kept():
    m = model(linger=30)
    events = run(m, [
        "LINE_NEWCALL line_1",
        "LINE_NEWCALL line_2",
        "LINE_CALLSTATE LINECALLSTATE_OFFERING",
        "[line_2] LINE_CALLSTATE LINECALLSTATE_HANGUP",
        "LINE_CALLSTATE LINECALLSTATE_CONNECTED",  # line_1 ok; line_2 was disconnected: dropped
        "[line_1] LINE_CALLSTATE LINECALLSTATE_OFFERING",  # connected -> offering: dropped
        "[line_1] LINE_CALLSTATE LINECALLSTATE_IDLE",
        "[line_1] LINE_CALLSTATE LINECALLSTATE_CONNECTED",  # nothing leaves IDLE
    ])
    assert per_line(events) == {
        "line_1": ["LINE_NEWCALL", "LINECALLSTATE_OFFERING", "LINECALLSTATE_CONNECTED", "LINECALLSTATE_IDLE"],
        "line_2": ["LINE_NEWCALL", "LINECALLSTATE_OFFERING", "LINECALLSTATE_DISCONNECTED"],
    }
    assert m.stats["impossible"] == 3
    call = m.get(1)
    assert call.state("line_1") == "LINECALLSTATE_IDLE"
    assert call.state("line_2") == "LINECALLSTATE_DISCONNECTED"
    assert call.ended is None and call.lines == ("line_2",)
    assert m.calls_on_line("line_2") == [call] and m.calls_on_line("line_1") == []


def test_unknown_calls_are_logged_never_invented():
    m = model()
    for text in ["LINE_CALLSTATE LINECALLSTATE_OFFERING", "SET CALLERID 1",
                 "LINE_CALLINFO LINECALLINFOSTATE_CALLERID", "[~9.9] LINE_CALLSTATE LINECALLSTATE_IDLE",
                 "LINE_LINEDEVSTATE LINEDEVSTATE_RINGING"]:
        assert m.apply(sig(text, "1.1"), 1.0) == []
    assert m.tracked == 0 and m.stats["unknown_call"] == 5


def test_explicit_line_that_does_not_track_the_call():
    m = model()
    run(m, ["LINE_NEWCALL line_1"])
    assert m.apply(sig(f"[~{UID}&line_9] LINE_CALLSTATE LINECALLSTATE_OFFERING"), 2.0) == []
    assert m.stats["line_not_tracking"] == 1


def test_linedevstate_for_a_line_or_for_the_lines_of_a_call():
    m = model()
    assert brief(m.apply(sig("[line_1] LINE_LINEDEVSTATE LINEDEVSTATE_RINGING"), 1.0)) == [
        ("LINE_LINEDEVSTATE", "line_1", None, "LINEDEVSTATE_RINGING", None)]
    run(m, ["LINE_NEWCALL line_1", "LINE_NEWCALL line_2"])
    assert [e.line for e in m.apply(sig("LINE_LINEDEVSTATE LINEDEVSTATE_RINGING", UID), 2.0)] == [
        "line_1", "line_2"]


def test_set_changes_callinfo_silently_and_every_field():
    m = model()
    run(m, ["LINE_NEWCALL line_1"])
    for text in ["SET CALLERID 0301234567", "SET CALLERIDNAME Ext Caller", "SET CALLEDID 100",
                 "SET CALLEDIDNAME Bob", "SET CONNECTEDID 200", "SET CONNECTEDIDNAME Bob Smith",
                 "SET CALLORIGIN LINECALLORIGIN_EXTERNAL"]:
        assert m.apply(sig(text, UID), 2.0) == []
    ev = m.apply(sig("LINE_CALLINFO LINECALLINFOSTATE_CONNECTEDID", UID), 3.0)
    both = ("LINECALLPARTYID_ADDRESS", "LINECALLPARTYID_NAME")
    assert dict(ev[0].callinfo) == {
        "callerid": "0301234567", "calleridname": "Ext Caller", "calleridflags": both,
        "calledid": "100", "calledidname": "Bob", "calledidflags": both,
        "connectedid": "200", "connectedidname": "Bob Smith", "connectedidflags": both,
        "origin": "LINECALLORIGIN_EXTERNAL", "uniqueid": UID}


def test_events_callinfo_is_a_frozen_snapshot():
    m = model()
    ev = run(m, ["LINE_NEWCALL line_1", "SET CALLERID 1", "LINE_CALLINFO LINECALLINFOSTATE_CALLERID",
                 "SET CALLERID 2"])
    assert ev[-1].callinfo["callerid"] == "1"
    assert ev[0].callinfo["callerid"] is None


def test_ring_group_member_can_rejoin_after_its_idle():
    m = model()
    run(m, ["LINE_NEWCALL line_1", "LINE_NEWCALL line_2", "LINE_CALLSTATE OFFERING",
            "[line_2] LINE_CALLSTATE IDLE"])
    ev = m.apply(sig("LINE_NEWCALL line_2", UID), 5.0)
    assert brief(ev) == [("LINE_NEWCALL", "line_2", 1, None, None)]
    assert m.get(1).lines == ("line_1", "line_2")


def test_newcall_on_a_finished_uniqueid_is_a_new_call():
    m = model(linger=30)
    run(m, ["LINE_NEWCALL line_1", "LINE_CALLSTATE IDLE"])
    ev = m.apply(sig("LINE_NEWCALL line_1", UID), 5.0)
    assert ev[0].call == 2 and m.get(1).ended is not None and m.tracked == 2
    m.tick(12.0 + 30)  # the old record expires; the new call keeps the uniqueid
    assert m.get(1) is None and m.by_uniqueid(UID).handle == 2


def test_untied_events_without_uniqueid():
    m = model()
    assert m.apply(sig("LINE_NEWCALL line_1", None), 1.0) == []
    assert m.apply(sig("LINE_CALLSTATE LINECALLSTATE_IDLE", None), 1.0) == []
    assert m.stats["untied"] == 2 and m.tracked == 0


def test_newcall_channel_is_recorded_only_when_it_is_the_calls_own():
    m = model()
    m.apply(sig("LINE_NEWCALL line_1", "1.1", "SIP/trunk-0001"), 1.0)
    m.apply(sig("[~1.2] LINE_NEWCALL line_1", "1.9", "Local/bob@phones-0001;1"), 1.0)
    assert m.by_uniqueid("1.1").channel == "SIP/trunk-0001"
    assert m.by_uniqueid("1.2").channel is None


# -- SET CALLERID with Asterisk's ${CALLERID} form (the manual's 1.2 dialplan) ------------


import pytest as _pytest

from asttapi_server.core.model import CallModel as _CallModel, split_callerid


@_pytest.mark.parametrize("value, number, name", [
    ('"Ext Caller" <0301234567>', "0301234567", "Ext Caller"),
    ("Ext Caller <0301234567>", "0301234567", "Ext Caller"),
    ('"" <0301234567>', "0301234567", None),
    ("<0301234567>", "0301234567", None),
    ("0301234567", None, None),
    ("a < b", None, None),
])
def test_split_callerid(value, number, name):
    assert split_callerid(value) == (number, name)


def test_set_callerid_name_number_form_is_split():
    m = _CallModel()
    for text in ("LINE_NEWCALL line_1", "LINE_CALLSTATE LINECALLSTATE_OFFERING",
                 'SET CALLERID "Ext Caller" <0301234567>', "LINE_CALLINFO LINECALLINFOSTATE_CALLERID"):
        events = m.apply(sig(text, "7.1"), 1.0)
    info = events[-1].callinfo
    assert info["callerid"] == "0301234567" and info["calleridname"] == "Ext Caller"


def test_a_repeated_dialplan_mistake_is_reported_every_time_under_one_key_and_counted():
    # The model reports; the adapter throttles per key (tests/integration/test_bridge.py).
    m = _CallModel()
    keys = set()
    for i in range(500):  # every call of a busy hour hits the same typo'd ~uniqueid
        out = m.apply(sig("[~no.such.call] LINE_CALLSTATE LINECALLSTATE_CONNECTED", f"{i}.1"), float(i) / 10)
        assert out == [] and len(out.diagnostics) == 1
        keys.add(out.diagnostics[0].key)
    assert len(keys) == 1
    assert m.stats["unknown_call"] == 500


