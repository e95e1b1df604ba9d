"""The caller's number from the AMI channel snapshot at LINE_NEWCALL (pure model, no AMI parser)."""

from __future__ import annotations

from asttapi_server.core.grammar import TapiSignal, parse_tapievent
from asttapi_server.core.model import CallModel


def newcall(text="LINE_NEWCALL line_1", uid="1.1", channel="PJSIP/trunk-1", **who) -> TapiSignal:
    return TapiSignal(parse_tapievent(text), uid, channel, **who)


def test_newcall_fills_caller_and_dialled_number():
    m = CallModel()
    (ev,) = m.apply(newcall(callerid="0301234567", calleridname="Ext Caller", exten="100"), 0.0)
    assert (ev.callinfo["callerid"], ev.callinfo["calleridname"], ev.callinfo["calledid"]) == (
        "0301234567", "Ext Caller", "100")


def test_an_exten_that_is_not_a_number_is_not_the_called_number():
    m = CallModel()
    for exten in ("s", "h", "_9NXX", "i"):
        (ev,) = m.apply(newcall(uid=exten, exten=exten), 0.0)
        assert ev.callinfo["calledid"] is None, exten
    (ev,) = m.apply(newcall(uid="x", exten="+4930*12#"), 0.0)
    assert ev.callinfo["calledid"] == "+4930*12#"


def test_another_channels_newcall_for_the_call_does_not_name_the_caller():
    """[~A] LINE_NEWCALL line_2 run on the answering phone's channel: its CallerIDNum is not the caller."""
    m = CallModel()
    m.apply(newcall(callerid="0301234567", exten="100"), 0.0)
    (ev,) = m.apply(newcall("[~1.1] LINE_NEWCALL line_2", uid="1.2", channel="Local/bob-1;1",
                            callerid="100", calleridname="Bob", exten="s"), 1.0)
    assert ev.line == "line_2" and ev.callinfo["callerid"] == "0301234567"
    assert ev.callinfo["calleridname"] is None


def test_foreign_channel_newcall_creating_a_call_leaves_callerid_to_the_dialplan():
    m = CallModel()
    (ev,) = m.apply(newcall("[~9.9] LINE_NEWCALL line_1", uid="1.2", callerid="100"), 0.0)
    assert ev.callinfo["callerid"] is None


def test_the_dialplan_set_overrides_and_a_later_newcall_does_not_undo_it():
    m = CallModel()
    m.apply(newcall(callerid="0301234567"), 0.0)
    m.apply(TapiSignal(parse_tapievent("SET CALLERID +49301234567"), "1.1", "PJSIP/trunk-1"), 0.1)
    (ev,) = m.apply(newcall("LINE_NEWCALL line_2", callerid="0301234567"), 0.2)
    assert ev.callinfo["callerid"] == "+49301234567"


def test_lineMakeCall_keeps_the_number_asked_for_as_calledid():
    m = CallModel(boot_id="t")
    call = m.make_call("line_1", "+4930123", owner="me", now=0.0)
    (ev,) = m.apply(newcall(uid=call.channel_id, channel="Local/alice@phones-1;1", callerid="201",
                            calleridname="Alice", exten="4930123"), 0.5)
    assert ev.owner == "me"
    assert (ev.callinfo["calledid"], ev.callinfo["callerid"], ev.callinfo["origin"]) == (
        "+4930123", "201", "LINECALLORIGIN_OUTBOUND")


def test_without_a_snapshot_nothing_changes():
    """Asterisk 1.4-11 send no CallerIDNum: the TapiSignal's fields stay None."""
    m = CallModel()
    (ev,) = m.apply(newcall(), 0.0)
    assert ev.callinfo["callerid"] is None and ev.callinfo["calledid"] is None
