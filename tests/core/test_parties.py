"""Withheld numbers (issue 21 item 2): the one rule (core/parties.py), the model's flags, and the core
reading a party's presentation before it shows it (core/control.py), pure."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from asttapi_server.ami import actions
from asttapi_server.ami.message import Message
from asttapi_server.config import LineConfig
from asttapi_server.core import parties
from asttapi_server.core.control import SCREEN_TIMEOUT, CallControl
from asttapi_server.core.grammar import Screen, TapiSignal, parse_tapievent
from asttapi_server.core.model import CallModel
from asttapi_server.errors import ActionFailed, ActionTimeout, LinkDown

from .helpers import sig

BLOCKED, UNAVAIL, UNKNOWN = parties.BLOCKED, parties.UNAVAIL, parties.UNKNOWN
ADDRESS, NAME, ALLOWED = parties.ADDRESS, parties.NAME, parties.ALLOWED
NUMBER, CALLER = "0301234567", "Ext Caller"


# -- reading Asterisk's presentation ------------------------------------------------------------


@pytest.mark.parametrize("value, judged", [
    # Getvar CALLERID(pres) / CONNECTEDLINE(pres): main/callerid.c's pres_types names
    ("allowed_not_screened", ALLOWED), ("allowed_passed_screen", ALLOWED), ("allowed_failed_screen", ALLOWED),
    ("allowed", ALLOWED),
    ("prohib_not_screened", BLOCKED), ("prohib_passed_screen", BLOCKED), ("prohib_failed_screen", BLOCKED),
    ("prohib", BLOCKED),
    ("unavailable", UNAVAIL),
    # NewCallerid's CID-CallingPres: "%d (%s)" of the AST_PRES_* value (bits 0x60: the restriction)
    ("0 (Presentation Allowed, Not Screened)", ALLOWED), ("3 (Presentation Allowed, Network Number)", ALLOWED),
    ("32 (Presentation Prohibited, Not Screened)", BLOCKED), ("35 (Presentation Prohibited, Network Number)", BLOCKED),
    ("67 (Number Unavailable)", UNAVAIL), ("96 (reserved)", BLOCKED),
    # anything else is not verified: never shown
    ("", UNKNOWN), (None, UNKNOWN), ("yes", UNKNOWN),
])
def test_presentation_as_asterisk_writes_it(value, judged):
    assert parties.presentation(value) == judged


@pytest.mark.parametrize("number, name, judged, shown", [
    (NUMBER, CALLER, None, (NUMBER, CALLER, (ADDRESS, NAME))),
    (NUMBER, CALLER, ALLOWED, (NUMBER, CALLER, (ADDRESS, NAME))),
    (NUMBER, None, ALLOWED, (NUMBER, None, (ADDRESS,))),
    (None, CALLER, ALLOWED, (None, CALLER, (NAME,))),
    (NUMBER, CALLER, BLOCKED, (None, None, (BLOCKED,))),
    (NUMBER, CALLER, UNAVAIL, (None, None, (UNAVAIL,))),
    (NUMBER, CALLER, UNKNOWN, (None, None, (UNKNOWN,))),
    # a SIP anonymous From: "Anonymous" <sip:anonymous@anonymous.invalid>
    ("anonymous", "Anonymous", ALLOWED, (None, None, (BLOCKED,))),
    ("Restricted", None, None, (None, None, (BLOCKED,))),
    # no id at all: unavailable when the source says the party is there, unknown before that
    (None, None, ALLOWED, (None, None, (UNAVAIL,))),
    ("", None, ALLOWED, ("", None, (UNAVAIL,))),
    (None, None, None, (None, None, (UNKNOWN,))),
])
def test_the_one_rule(number, name, judged, shown):
    assert parties.shown(number, name, judged) == shown


# -- the signals of a call, once judged -----------------------------------------------------------


def test_masked_hides_every_value_of_a_withheld_party_and_nothing_else():
    judged = {NUMBER: BLOCKED, CALLER: BLOCKED, "201": ALLOWED}
    newcall = TapiSignal(parse_tapievent("LINE_NEWCALL line_1"), "1.1", "PJSIP/trunk-1", NUMBER, CALLER, "100",
                         screen=Screen("CALLERID(pres)", NUMBER, CALLER))
    out = parties.masked(newcall, judged)
    assert (out.callerid, out.calleridname, out.exten, out.presentation, out.screen) == (None, None, "100", BLOCKED,
                                                                                         None)
    for text, want in ((f"SET CALLERID {NUMBER}", "SET CALLERIDFLAGS LINECALLPARTYID_BLOCKED"),
                       (f"[~1.1&line_1] SET CONNECTEDIDNAME {CALLER}",
                        "[~1.1&line_1] SET CONNECTEDIDFLAGS LINECALLPARTYID_BLOCKED"),
                       ("SET CONNECTEDID 201", "SET CONNECTEDID 201"),
                       ("SET CALLEDID 100", "SET CALLEDID 100"),
                       ("LINE_CALLINFO LINECALLINFOSTATE_CALLERID", "LINE_CALLINFO LINECALLINFOSTATE_CALLERID")):
        out = parties.masked(sig(text, "1.1"), judged)
        assert out.command == parse_tapievent(want)  # the raw text too: it may reach a log line
        assert NUMBER not in out.command.raw and CALLER not in out.command.raw


def test_a_hiding_verdict_sticks():
    judged: dict = {}
    parties.judge(judged, Screen("CONNECTEDLINE(pres)", NUMBER, CALLER), BLOCKED)
    parties.judge(judged, Screen("CONNECTEDLINE(pres)", NUMBER, None), ALLOWED)
    assert judged == {NUMBER: BLOCKED, CALLER: BLOCKED}
    assert parties.verdict(judged, Screen("CONNECTEDLINE(pres)", None, CALLER)) == BLOCKED
    assert parties.verdict(judged, Screen("CONNECTEDLINE(pres)", "203", "alice")) is None
    assert parties.verdict(judged, Screen("CONNECTEDLINE(pres)", None, None)) == ALLOWED  # nothing to hide


# -- the model's flags ---------------------------------------------------------------------------


def test_the_model_keeps_a_withheld_party_hidden_until_a_new_number_replaces_it():
    m = CallModel(boot_id="t")
    m.apply(sig("LINE_NEWCALL line_1", "1.1"), 0.0)
    m.apply(sig("SET CALLERIDFLAGS LINECALLPARTYID_BLOCKED", "1.1"), 0.1)
    info = m.by_uniqueid("1.1").callinfo
    assert (info["callerid"], info["calleridname"], info["calleridflags"]) == (None, None, (BLOCKED,))
    m.apply(sig(f"SET CALLERIDNAME {CALLER}", "1.1"), 0.2)  # a name alone does not make it reappear
    assert (info["calleridname"], info["calleridflags"]) == (None, (BLOCKED,))
    m.apply(sig('SET CONNECTEDID "Bob" <201>', "1.1"), 0.3)
    assert (info["connectedid"], info["connectedidname"], info["connectedidflags"]) == ("201", "Bob", (ADDRESS, NAME))
    m.apply(sig("SET CALLERID 0309876543", "1.1"), 0.4)  # a new number is a new party
    assert (info["callerid"], info["calleridflags"]) == ("0309876543", (ADDRESS,))
    assert (info["calledidflags"]) == (UNKNOWN,)  # nothing known of it yet


def test_flags_survive_the_call_store_and_an_old_store_gets_them_worked_out():
    m = CallModel(boot_id="t")
    m.apply(TapiSignal(parse_tapievent("LINE_NEWCALL line_1"), "1.1", "PJSIP/t-1", None, None, "100",
                       presentation=BLOCKED), 0.0)
    data = json.loads(json.dumps(m.save_state()))
    (call,) = CallModel(boot_id="r").restore_state(data, 1.0)
    assert call.callinfo["calleridflags"] == (BLOCKED,) and call.callinfo["calledidflags"] == (ADDRESS,)
    # a store written before the flags existed
    for key in ("calleridflags", "calledidflags", "connectedidflags"):
        del data["calls"][0]["callinfo"][key]
    data["calls"][0]["callinfo"]["callerid"] = NUMBER
    (call,) = CallModel(boot_id="r").restore_state(data, 1.0)
    info = call.callinfo
    assert (info["calleridflags"], info["calledidflags"], info["connectedidflags"]) == ((ADDRESS,), (ADDRESS,),
                                                                                          (UNKNOWN,))
    data["calls"][0]["callinfo"]["calleridflags"] = ["LINECALLPARTYID_NOSUCHFLAG"]
    with pytest.raises(ValueError, match="calleridflags"):  # live input's rules: not TAPI's, not ours
        CallModel(boot_id="r").restore_state(data, 1.0)


# -- the core reads the presentation before the pop ------------------------------------------------


LINES = {"bob": LineConfig(name="bob", channel="PJSIP/201", context="plain-phones", device="PJSIP/201"),
         # a dialplan line (the core keeps UserEvents off the device line bob: core/sources.py)
         "line_1": LineConfig(name="line_1", channel="Local/bob@phones")}


def control() -> CallControl:
    c = CallControl(CallModel(boot_id="b00t"), LINES)
    c.answered(c.link_established(0.0).actions[0].token, [Message.from_items([("Response", "Success")])], None, 0.0)
    return c


def offered(uid="9.2", number=NUMBER, name=CALLER) -> list[TapiSignal]:
    """A device line's offered call, as core/device_lines.py makes it (a screened LINE_NEWCALL)."""
    newcall = TapiSignal(parse_tapievent(f"[~{uid}] LINE_NEWCALL bob"), uid, "PJSIP/201-00000002", number, name,
                         "100", origin="LINECALLORIGIN_EXTERNAL", device=True,
                         screen=Screen("CONNECTEDLINE(pres)", number, name))
    offering = replace(sig(f"[~{uid}&bob] LINE_CALLSTATE LINECALLSTATE_OFFERING", uid), device=True)
    return [newcall, offering]


def getvar(fx):
    (send,) = fx.actions
    assert send.action == actions.getvar("PJSIP/201-00000002", "CONNECTEDLINE(pres)")
    assert send.timeout == SCREEN_TIMEOUT
    return send.token


def answer(value: str) -> Message:
    return Message.from_items([("Response", "Success"), ("Variable", "CONNECTEDLINE(pres)"), ("Value", value)])


def test_the_pop_waits_for_one_presentation_read_then_shows_a_withheld_caller_hidden():
    c = control()
    fx = c.signals(offered(), 1.0)
    assert list(fx) == []  # held: one AMI round trip
    token = getvar(fx)
    # a signal of the same call that arrives meanwhile waits too; another call does not
    assert c.signals([replace(sig("[~9.2&bob] LINE_CALLSTATE LINECALLSTATE_IDLE", "9.2"), device=True)], 1.01) == []
    other = c.signals(offered("9.3", "0309998877", "Other"), 1.02)
    assert list(other) == [] and len(other.actions) == 1  # its own read
    fx = c.answered(token, answer("prohib_passed_screen"), None, 1.05)
    assert [(e.msg, e.param) for e in fx] == [("LINE_NEWCALL", None), ("LINE_CALLSTATE", "LINECALLSTATE_OFFERING"),
                                              ("LINE_CALLSTATE", "LINECALLSTATE_IDLE")]
    info = fx[0].callinfo
    assert (info["callerid"], info["calleridname"], info["calleridflags"]) == (None, None, (BLOCKED,))
    assert (info["calledid"], info["origin"]) == ("100", "LINECALLORIGIN_EXTERNAL")
    assert fx.contacts == ()  # no lookup of a withheld number


def test_an_allowed_caller_is_shown_and_looked_up_and_a_later_set_of_it_needs_no_second_read():
    c = control()
    token = getvar(c.signals(offered(), 1.0))
    fx = c.answered(token, answer("allowed_not_screened"), None, 1.05)
    assert fx[0].callinfo["callerid"] == NUMBER and fx[0].callinfo["calleridflags"] == (ADDRESS, NAME)
    assert [w.number for w in fx.contacts] == [NUMBER]
    connected = replace(sig(f"[~9.2&bob] SET CONNECTEDID {NUMBER}", "9.2"), device=True,
                        screen=Screen("CONNECTEDLINE(pres)", NUMBER, CALLER))
    fx = c.signals([connected], 2.0)
    assert fx.actions == () and c.model.by_uniqueid("9.2", device=True).callinfo["connectedid"] == NUMBER


@pytest.mark.parametrize("error", [ActionFailed("Getvar", Message.from_items([("Response", "Error"),
                                                                              ("Message", "No such channel")])),
                                   ActionTimeout("Getvar"), LinkDown("gone")])
def test_a_presentation_that_cannot_be_read_hides_the_party(error):
    c = control()
    token = getvar(c.signals(offered(), 1.0))
    fx = c.answered(token, None, error, 3.0)
    info = fx[0].callinfo
    assert (info["callerid"], info["calleridname"], info["calleridflags"]) == (None, None, (UNKNOWN,))
    (diagnostic,) = fx.diagnostics
    assert diagnostic.fields["function"] == "CONNECTEDLINE(pres)"
    assert diagnostic.fields["channel"] == "PJSIP/201-00000002"
    assert NUMBER not in repr(diagnostic) and CALLER not in repr(diagnostic)


def test_a_hangup_while_the_read_is_pending_still_arms_the_safety_net():
    c = control()
    token = getvar(c.signals(offered(), 1.0))
    hangup = Message.from_items([("Event", "Hangup"), ("Channel", "PJSIP/201-00000002"), ("Uniqueid", "9.2"),
                                 ("Cause", "16")])
    c.event_handlers()["Hangup"](hangup, 1.01)
    c.answered(token, answer("allowed"), None, 1.05)
    assert c.model.by_uniqueid("9.2", device=True).hangup_at == 1.05
    assert c.next_deadline() == 1.05 + c.model.hangup_grace


def test_a_dialplans_set_of_the_withheld_number_after_its_newcall_is_hidden_too():
    """The README dialplan: LINE_NEWCALL (the caller from the channel snapshot), then SET CALLERID ${...}."""
    c = control()
    newcall = TapiSignal(parse_tapievent("LINE_NEWCALL line_1"), "7.1", "PJSIP/trunk-00000001", NUMBER, CALLER, "100",
                         screen=Screen("CALLERID(pres)", NUMBER, CALLER))
    fx = c.signals([newcall, sig(f"SET CALLERID {NUMBER}", "7.1"), sig(f"SET CALLERIDNAME {CALLER}", "7.1"),
                    sig("LINE_CALLINFO LINECALLINFOSTATE_CALLERID", "7.1")], 1.0)
    (send,) = fx.actions
    assert send.action == actions.getvar("PJSIP/trunk-00000001", "CALLERID(pres)")
    fx = c.answered(send.token, answer("prohib"), None, 1.05)
    assert all(e.callinfo["callerid"] is None and e.callinfo["calleridflags"] == (BLOCKED,) for e in fx)
    assert NUMBER not in json.dumps(c.model.save_state())


def test_without_a_link_nothing_can_be_read_and_the_party_stays_hidden():
    c = CallControl(CallModel(boot_id="b00t"), LINES)
    fx = c.signals(offered(), 1.0)
    assert fx.actions == () and fx[0].callinfo["calleridflags"] == (UNKNOWN,)


def test_a_call_adopted_at_the_resync_is_screened_too():
    """The server (re)connects mid-call: the listed device channel's caller is its ConnectedLine, read
    through the same presentation check before it is shown."""
    from asttapi_server.core.device_lines import DeviceLines

    lines = DeviceLines({"PJSIP/201": ["bob"]})
    item = Message.from_items([("Event", "CoreShowChannel"), ("Channel", "PJSIP/201-00000009"),
                               ("ChannelState", "6"), ("CallerIDNum", "201"), ("ConnectedLineNum", NUMBER),
                               ("ConnectedLineName", CALLER), ("Uniqueid", "9.9"), ("Application", "AppDial")])
    c = CallControl(CallModel(boot_id="b00t"), LINES)
    token = c.link_established(0.0).actions[0].token
    fx = c.answered(token, [Message.from_items([("Response", "Success")]), item], None, 0.0,
                    signals=lines.resync([item.get], 0.0, c.view))
    (send,) = fx.actions
    assert send.action == actions.getvar("PJSIP/201-00000009", "CONNECTEDLINE(pres)")
    fx = c.answered(send.token, answer("prohib_not_screened"), None, 0.05)
    assert {e.callinfo["callerid"] for e in fx} == {None}
    assert fx[-1].callinfo["connectedidflags"] == (BLOCKED,) and fx[-1].param == "LINECALLSTATE_CONNECTED"


def test_a_log_line_never_quotes_a_partys_number_or_name():
    """A SET for a call the model does not know is logged; the number in it may be withheld."""
    m = CallModel(boot_id="t")
    fx = m.apply(sig(f"[~5.5&line_1] SET CALLERID {NUMBER}", "5.5"), 0.0)
    (diagnostic,) = fx.diagnostics
    assert diagnostic.fields["raw"] == "[~5.5&line_1] SET CALLERID …"
    fx = m.apply(sig("SET CALLORIGIN LINECALLORIGIN_EXTERNAL", "5.6"), 0.0)
    assert fx.diagnostics[0].fields["raw"] == "SET CALLORIGIN LINECALLORIGIN_EXTERNAL"
