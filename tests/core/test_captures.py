"""Replays of the real Asterisk 22 captures (tests/data/ami) and the legacy dialects.

Inputs are TRANSCRIBED from the capture files by tests/core/helpers.transcribe
(a tiny regex, not the AMI parser): UserEvent TAPIEVENT texts with the
Uniqueid/Channel of the channel that ran them, Hangup Uniqueid/Cause, and
OriginateResponse fields, in capture order.
"""

import pytest

from asttapi_server.core import CallModel
from tests.core.helpers import brief, per_line, replay, sig, transcribe

INBOUND_LINE_1 = ["LINE_NEWCALL", "LINECALLSTATE_OFFERING", "LINECALLINFOSTATE_CALLERID",
                  "LINECALLSTATE_CONNECTED", "LINECALLSTATE_IDLE"]


def test_transcription_of_05_is_what_the_readme_says():
    items = transcribe("ami/05_inbound_call.monitor.raw")
    tapi = [i for i in items if i[0] == "tapi"]
    # the texts keep their "TAPIEVENT: " prefix; the grammar accepts it
    assert [i[1].removeprefix("TAPIEVENT: ") for i in tapi] == [
        "LINE_NEWCALL line_1",
        "LINE_CALLSTATE LINECALLSTATE_OFFERING",
        "SET CALLERID 0301234567",
        "LINE_CALLINFO LINECALLINFOSTATE_CALLERID",
        "[~1795674354.1&line_1] LINE_CALLSTATE LINECALLSTATE_CONNECTED",
        "[~1795674354.1&!line_1] LINE_CALLSTATE LINECALLSTATE_HANGUP",
        "LINE_CALLSTATE LINECALLSTATE_IDLE",
    ]
    assert [i[2] for i in tapi] == ["1795674354.1"] * 4 + ["1795674354.2"] * 2 + ["1795674354.1"]
    assert ("hangup", "1795674354.4", 26, "Local/bobbett@phones-00000002;1") in items


def test_05_inbound_call():
    m = CallModel(linger=30)
    events = replay(m, transcribe("ami/05_inbound_call.monitor.raw"))
    assert per_line(events) == {"line_1": INBOUND_LINE_1}
    assert events[2].callinfo["callerid"] == "0301234567"
    assert not any(e.synthetic for e in events)
    # the hangups of bob's and bobbett's legs are not the call's channel; the
    # call's own hangup came after its IDLE: nothing synthetic, nothing leaks
    assert m.stats["synthetic_idle"] == 0 and m.stats["impossible"] == 0
    assert m.tracked == 1  # lingering for late lineGetCallInfo
    m.tick(m.next_deadline())
    assert m.tracked == 0 and m.next_deadline() is None


def test_05_with_a_ring_group_of_two_lines():
    """05's dialplan with a second LINE_NEWCALL, as the manual's bob & bobbett example."""
    items = transcribe("ami/05_inbound_call.monitor.raw")
    first = next(i for i in items if i[0] == "tapi")
    items.insert(items.index(first) + 1, ("tapi", "LINE_NEWCALL line_2", first[2], first[3]))
    m = CallModel()
    lines = per_line(replay(m, items))
    assert lines["line_1"] == INBOUND_LINE_1
    assert lines["line_2"] == ["LINE_NEWCALL", "LINECALLSTATE_OFFERING", "LINECALLINFOSTATE_CALLERID",
                               "LINECALLSTATE_DISCONNECTED", "LINECALLSTATE_IDLE"]


def test_06_outbound_from_the_phone():
    m = CallModel(linger=0)
    events = replay(m, transcribe("ami/06_outbound_9NXXXXXX.monitor.raw"))
    assert per_line(events) == {"line_1": [
        "LINE_NEWCALL", "LINECALLSTATE_DIALTONE", "LINECALLSTATE_DIALING",
        "LINECALLSTATE_PROCEEDING", "LINECALLSTATE_IDLE"]}
    assert m.tracked == 0 and m.stats["synthetic_idle"] == 0


def test_06_as_a_lineMakeCall_older_asterisk_path():
    """06 had no ChannelId: the OriginateResponse Uniqueid ties the call (Asterisk < 12 path)."""
    items = transcribe("ami/06_outbound_9NXXXXXX.monitor.raw")
    m = CallModel(boot_id="t")
    call = m.make_call("line_1", "95551234", owner="alice", now=50.0)
    events = []
    now = 100.0
    for item in items:
        now += 0.01
        if item[0] == "originate":
            events += m.originate_response(call.channel_id, item[1], item[2], item[3] == "Success", now, item[4])
        elif item[0] == "tapi":
            events += m.apply(sig(item[1], item[2], item[3]), now)
        else:
            events += m.channel_hangup(item[1], item[2], now)
    assert brief(events)[0] == ("LINE_NEWCALL", "line_1", call.handle, None, None)
    assert events[0].owner == "alice"  # the hub hides it from alice
    assert [e.param for e in events[1:]] == ["LINECALLSTATE_DIALTONE", "LINECALLSTATE_DIALING",
                                             "LINECALLSTATE_PROCEEDING", "LINECALLSTATE_IDLE"]
    assert {e.call for e in events} == {call.handle} and m.stats["calls"] == 1
    assert call.channel == "Local/alice@phones-00000003;1"


def test_07_busy():
    m = CallModel()
    events = replay(m, transcribe("ami/07_outbound_busy.monitor.raw"))
    assert per_line(events) == {"line_1": [
        "LINE_NEWCALL", "LINECALLSTATE_DIALTONE", "LINECALLSTATE_DIALING",
        "LINECALLSTATE_PROCEEDING", "LINECALLSTATE_BUSY", "LINECALLSTATE_IDLE"]}
    assert m.stats["synthetic_idle"] == 0


def test_07_with_a_dialplan_that_forgets_idle():
    """07 without its h-extension IDLE: after the grace period clients still get IDLE."""
    items = [i for i in transcribe("ami/07_outbound_busy.monitor.raw") if "IDLE" not in str(i[1])]
    m = CallModel(hangup_grace=5.0, linger=30.0)
    events = replay(m, items)
    assert events[-1].param == "LINECALLSTATE_BUSY" and m.tracked == 1
    hung = items[-2]  # Hangup of the call's own channel, cause 16
    assert hung[:3] == ("hangup", "1795674367.10", 16)
    late = m.tick(m.next_deadline())
    assert brief(late) == [
        ("LINE_CALLSTATE", "line_1", 1, "LINECALLSTATE_DISCONNECTED", "LINEDISCONNECTMODE_NORMAL"),
        ("LINE_CALLSTATE", "line_1", 1, "LINECALLSTATE_IDLE", None),
    ]
    assert all(e.synthetic for e in late)
    m.tick(m.next_deadline())
    assert m.tracked == 0


def test_10_originate_channelid_without_tapi_dialplan():
    """10: Originate with ChannelId (Asterisk 12+): Uniqueid == our id. No TAPI events in that
    dialplan, so the Hangups (cause 0) end the call after the grace period. The lab's ids
    ("lab-1795674392-a/-b") are replaced by the ones our model chose."""
    items = transcribe("ami/10_originate_async.monitor.raw")
    m = CallModel(boot_id="t", hangup_grace=5.0, linger=0)
    ok = m.make_call("line_1", "alice", owner="c1", now=1.0)
    bad = m.make_call("line_1", "nosuchphone", owner="c1", now=1.0)
    rename = {"lab-1795674392-a": ok.channel_id, "lab-1795674392-b": bad.channel_id}
    events = []
    now = 10.0
    for item in items:
        now += 0.01
        if item[0] == "originate" and item[1] in rename:
            events += m.originate_response(rename[item[1]], rename[item[1]], item[2],
                                           item[3] == "Success", now, item[4])
        elif item[0] == "hangup":
            events += m.channel_hangup(rename.get(item[1], item[1]), item[2], now)
    # nosuchphone: OriginateResponse Failure, Reason 0 -> unreachable, at once
    assert brief(events) == [
        ("LINE_CALLSTATE", "line_1", bad.handle, "LINECALLSTATE_DISCONNECTED", "LINEDISCONNECTMODE_UNREACHABLE"),
        ("LINE_CALLSTATE", "line_1", bad.handle, "LINECALLSTATE_IDLE", None),
    ]
    late = m.tick(now + 5.0)
    assert brief(late) == [
        ("LINE_CALLSTATE", "line_1", ok.handle, "LINECALLSTATE_DISCONNECTED", "LINEDISCONNECTMODE_UNKNOWN"),
        ("LINE_CALLSTATE", "line_1", ok.handle, "LINECALLSTATE_IDLE", None),
    ]
    assert m.tracked == 0


@pytest.mark.parametrize("name", ["asterisk-1.2.raw", "asterisk-1.4.raw", "asterisk-11.raw",
                                  "modern-with-pipe-dialplan.raw"])
def test_legacy_dialects_give_the_same_call(name):
    items = transcribe(f"ami-legacy/{name}")
    assert len([i for i in items if i[0] == "tapi"]) == 7
    m = CallModel(linger=0)
    assert per_line(replay(m, items)) == {"line_1": INBOUND_LINE_1}
    assert m.tracked == 0


def test_legacy_14_without_uniqueid_is_logged_never_invented():
    items = transcribe("ami-legacy/asterisk-1.4-no-uniqueid.raw")
    assert all(i[2] is None for i in items)
    m = CallModel()
    assert replay(m, items) == []
    assert m.tracked == 0
    assert m.stats["untied"] == 5  # NEWCALL, OFFERING, SET, CALLINFO, IDLE
    assert m.stats["unknown_call"] == 2  # the two [~A...] events name a call nobody announced


def test_legacy_manual_typo_only_event():
    m = CallModel()
    items = transcribe("ami-legacy/asterisk-1.2-manual-typo.raw")
    assert [i[1] for i in items if i[0] == "tapi"] == [
        "TAPIEVENT [~1136996111.5&sip/bob] LINE_CALLSTATE LINECALLSTATE_CONNECTED"]
    assert replay(m, items) == [] and m.stats["unknown_call"] == 1
