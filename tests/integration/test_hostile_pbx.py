"""Issue 11, PBX side: what an outside caller (through the dialplan) or a hostile PBX can do.

Each test replays the issue's reproduction through the production path
(AMIParser -> TAPI UserEvent plugin -> bridge -> model) and checks what
reaches the PBX link and the log.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from twisted.logger import capturedLogs, formatEvent

from asttapi_server.ami.parser import AMIParser
from asttapi_server.core import grammar
from asttapi_server.core.model import TRUNCATED
from asttapi_server.errors import TelephonyError

from .fakes import make_bridge

DATA = Path(__file__).resolve().parent.parent / "data"
EVIL = "ami-hostile/evil-callerid-comma.raw"
EVIL_NUM = b"123,TAPIEVENT:\t[~/^/]\tLINE_NEWCALL\tline_1"


def make_evil_capture() -> bytes:
    """The hand-made stream of tests/data/ami-hostile/README.txt, from the real capture 05."""
    blocks = (DATA / "ami/05_inbound_call.monitor.raw").read_bytes().split(b"\r\n\r\n")
    out = []
    for b in blocks:
        if b"SET CALLERID 0301234567" in b and b.startswith(b"Event: Newexten"):
            b = b.replace(b"AppData: TAPI,TAPIEVENT: SET CALLERID 0301234567",
                          b"AppData: TAPI,TAPIEVENT: SET CALLERID " + EVIL_NUM)
        elif b"SET CALLERID 0301234567" in b and b.startswith(b"Event: UserEvent"):
            # app_userevent (12+): key/value pairs into one JSON object, stripped; the last TAPIEVENT wins.
            b = b.replace(b"TAPIEVENT: SET CALLERID 0301234567", b"TAPIEVENT: [~/^/]\tLINE_NEWCALL\tline_1")
        for key, old, new in ((b"CallerIDNum", b"0301234567", EVIL_NUM), (b"CallerIDName", b"Ext Caller", b"Evil"),
                              (b"ConnectedLineNum", b"0301234567", EVIL_NUM),
                              (b"ConnectedLineName", b"Ext Caller", b"Evil")):
            b = b.replace(key + b": " + old, key + b": " + new)
        out.append(b)
    return b"\r\n\r\n".join(out)


def feed(bridge, clock, raw: bytes) -> None:
    for message in AMIParser().feed(raw):
        if message.kind == "event":
            bridge.on_ami_event(message)
        clock.advance(0.001)


def lines_of(logged) -> list[str]:
    return [formatEvent(e) for e in logged]


def test_the_hostile_fixture_is_what_its_readme_says():
    assert (DATA / EVIL).read_bytes() == make_evil_capture()


def test_evil_caller_id_makes_no_call_for_a_regex_and_no_regex_is_ever_written():
    """Item 1: the caller id "Evil" <123,TAPIEVENT:\\t[~/^/]\\tLINE_NEWCALL\\tline_1> on Asterisk 22."""
    bridge, hub, clock, ami = make_bridge(linger=1000.0)
    raw = make_evil_capture()
    live = raw.index(b"LINECALLINFOSTATE_CALLERID")  # the call is still up here
    with capturedLogs() as logged:
        feed(bridge, clock, raw[:live] + b"\r\n\r\n")
    model = bridge.model
    assert model.by_uniqueid("/^/") is None
    # Only the real call exists: the dialplan's own LINE_NEWCALL on the caller's channel.
    handles = sorted({e.call for e in hub.events if e.call is not None})
    assert handles == [1]
    assert model.get(1).uniqueid == "1795674354.1"
    # The forged text was logged once, escaped (no raw TAB or line break reaches the log).
    bad = [line for line in lines_of(logged) if "Malformed TAPIEVENT" in line]
    assert len(bad) == 1
    assert "/^/" in bad[0] and "\t" not in bad[0] and "\\t" in bad[0]
    # lineDrop on every handle a client could try: nothing with a '/'-leading channel is written.
    for handle in range(1, 4):
        d = bridge.drop(handle)
        d.addErrback(lambda f: f.trap(TelephonyError))
    # Only the real call's own channel (from its UserEvents' Channel header) is hung up.
    assert [(name, headers) for name, headers, _d in ami.actions] == [
        ("Hangup", [("Channel", "Local/100@inbound-00000000;2"), ("Cause", "16")])]


def test_a_call_whose_channel_asterisk_never_named_is_not_dropped_by_its_uniqueid():
    """The old fallback wrote the Uniqueid (possibly dialplan text) as the Hangup channel."""
    bridge, _hub, _clock, ami = make_bridge()
    ami.event(Event="UserEvent", UserEvent="TAPI", TAPIEVENT="[~1795674354.9] LINE_NEWCALL line_1")
    call = bridge.model.by_uniqueid("1795674354.9")
    assert call is not None and call.channel is None
    err = []
    bridge.drop(call.handle).addErrback(err.append)
    assert err and err[0].value.lineerr == "LINEERR_INVALCALLSTATE"
    assert ami.actions == []


def test_an_old_asterisk_call_is_dropped_on_the_channel_its_newchannel_named():
    """Asterisk 1.4 - 11 UserEvents carry no Channel: the Newchannel of the Uniqueid gives it."""
    bridge, _hub, _clock, ami = make_bridge()
    ami.event(Event="Newchannel", Channel="SIP/trunk-00000003", Uniqueid="1136996111.5", State="Ring")
    ami.event(Event="UserEvent", UserEvent="TAPI", TAPIEVENT="[~1136996111.5] LINE_NEWCALL line_1")
    call = bridge.model.by_uniqueid("1136996111.5")
    bridge.drop(call.handle)
    (name, headers, _d), = ami.actions
    assert (name, headers) == ("Hangup", [("Channel", "SIP/trunk-00000003"), ("Cause", "16")])


@pytest.mark.parametrize("channel", ["/^/", " /.*/", "", "PJSIP", "x" * 300, "PJSIP/a\x00b"])
def test_a_channel_header_that_is_no_channel_name_never_becomes_the_calls_channel(channel):
    bridge, _hub, _clock, ami = make_bridge()
    ami.event(Event="UserEvent", Channel=channel, Uniqueid="1795674354.3", UserEvent="TAPI",
              TAPIEVENT="LINE_NEWCALL line_1")
    call = bridge.model.by_uniqueid("1795674354.3")
    assert call is not None and call.channel is None
    bridge.drop(call.handle).addErrback(lambda f: f.trap(TelephonyError))
    assert ami.actions == []


@pytest.mark.parametrize("text", [
    "[~/^/] LINE_NEWCALL line_1",
    "[~/.*/] LINE_CALLSTATE LINECALLSTATE_CONNECTED",
    "[~1.5&/^/] LINE_CALLSTATE LINECALLSTATE_CONNECTED",
    "LINE_NEWCALL /^/",
    "LINE_NEWCALL ~x",
    "[~" + "9" * 151 + "] LINE_NEWCALL line_1",
    "[~1.5\u00e9] LINE_NEWCALL line_1",
    "[~1.5;1] LINE_NEWCALL line_1",
])
def test_spec_ids_and_line_names_that_are_none_create_nothing(text):
    bridge, hub, _clock, ami = make_bridge()
    ami.event(Event="UserEvent", Channel="PJSIP/trunk-0001", Uniqueid="1795674354.1", UserEvent="TAPI",
              TAPIEVENT=text)
    assert hub.events == [] and bridge.model.tracked == 0


def test_a_megabyte_caller_name_is_stored_and_sent_bounded():
    """Item 6: a 1 MB SET CALLERIDNAME on a live call."""
    bridge, hub, _clock, ami = make_bridge()
    uid, ch = "1795674354.1", "PJSIP/trunk-0001"

    def say(text: str) -> None:
        ami.event(Event="UserEvent", Channel=ch, Uniqueid=uid, UserEvent="TAPI", TAPIEVENT=text)

    say("LINE_NEWCALL line_1")
    say("LINE_CALLSTATE LINECALLSTATE_OFFERING")
    huge = "\u00e9" + "x" * (1 << 20)
    for _ in range(20):
        say("SET CALLERIDNAME " + huge)
        say("SET CALLERID " + "5" * (1 << 20))
        say("LINE_CALLINFO LINECALLINFOSTATE_CALLERID")
    call = bridge.model.by_uniqueid(uid)
    name, number = call.callinfo["calleridname"], call.callinfo["callerid"]
    assert name.endswith(TRUNCATED) and name.startswith("\u00e9x")
    assert len(name.encode()) <= 256 and len(number.encode()) <= 256
    assert max(len(json.dumps(dict(e.callinfo))) for e in hub.events) < 2048
    # The parse cache never kept the long texts.
    assert grammar._parse_cached.cache_info().currsize <= 8192
    assert bridge.model.stats["truncated"] == 40


def test_the_field_cap_is_configurable():
    bridge, _hub, _clock, ami = make_bridge(max_field_bytes=64)
    ami.event(Event="UserEvent", Channel="PJSIP/t-1", Uniqueid="1.1", UserEvent="TAPI", TAPIEVENT="LINE_NEWCALL line_1")
    ami.event(Event="UserEvent", Channel="PJSIP/t-1", Uniqueid="1.1", UserEvent="TAPI",
              TAPIEVENT="SET CALLERIDNAME " + "y" * 100)
    assert len(bridge.model.by_uniqueid("1.1").callinfo["calleridname"].encode()) == 64


def test_a_tapievent_naming_20000_lines_is_refused_whole():
    """Items 6/8: one event naming 20,000 lines held the reactor 2.8 s."""
    bridge, hub, _clock, ami = make_bridge()
    names = " ".join(f"l{i}" for i in range(20000))
    with capturedLogs() as logged:
        for _ in range(50):
            ami.event(Event="UserEvent", Channel="PJSIP/t-1", Uniqueid="1.1", UserEvent="TAPI",
                      TAPIEVENT="LINE_NEWCALL " + names)
            ami.event(Event="UserEvent", Channel="PJSIP/t-1", Uniqueid="1.1", UserEvent="TAPI",
                      TAPIEVENT="[" + "&".join(f"l{i}" for i in range(2000)) + "] LINE_NEWCALL")
    assert hub.events == [] and bridge.model.tracked == 0
    bad = [line for line in lines_of(logged) if "Malformed TAPIEVENT" in line]
    assert len(bad) == 1 and len(bad[0]) < 600


def test_lines_per_event_and_per_call_follow_max_lines():
    bridge, hub, _clock, ami = make_bridge(max_lines=3)

    def say(text: str) -> None:
        ami.event(Event="UserEvent", Channel="PJSIP/t-1", Uniqueid="1.1", UserEvent="TAPI", TAPIEVENT=text)

    say("LINE_NEWCALL a b c d")  # refused whole
    assert hub.events == []
    say("LINE_NEWCALL a b c")
    say("LINE_NEWCALL d")  # a fourth line on the call: ignored
    assert [e.line for e in hub.events] == ["a", "b", "c"]


def test_calls_that_never_end_are_capped_with_one_log_line():
    """Item 6: calls without IDLE were not capped; at max_age each wrote its own line."""
    bridge, hub, clock, ami = make_bridge(max_calls=100)
    with capturedLogs() as logged:
        for i in range(1000):
            ami.event(Event="UserEvent", Channel=f"PJSIP/t-{i}", Uniqueid=f"1795674354.{i}", UserEvent="TAPI",
                      TAPIEVENT="LINE_NEWCALL line_1")
            clock.advance(0.01)
    model = bridge.model
    assert model.tracked == 100
    assert model.stats["evicted"] == 900
    # The evicted calls were ended for the clients, not silently forgotten.
    idles = [e for e in hub.events if e.param == "LINECALLSTATE_IDLE"]
    assert len(idles) == 900 and all(e.synthetic for e in idles)
    assert model.by_uniqueid("1795674354.999") is not None and model.by_uniqueid("1795674354.0") is None
    assert len([line for line in lines_of(logged) if "max_calls" in line]) == 1
    # When the survivors reach max_age together: one line, not one per call.
    with capturedLogs() as logged:
        clock.advance(bridge.model.max_age + 1)
    assert model.stats["synthetic_idle"] == 1000
    assert len([line for line in lines_of(logged) if "ended by the server" in line]) == 1


@pytest.mark.parametrize("number", ["h", "i", "t", "T", "s", "o", "a", "e", "fax", "talk"])
def test_special_extensions_are_never_dialled_or_transferred_to(number):
    bridge, _hub, _clock, ami = make_bridge()
    err = []
    bridge.make_call("line_1", number, owner="crm").addErrback(err.append)
    assert err and err[0].value.lineerr == "LINEERR_INVALADDRESS"
    ami.event(Event="UserEvent", Channel="PJSIP/t-1", Uniqueid="1.1", UserEvent="TAPI", TAPIEVENT="LINE_NEWCALL line_1")
    err = []
    bridge.blind_transfer(bridge.model.by_uniqueid("1.1").handle, number).addErrback(err.append)
    assert err and err[0].value.lineerr == "LINEERR_INVALADDRESS"
    assert ami.actions == []


def test_an_event_the_bridge_cannot_handle_logs_once_not_per_event(monkeypatch):
    bridge, _hub, _clock, ami = make_bridge()

    def broken(*_a, **_k):
        raise RuntimeError("boom")

    monkeypatch.setattr(bridge.model, "channel_hangup", broken)
    with capturedLogs() as logged:
        for i in range(500):
            ami.event(Event="Hangup", Channel=f"PJSIP/t-{i}", Uniqueid=f"1.{i}", Cause="16")
    failures = [e for e in logged if e.get("log_failure") is not None]
    assert len(failures) == 1


def test_headers_a_caller_injects_after_the_channel_snapshot_are_not_believed():
    """``UserEvent(TAPI,TAPIEVENT: SET CALLERID 1,Channel: PJSIP/victim-2,Uniqueid: 9.9)``:
    Asterisk 12+ writes the channel snapshot first, the arguments after; the first one counts."""
    bridge, _hub, clock, ami = make_bridge()
    feed(bridge, clock, b"Event: UserEvent\r\nChannel: PJSIP/trunk-00000001\r\nUniqueid: 1795674354.1\r\n"
                        b"UserEvent: TAPI\r\nChannel: PJSIP/victim-00000002\r\nUniqueid: 1795674354.2\r\n"
                        b"TAPIEVENT: LINE_NEWCALL line_1\r\n\r\n")
    call = bridge.model.by_uniqueid("1795674354.1")
    assert call.channel == "PJSIP/trunk-00000001"
    assert bridge.model.by_uniqueid("1795674354.2") is None
    bridge.drop(call.handle)
    assert [h for _n, h, _d in ami.actions] == [[("Channel", "PJSIP/trunk-00000001"), ("Cause", "16")]]


def test_a_huge_caller_id_in_the_channel_snapshot_is_bounded_at_line_newcall():
    """Asterisk 12+ snapshots carry CallerIDNum/Name on every event; LINE_NEWCALL reads them."""
    bridge, hub, _clock, ami = make_bridge()
    ami.event(Event="UserEvent", Channel="PJSIP/t-1", Uniqueid="1795674354.1", CallerIDNum="7" * 500_000,
              CallerIDName="N" * 500_000, Exten="1" * 500_000, UserEvent="TAPI", TAPIEVENT="LINE_NEWCALL line_1")
    info = bridge.model.by_uniqueid("1795674354.1").callinfo
    assert all(len(info[k].encode()) <= 256 for k in ("callerid", "calleridname", "calledid"))
    assert info["calleridname"].endswith(TRUNCATED)


def test_a_call_being_made_is_dropped_on_the_channel_asterisk_created_for_our_channel_id():
    """lineMakeCall, then lineDrop while the phone still rings: the Newchannel names the channel."""
    bridge, _hub, _clock, ami = make_bridge()
    handle = []
    bridge.make_call("line_1", "95551234", owner="crm").addCallback(handle.append)
    _name, headers, d = ami.actions.pop()
    channel_id = dict(headers)["ChannelId"]
    d.callback(None)
    ami.event(Event="Newchannel", Channel="Local/alice@phones-00000007;1", Uniqueid=channel_id)
    bridge.drop(handle[0])
    (name, headers, _d), = ami.actions
    assert (name, headers) == ("Hangup", [("Channel", "Local/alice@phones-00000007;1"), ("Cause", "16")])
