"""Device lines in a real office (issue 21): queues, Local-channel ring groups, pickup, forwards, ...

Each flow is a capture: real ones from tests/data/ami-native (s12-s16: Asterisk
22, real SIP phones) and hand-made ones from tests/data/ami-native-handmade
(h03-h10, labelled in its README.txt: a real capture cut where the flow parts
ways with it, the rest written from Asterisk's own source). Each plays
through the real AMI parser, the device mapping and the call model, and the
test says what each line must see: its sequence, caller / called / connected
party, origin and the party flags. docs/device-lines.md shows the same, one
table per flow, and the last test checks those tables against the code.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from asttapi_server.core import CallModel
from asttapi_server.core import device_lines as D

from .test_device_lines import (
    CONNECTED, CONNID, DISCONNECTED, EXTERNAL, HANDMADE, IDLE, INTERNAL, LAB, NATIVE, NEWCALL, NORMAL, OFFERING,
    ONHOLD, OUTBOUND, clean, ev, last, messages, play, seq,
)

DIALING = "LINECALLSTATE_DIALING"
PICKUP, NOANSWER = f"{DISCONNECTED} LINEDISCONNECTMODE_PICKUP", f"{DISCONNECTED} LINEDISCONNECTMODE_NOANSWER"
ENDED = f"{DISCONNECTED} {NORMAL}"
ADDRESS, NAME = "LINECALLPARTYID_ADDRESS", "LINECALLPARTYID_NAME"
UNAVAIL, UNKNOWN = "LINECALLPARTYID_UNAVAIL", "LINECALLPARTYID_UNKNOWN"
DOC = Path(__file__).resolve().parents[2] / "docs" / "device-lines.md"

#: flow name -> its capture (docs/device-lines.md names the flows the same way)
FLOWS = {
    "queue rrmemory, PJSIP members": NATIVE / "s12_queue_rrmemory.raw",
    "queue rrmemory, Local members": HANDMADE / "h03_queue_local_members_rrmemory.raw",
    "queue ringall, Local members": HANDMADE / "h03_queue_local_members_ringall.raw",
    "queue ringall, PJSIP members": HANDMADE / "h04_queue_pjsip_ringall.raw",
    "FreePBX ring group": HANDMADE / "h05_freepbx_ring_group.raw",
    "group pickup (*8)": NATIVE / "s16_group_pickup.raw",
    "directed pickup (Pickup())": HANDMADE / "h10_directed_pickup.raw",
    "call waiting": HANDMADE / "h09_call_waiting.raw",
    "attended transfer from the phone": NATIVE / "s09_attended_transfer_phone.raw",
    "follow-me to an outside number": NATIVE / "s15_followme_simring.raw",
    "parking and retrieval": NATIVE / "s13_call_parking.raw",
    "ConfBridge": NATIVE / "s14_confbridge.raw",
    "forward by the phone (302)": HANDMADE / "h07_forward_302.raw",
    "do-not-disturb": HANDMADE / "h08_do_not_disturb.raw",
    "no caller id": HANDMADE / "h06_no_caller_id.raw",
}


#: flows of a caller who withholds the number: the presentation reads answer this
WITHHELD = {
    "a caller who withholds the number": NATIVE / "s10_hold_unhold.raw",
    "a withheld caller through a queue of Local members": HANDMADE / "h03_queue_local_members_ringall.raw",
}


def flow(name):
    lines, model, _, events = play(messages(FLOWS[name]))
    clean(lines, model)
    return events


def through_the_core(msgs, presentation: str):
    """``msgs`` through the device mapping and the whole core (CallControl), each presentation read
    (Getvar) answered with ``presentation`` at once: what the bridge carries out."""
    from asttapi_server.ami.message import Message
    from asttapi_server.core.control import CallControl

    lines, control = D.DeviceLines(LAB), CallControl(CallModel(boot_id="t"), {})
    control.answered(control.link_established(0.0).actions[0].token, [], None, 0.0)
    events: list = []
    for n, msg in enumerate(msgs):
        pending = [control.signals(lines.feed(msg.name, msg.get, float(n), control.view), float(n))]
        while pending:
            fx = pending.pop()
            events += fx
            for send in fx.actions:
                assert send.action.name == "Getvar"
                value = Message.from_items([("Response", "Success"), ("Value", presentation)])
                pending.append(control.answered(send.token, value, None, float(n)))
    clean(lines, control.model)
    return events


def party(info, key):
    """(number, name, flags) of a party in a callinfo."""
    return info[key], info[key + "name"], info[key + "flags"]


# -- queues and ring groups: the number the caller dialled, through Local channels (item 1) ---------


def test_queue_rrmemory_pjsip_members_the_member_who_rang_out_sees_noanswer():
    """s12: app_queue says NOANSWER when 201 rang out, then CANCEL: the first end counts."""
    events = flow("queue rrmemory, PJSIP members")
    assert seq(events, "bob") == [[NEWCALL, OFFERING, NOANSWER, IDLE]]
    assert seq(events, "bobbett") == [[NEWCALL, OFFERING, CONNID, CONNECTED, ENDED, IDLE]]
    for line in ("bob", "bobbett"):
        info = last(events, line)
        assert party(info, "callerid") == ("0309876543", "Queue Caller", (ADDRESS, NAME))
        assert (info["calledid"], info["origin"]) == ("110", EXTERNAL)


@pytest.mark.parametrize("strategy, bob", [("ringall", PICKUP), ("rrmemory", NOANSWER)])
def test_queue_with_local_members_offers_the_queues_number_not_the_members(strategy, bob):
    """FreePBX writes members as Local/201@from-queue/n: the phone is dialled by the Local ;2 whose
    Exten is 201; the caller dialled the queue (110). rrmemory: the phone's own Dial only says CANCEL
    when the queue moves on; the queue's NOANSWER for the member's Local ;1 is what happened."""
    events = flow(f"queue {strategy}, Local members")
    assert seq(events, "bob") == [[NEWCALL, OFFERING, bob, IDLE]]
    assert seq(events, "bobbett") == [[NEWCALL, OFFERING, CONNID, CONNECTED, ENDED, IDLE]]
    for line in ("bob", "bobbett"):
        info = last(events, line)
        assert (info["callerid"], info["calleridname"], info["calledid"]) == ("0309876543", "Queue Caller", "110")
        assert info["origin"] == EXTERNAL
        # the pop (LINE_NEWCALL) already has the right number
        assert next(e for e in events if e.line == line).callinfo["calledid"] == "110"


def test_queue_ringall_pjsip_members_the_others_are_answered_elsewhere():
    events = flow("queue ringall, PJSIP members")
    assert seq(events, "bob") == [[NEWCALL, OFFERING, CONNID, CONNECTED, ENDED, IDLE]]
    assert seq(events, "bobbett") == [[NEWCALL, OFFERING, PICKUP, IDLE]]
    assert {last(events, line)["calledid"] for line in ("bob", "bobbett")} == {"110"}


def test_freepbx_ring_group_offers_the_groups_number_to_every_phone():
    events = flow("FreePBX ring group")
    assert seq(events, "bob") == [[NEWCALL, OFFERING, CONNID, CONNECTED, ENDED, IDLE]]
    assert seq(events, "bobbett") == [[NEWCALL, OFFERING, PICKUP, IDLE]]
    for line in ("bob", "bobbett"):
        info = last(events, line)
        assert (info["callerid"], info["calledid"], info["origin"]) == ("0301234567", "100", EXTERNAL)


def test_a_ring_group_a_station_calls_through_local_channels_is_internal():
    """The chain's root is a configured device (alice dials 600, a Local ring group): INTERNAL, 600."""
    alice = dict(Channel="PJSIP/203-00000001", Uniqueid="8.1", CallerIDNum="203", CallerIDName="alice",
                 Exten="600")
    one = dict(Dest_Channel="Local/201@from-internal-00000002;1", Dest_Uniqueid="8.2")
    two = dict(Channel="Local/201@from-internal-00000002;2", Uniqueid="8.3", CallerIDNum="203",
               CallerIDName="alice", Exten="201")
    bob = dict(Dest_Channel="PJSIP/201-00000004", Dest_Uniqueid="8.4", Dest_ConnectedLineNum="203")
    msgs = [ev("Newchannel", **alice, ChannelState="4"), ev("DialBegin", **alice, **one),
            ev("DialBegin", **two, **bob),
            ev("Hangup", Channel="PJSIP/201-00000004", Uniqueid="8.4", Cause="26"),
            ev("Hangup", **alice, Cause="16")]
    lines, model, _, events = play(msgs)
    clean(lines, model)
    info = last(events, "bob")
    assert (info["callerid"], info["calledid"], info["origin"]) == ("203", "600", INTERNAL)
    # the caller's side stays OUTBOUND: one origin per side (item 4)
    assert {e.callinfo["origin"] for e in events if e.line == "alice"} == {OUTBOUND}


def test_the_number_dialled_follows_when_the_members_dial_came_first():
    """Asterisk publishes the queue's DialBegin for a Local member after ast_call() started it, so the
    member's own Dial may ring the phone first: the number the caller dialled follows as CALLEDID."""
    queue = dict(Channel="PJSIP/trunk-00000001", Uniqueid="7.1", CallerIDNum="0301234567", Exten="400")
    two = dict(Channel="Local/201@from-queue-00000002;2", Uniqueid="7.3", CallerIDNum="0301234567", Exten="201")
    bob = dict(Dest_Channel="PJSIP/201-00000004", Dest_Uniqueid="7.4")
    msgs = [ev("DialBegin", **two, **bob), ev("Newstate", Channel="PJSIP/201-00000004", Uniqueid="7.4",
                                               ChannelState="5"),
            ev("DialBegin", **queue, Dest_Channel="Local/201@from-queue-00000002;1", Dest_Uniqueid="7.2")]
    _, _, _, events = play(msgs)
    assert seq(events, "bob") == [[NEWCALL, OFFERING, "LINECALLINFOSTATE_CALLEDID"]]
    assert last(events, "bob")["calledid"] == "400"


# -- pickup ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, dialled", [("group pickup (*8)", "*8"), ("directed pickup (Pickup())", "**201")])
def test_pickup_the_ringing_line_sees_pickup_the_picker_gets_the_call(name, dialled):
    """The ringing phone: DISCONNECTED(PICKUP). The picking phone's own call (the code it dialled)
    ends, and the picked-up call appears on its line, as TAPI's linePickup gives one: caller, the
    number they dialled, origin EXTERNAL, CONNECTED; so its screen pops (contact lookup) there."""
    events = flow(name)
    assert seq(events, "bob") == [[NEWCALL, OFFERING, PICKUP, IDLE]]
    code, picked = seq(events, "bobbett")
    assert code == [NEWCALL, DIALING, CONNID, CONNECTED, IDLE]
    assert picked == [NEWCALL, CONNECTED, ENDED, IDLE]
    assert last(events, "bobbett", 0)["calledid"] == dialled
    info = last(events, "bobbett", 1)
    assert party(info, "callerid") == ("0301234567", "Ext Caller", (ADDRESS, NAME))
    assert (info["calledid"], info["origin"]) == ("101", EXTERNAL)
    assert party(info, "connectedid") == ("0301234567", "Ext Caller", (ADDRESS, NAME))
    newcall = [e for e in events if e.line == "bobbett" and e.msg == NEWCALL][1]
    assert newcall.callinfo["callerid"] == "0301234567"  # the pop has the caller


# -- a phone with two calls; transfers, parking, conferences ----------------------------------------


def test_call_waiting_two_calls_on_one_phone_one_held():
    events = flow("call waiting")
    first, second = seq(events, "bob")
    assert first == [NEWCALL, OFFERING, CONNID, CONNECTED, ONHOLD, CONNECTED, ENDED, IDLE]
    assert second == [NEWCALL, OFFERING, CONNID, CONNECTED, ENDED, IDLE]
    assert last(events, "bob", 1)["callerid"] == "0309998877"
    # while bob talks on the second call, the first is on hold
    talking = next(i for i, e in enumerate(events) if e.param == CONNECTED and e.callinfo["callerid"] == "0309998877")
    held = [e for e in events[:talking] if e.callinfo.get("callerid") == "0301234567" and e.msg == "LINE_CALLSTATE"]
    assert held[-1].param == ONHOLD


def test_follow_me_to_an_outside_number_the_phone_sees_answered_elsewhere():
    """s15: Dial(PJSIP/201&Local/95551234@pstn): the outside leg answers, bob's phone rang briefly."""
    events = flow("follow-me to an outside number")
    assert seq(events, "bob") == [[NEWCALL, OFFERING, PICKUP, IDLE]]
    assert (last(events, "bob")["calledid"], last(events, "bob")["origin"]) == ("111", EXTERNAL)


def test_parking_the_parker_goes_idle_the_retriever_talks_to_the_caller():
    """s13: bob blind-transfers the caller to 700 (parks it); alice dials 701 and gets the caller."""
    events = flow("parking and retrieval")
    assert seq(events, "bob") == [[NEWCALL, OFFERING, CONNID, CONNECTED, IDLE]]
    assert seq(events, "alice") == [[NEWCALL, DIALING, CONNID, CONNECTED, CONNID, ENDED, IDLE]]
    alice = last(events, "alice")
    assert (alice["calledid"], alice["origin"]) == ("701", OUTBOUND)
    assert party(alice, "connectedid") == ("0301234567", "Ext Caller", (ADDRESS, NAME))


def test_confbridge_each_phone_is_connected_to_the_conference_it_dialled():
    events = flow("ConfBridge")
    for line in ("bob", "alice"):
        assert seq(events, line) == [[NEWCALL, DIALING, CONNID, CONNECTED, ENDED, IDLE]]
        info = last(events, line)
        assert (info["calledid"], info["connectedid"], info["origin"]) == ("800", "800", OUTBOUND)


# -- forwards, do-not-disturb, no caller id ----------------------------------------------------------


def test_a_call_the_phone_forwards_302_ends_forwarded_and_rings_on():
    events = flow("forward by the phone (302)")
    assert seq(events, "bob") == [[NEWCALL, OFFERING, f"{DISCONNECTED} LINEDISCONNECTMODE_FORWARDED", IDLE]]
    assert seq(events, "alice") == [[NEWCALL, OFFERING, CONNID, CONNECTED, ENDED, IDLE]]
    alice = last(events, "alice")
    # TAPI's calledid is the number the caller dialled (101), not the forward target
    assert (alice["callerid"], alice["calledid"], alice["origin"]) == ("0301234567", "101", EXTERNAL)


def test_a_caller_whose_far_end_forwards_keeps_dialling():
    """DialEnd CANCEL with Forward for the dialling phone's Dial: the Dial goes on, no DISCONNECTED."""
    alice = dict(Channel="PJSIP/203-00000001", Uniqueid="6.1", CallerIDNum="203", Exten="201")
    bob = dict(Dest_Channel="SIP/other-00000002", Dest_Uniqueid="6.2")
    forwarded = dict(Dest_Channel="Local/300@plain-phones-00000003;1", Dest_Uniqueid="6.3")
    msgs = [ev("Newchannel", **alice, ChannelState="4"), ev("DialBegin", **alice, **bob),
            ev("DialEnd", **alice, **bob, Forward="300", DialStatus="CANCEL"), ev("DialBegin", **alice, **forwarded),
            ev("DialEnd", **alice, **forwarded, DialStatus="ANSWER"), ev("Hangup", **alice, Cause="16")]
    _, _, _, events = play(msgs, {"PJSIP/203": ["alice"]})
    assert seq(events, "alice") == [[NEWCALL, DIALING, "LINECALLSTATE_PROCEEDING", CONNID, CONNECTED, ENDED, IDLE]]


def test_one_busy_destination_does_not_end_a_dial_that_still_rings_elsewhere():
    """A phone dials two destinations (Dial(A&B)); A is busy, B answers: the line never shows BUSY."""
    alice = dict(Channel="PJSIP/203-00000001", Uniqueid="5.1", CallerIDNum="203", Exten="600")
    a = dict(Dest_Channel="SIP/a-00000002", Dest_Uniqueid="5.2")
    b = dict(Dest_Channel="SIP/b-00000003", Dest_Uniqueid="5.3")
    msgs = [ev("Newchannel", **alice, ChannelState="4"), ev("DialBegin", **alice, **a), ev("DialBegin", **alice, **b),
            ev("DialEnd", **alice, **a, DialStatus="BUSY"), ev("DialEnd", **alice, **b, DialStatus="ANSWER"),
            ev("Hangup", **alice, Cause="16")]
    _, _, _, events = play(msgs, {"PJSIP/203": ["alice"]})
    assert "LINECALLSTATE_BUSY LINEBUSYMODE_UNKNOWN" not in seq(events, "alice")[0]
    # ... and when every destination failed, BUSY first (app_dial's DIALSTATUS)
    msgs[4] = ev("DialEnd", **alice, **b, DialStatus="NOANSWER")
    _, _, _, events = play(msgs, {"PJSIP/203": ["alice"]})
    assert seq(events, "alice") == [[NEWCALL, DIALING, "LINECALLSTATE_PROCEEDING",
                                     "LINECALLSTATE_BUSY LINEBUSYMODE_UNKNOWN", IDLE]]


def test_do_not_disturb_is_busy_at_once():
    """The phone answers 486 before it ever rang: BUSY, not REJECT (the user did not see the call)."""
    events = flow("do-not-disturb")
    assert seq(events, "bob") == [[NEWCALL, OFFERING, f"{DISCONNECTED} LINEDISCONNECTMODE_BUSY", IDLE]]


def test_no_caller_id_no_connected_party_flags_unavail():
    """Item 3: an inbound call with an empty caller id: no connected party is invented (not the number
    dialled: that fits calls the phone places), and the flags say UNAVAIL."""
    events = flow("no caller id")
    assert seq(events, "bob")[0][:4] == [NEWCALL, OFFERING, CONNID, CONNECTED]
    info = last(events, "bob")
    assert party(info, "callerid") == (None, None, (UNAVAIL,))
    assert party(info, "connectedid") == (None, None, (UNAVAIL,))
    assert info["calledid"] == "101"
    newcall = next(e for e in events if e.line == "bob")
    assert party(newcall.callinfo, "callerid") == (None, None, (UNAVAIL,))
    assert party(newcall.callinfo, "connectedid") == (None, None, (UNKNOWN,))  # not connected yet


# -- every flow: restarts, the docs --------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(p.stem for p in HANDMADE.glob("h*.raw") if p.stem != "h11_mixed_office"))
def test_a_restart_at_any_point_of_the_handmade_flows_changes_nothing_clients_see(name):
    from .test_device_lines import _per_call, _restarted, _windows

    msgs = messages(HANDMADE / f"{name}.raw")
    _, _, _, whole = play(msgs)
    want = _per_call(whole)
    windows = _windows(msgs)
    differ = [cut for cut in range(len(msgs) + 1) if _per_call(_restarted(msgs, cut)[0]) != want]
    assert set(differ) <= windows, differ


def test_a_withheld_caller_is_offered_and_connected_with_no_number_or_name():
    events = through_the_core(messages(WITHHELD["a caller who withholds the number"]), "prohib_passed_screen")
    assert seq(events, "bob") == [[NEWCALL, OFFERING, CONNID, CONNECTED, ONHOLD, CONNECTED, ENDED, IDLE]]
    for e in events:
        assert party(e.callinfo, "callerid") == (None, None, ("LINECALLPARTYID_BLOCKED",))
    info = last(events, "bob")
    assert party(info, "connectedid") == (None, None, ("LINECALLPARTYID_BLOCKED",))
    assert (info["calledid"], info["origin"]) == ("101", EXTERNAL)


def test_every_flow_gives_the_same_through_the_whole_core_when_callers_present_their_number():
    """The tables are the mapping's and the model's; the core's presentation reads change nothing for a
    caller who presents the number (but the order between two calls: a call waits one round trip)."""
    def per_call(events):
        out: dict = {}
        for e in events:
            out.setdefault((e.line, e.call), []).append(e)
        return out

    for name, path in FLOWS.items():
        assert per_call(through_the_core(messages(path), "allowed_not_screened")) == per_call(flow(name)), name


def _flags(flags) -> str:
    return " ".join(f.removeprefix("LINECALLPARTYID_") for f in flags)


def _cell(info, key) -> str:
    number, name, flags = party(info, key)
    shown = " ".join(x for x in (number, f'"{name}"' if name else None) if x) or "–"
    return f"{shown} [{_flags(flags)}]"


def render(name) -> list[str]:
    """The table docs/device-lines.md shows for a flow: one row per line's call."""
    from .test_device_lines import _short

    if name in WITHHELD:
        events = through_the_core(messages(WITHHELD[name]), "prohib_passed_screen")
    else:
        events = flow(name)
    calls: dict = {}
    for e in events:
        calls.setdefault((e.line, e.call), []).append(e)
    rows = ["| line | sees | caller | called | connected | origin |", "|---|---|---|---|---|---|"]
    for (line, _), evs in calls.items():
        info = evs[-1].callinfo
        rows.append(f"| {line} | {' '.join(_short(e) for e in evs)} | {_cell(info, 'callerid')} | "
                    f"{_cell(info, 'calledid')} | {_cell(info, 'connectedid')} | "
                    f"{info['origin'].removeprefix('LINECALLORIGIN_')} |")
    return rows


def test_the_docs_flow_tables_are_what_the_code_gives():
    text = DOC.read_text()
    tables = dict(re.findall(r"<!-- flow: (.*?) -->\n(.*?)<!-- /flow -->", text, re.S))
    assert sorted(tables) == sorted([*FLOWS, *WITHHELD])
    for name in [*FLOWS, *WITHHELD]:
        assert [row for row in tables[name].splitlines() if row.startswith("|")] == render(name), name


if __name__ == "__main__":  # python -m tests.core.test_office_flows: the tables, for the doc
    for flow_name in [*FLOWS, *WITHHELD]:
        print(f"<!-- flow: {flow_name} -->\n" + "\n".join(render(flow_name)) + "\n<!-- /flow -->\n")
