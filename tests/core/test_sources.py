"""One line, one source (core/sources.py): a UserEvent may not drive a device line.

The rule is the core's: ``CallControl.signals`` takes device lines out of every
signal that is not a device's, whichever plugin made it (the tests below moved
here from the device-line mapping, where the rule used to live, and add the
core's side of it).
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from asttapi_server.ami.message import Message
from asttapi_server.config import LineConfig
from asttapi_server.core import CallModel, parse_tapievent
from asttapi_server.core import device_lines as D
from asttapi_server.core.control import CallControl
from asttapi_server.core.effects import Diagnostic
from asttapi_server.core.grammar import TapiSignal
from asttapi_server.core.sources import guard, refusal

from .test_device_lines import DATA, LAB, NATIVE, messages

CONNECTED = "LINECALLSTATE_CONNECTED"
DEVICE_LINES = frozenset(line for lines in LAB.values() for line in lines)


def _signal(text, uniqueid="7.1", channel="Local/100@inbound-00000001;2"):
    return TapiSignal(parse_tapievent(text), uniqueid, channel)


@pytest.mark.parametrize(
    "text, kept, refused",
    [
        ("LINE_NEWCALL bob", None, ("bob",)),
        ("LINE_NEWCALL line_1 bob", "LINE_NEWCALL line_1", ("bob",)),
        ("[~7.1] LINE_NEWCALL bob line_1", "[~7.1] LINE_NEWCALL line_1", ("bob",)),
        ("[~7.1&bob] LINE_CALLSTATE LINECALLSTATE_CONNECTED", None, ("bob",)),
        ("[~7.1&bob&line_1&!line_2] LINE_CALLSTATE LINECALLSTATE_CONNECTED",
         "[~7.1&line_1&!line_2] LINE_CALLSTATE LINECALLSTATE_CONNECTED", ("bob",)),
        ("[bob] LINE_LINEDEVSTATE LINEDEVSTATE_OUTOFSERVICE", None, ("bob",)),
        ("[~7.1&bob] SET CALLERID 0301234567", None, ("bob",)),
        # naming no device line: untouched
        ("LINE_NEWCALL line_1", "LINE_NEWCALL line_1", ()),
        ("[~7.1&!bob] LINE_CALLSTATE LINECALLSTATE_HANGUP", "[~7.1&!bob] LINE_CALLSTATE LINECALLSTATE_HANGUP", ()),
        ("LINE_CALLSTATE LINECALLSTATE_IDLE", "LINE_CALLSTATE LINECALLSTATE_IDLE", ()),
    ],
)
def test_guard_takes_device_lines_out_of_a_user_event(text, kept, refused):
    guarded, named = guard(_signal(text), DEVICE_LINES)
    assert named == refused
    if kept is None:
        assert guarded is None
    else:
        # what is left is exactly what the grammar makes of the rewritten text
        assert guarded.command == parse_tapievent(kept)


def test_a_user_event_about_a_device_channels_uniqueid_drives_the_dialplans_call_only():
    """No line named, the ~id (or the Uniqueid of the channel that ran it) is a device channel's: the
    guard lets it through (it is the dialplan's own call), and the model keeps it off the device call."""
    lines = D.DeviceLines(LAB)
    model = CallModel(boot_id="test")
    msgs = messages(NATIVE / "s10_hold_unhold.raw")
    answered = next(i for i, m in enumerate(msgs) if m.name == "BridgeEnter")
    events = []
    for n, msg in enumerate(msgs[:answered + 1]):
        events += [e for s in lines.feed(msg.name, msg.get, float(n), model.view())
                   for e in model.apply(s, float(n))]
    (uid,) = model.legs
    bob_call = model.by_uniqueid(uid, device=True)
    for text, uniqueid in ((f"[~{uid}] LINE_CALLSTATE LINECALLSTATE_IDLE", "1.1"),
                           ("LINE_CALLSTATE LINECALLSTATE_ONHOLD", uid)):
        signal = _signal(text, uniqueid=uniqueid)
        assert guard(signal, DEVICE_LINES) == (signal, ())
        assert model.apply(signal, 99.0) == []  # no dialplan call on that Uniqueid: nothing
    assert bob_call.state("bob") == CONNECTED and model.stats["unknown_call"] == 2


def test_guard_changes_nothing_without_device_lines():
    seen = 0
    for path in sorted((DATA / "ami").glob("0[5-7]_*.monitor.raw")):
        for msg in messages(path):
            if msg.name == "UserEvent" and msg.get("TAPIEVENT"):
                signal = _signal(msg.get("TAPIEVENT"), msg.get("Uniqueid"))
                assert guard(signal, frozenset()) == (signal, ())
                seen += 1
    assert seen > 10


# -- the core applies it, to every signal that is not a device's ------------------------------

LINES = {
    "bob": LineConfig(name="bob", channel="PJSIP/201", context="plain-phones", device="PJSIP/201"),
    "line_1": LineConfig(name="line_1", channel="Local/bob@phones"),
}


def control(lines=LINES) -> CallControl:
    c = CallControl(CallModel(boot_id="b00t"), lines)
    c.answered(c.link_established(0.0).actions[0].token, [Message.from_items([("Response", "Success")])], None, 0.0)
    return c


def test_the_core_keeps_a_user_events_signal_off_a_device_line_and_says_so():
    c = control()
    fx = c.signals([_signal("LINE_NEWCALL line_1 bob", "7.1"),
                    _signal("[~7.1&bob&line_1] LINE_CALLSTATE LINECALLSTATE_OFFERING", "7.1")], 1.0)
    assert {e.line for e in fx} == {"line_1"}
    assert [d.key for d in fx.diagnostics] == [
        ("device line named by a UserEvent", ("bob",), "LINE_NEWCALL"),
        ("device line named by a UserEvent", ("bob",), "LINE_CALLSTATE"),
    ]
    assert all("bob" in d.fields["lines"] for d in fx.diagnostics)


def test_a_signal_naming_only_device_lines_changes_nothing():
    c = control()
    fx = c.signals([_signal("LINE_NEWCALL bob", "7.1")], 1.0)
    assert list(fx) == [] and len(fx.diagnostics) == 1
    assert c.model.by_uniqueid("7.1") is None


def test_a_devices_own_signal_drives_its_line():
    c = control()
    fx = c.signals([replace(_signal("[~9.1] LINE_NEWCALL bob", "9.1"), device=True)], 1.0)
    assert [(e.msg, e.line) for e in fx] == [("LINE_NEWCALL", "bob")] and not fx.diagnostics


def test_the_rule_follows_the_lines_of_a_reload():
    c = control({"line_1": LINES["line_1"]})
    assert [e.line for e in c.signals([_signal("LINE_NEWCALL bob", "7.1")], 1.0)] == ["bob"]
    c.set_lines(LINES)  # bob became a device line
    assert list(c.signals([_signal("LINE_NEWCALL bob", "7.2")], 2.0)) == []


def test_the_refusal_never_quotes_a_partys_number():
    text = "[~7.1&bob] SET CALLERID 0301234567"
    d = refusal(_signal(text), ("bob",))
    assert isinstance(d, Diagnostic) and "0301234567" not in repr(d.fields)
