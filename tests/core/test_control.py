"""The call and request lifecycle (core/control.py), pure: facts and requests in, effects out."""

from __future__ import annotations

import pytest

from asttapi_server.ami import actions
from asttapi_server.ami.message import Message
from asttapi_server.config import LineConfig
from asttapi_server.core.control import CallControl
from asttapi_server.core.model import CallModel
from asttapi_server.errors import LINK_DOWN, ActionFailed, ActionTimeout, LinkDown, TelephonyError, unexpected

from asttapi_server.idents import ByName

from .helpers import sig


def core_event(c: CallControl, message, now):
    """What the route table does with one of the core's events (None: not the core's)."""
    handler = ByName(c.event_handlers()).get(message.name)
    return None if handler is None else handler(message, now)

LINES = {"line_1": LineConfig(name="line_1", channel="Local/alice@phones", context="trunklocal",
                              callerid='"Alice" <201>')}


def control(**model) -> CallControl:
    c = CallControl(CallModel(boot_id="b00t", **model), LINES, originate_timeout=30.0)
    fx = c.link_established(0.0)
    (send,) = fx.actions
    assert send.action == actions.coreshowchannels()
    c.answered(send.token, [Message.from_items([("Response", "Success")])], None, 0.0)
    assert c.link_up
    return c


def event(**headers: str) -> Message:
    return Message.from_items([("Event", headers.pop("Event")), *headers.items()])


def brief(fx) -> list[tuple]:
    return [(e.msg, e.line, e.param) for e in fx]


def test_link_state_is_told_once_per_change_and_in_service_only_after_the_resync():
    c = CallControl(CallModel(), LINES)
    assert not c.link_up
    fx = c.link_established(0.0)
    assert not c.link_up and fx == []  # not in service until the channel list is in
    fx = c.answered(fx.actions[0].token, [], None, 0.0)
    assert c.link_up and brief(fx) == [("LINE_LINEDEVSTATE", None, "LINEDEVSTATE_INSERVICE")]
    assert brief(c.link_lost(1.0)) == [("LINE_LINEDEVSTATE", None, "LINEDEVSTATE_OUTOFSERVICE")]
    assert c.link_lost(1.0) == [] and not c.link_up


def test_a_stale_resync_answer_is_ignored():
    c = CallControl(CallModel(), LINES)
    stale = c.link_established(0.0).actions[0].token
    c.link_lost(1.0)
    fresh = c.link_established(2.0).actions[0].token
    assert c.answered(stale, [], None, 3.0) == [] and not c.link_up
    c.answered(fresh, [], None, 3.0)
    assert c.link_up


def test_make_call_builds_the_originate_with_ami_actions_only():
    c = control()
    token, fx = c.make_call("line_1", "95551234", owner=7, now=1.0)
    (send,) = fx.actions
    assert send.token == token
    call = c.model.get(1)
    assert send.action == actions.originate(
        "Local/alice@phones", context="trunklocal", exten="95551234", priority=1, callerid='"Alice" <201>',
        timeout_ms=30000, async_=True, channel_id=call.channel_id, other_channel_id=call.channel_id + "-2",
        variables=(("TAPI_LINE", "line_1"), ("TAPI_CALL", "1")),
    )
    assert call.channel_id == "asttapi-b00t-1"
    # The answer to the action is the request's reply: the handle.
    fx = c.answered(token, Message.from_items([("Response", "Success")]), None, 1.1)
    assert [(r.token, r.value, r.error) for r in fx.replies] == [(token, 1, None)]


def test_originate_response_is_matched_by_the_actionid_the_link_gave():
    c = control()
    token, _fx = c.make_call("line_1", "95551234", owner=7, now=1.0)
    c.sent(token, "link-42")
    c.answered(token, Message.from_items([("Response", "Success")]), None, 1.1)
    # Asterisk 1.8: no ChannelId echoed, only the ActionID.
    fx = core_event(c, event(Event="OriginateResponse", ActionID="link-42", Response="Failure",
                           Channel="Local/alice@phones", Reason="5", Uniqueid="<unknown>"), 2.0)
    assert [(e.param, e.mode) for e in fx] == [
        ("LINECALLSTATE_DISCONNECTED", "LINEDISCONNECTMODE_BUSY"), ("LINECALLSTATE_IDLE", None)]
    assert [call.handle for call in fx.finished] == [1]
    assert ("originate", "failed") in [d.key for d in fx.diagnostics]


@pytest.mark.parametrize("error, lineerr, text", [
    (LinkDown("gone"), "LINEERR_DISCONNECTED", "went down before Originate"),
    (ActionTimeout("late"), "LINEERR_OPERATIONFAILED", "may or may not have been carried out"),
    (ActionFailed("Originate", Message.from_items([("Response", "Error"), ("Message", "No such")])),
     "LINEERR_OPERATIONFAILED", "Asterisk refused Originate: No such"),
])
def test_a_failed_originate_ends_the_call_and_answers_the_mapped_lineerr(error, lineerr, text):
    c = control(linger=0)
    token, _fx = c.make_call("line_1", "95551234", owner=7, now=1.0)
    fx = c.answered(token, None, error, 2.0)
    (reply,) = fx.replies
    assert isinstance(reply.error, TelephonyError) and reply.error.lineerr == lineerr and text in str(reply.error)
    assert [call.handle for call in fx.finished] == [1] and c.model.tracked == 0


def test_an_unexpected_error_is_a_diagnostic_and_a_generic_lineerr():
    c = control()
    token, _fx = c.make_call("line_1", "201", owner=1, now=1.0)
    fx = c.answered(token, None, RuntimeError("bug"), 2.0)
    assert fx.replies[0].error.lineerr == "LINEERR_OPERATIONFAILED"
    assert fx.diagnostics[-1].level == "error"
    # the one wording, the client session's too (errors.unexpected)
    assert str(fx.replies[0].error) == str(unexpected("Originate")) == "Originate failed; the server log has the details"


def test_link_down_is_worded_once_for_the_core_and_the_client_session():
    """Issue 25: the core's refusal and the session's are the same sentence, the one docs/protocol.md shows."""
    from pathlib import Path

    c = CallControl(CallModel(), LINES)
    with pytest.raises(TelephonyError) as e:
        c.make_call("line_1", "201", owner=1, now=0.0)
    assert (e.value.lineerr, str(e.value)) == ("LINEERR_DISCONNECTED", LINK_DOWN)
    protocol = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()
    assert f'"message":"{LINK_DOWN}"' in protocol


def test_requests_refused_before_anything_is_sent_raise():
    c = CallControl(CallModel(), LINES)
    with pytest.raises(TelephonyError) as e:
        c.make_call("line_1", "201", owner=1, now=0.0)
    assert e.value.lineerr == "LINEERR_DISCONNECTED"
    c = control()
    for request, lineerr in [
        (lambda: c.make_call("line_9", "201", owner=1, now=0.0), "LINEERR_OPERATIONUNAVAIL"),
        (lambda: c.make_call("line_1", "1;2", owner=1, now=0.0), "LINEERR_INVALADDRESS"),
        (lambda: c.drop(99, 0.0), "LINEERR_INVALCALLHANDLE"),
    ]:
        with pytest.raises(TelephonyError) as e:
            request()
        assert e.value.lineerr == lineerr
    assert c.model.tracked == 0


def test_transfer_chooses_blindtransfer_for_the_phones_own_channel_and_redirect_otherwise():
    c = control()
    for uid, channel in (("1.1", "Local/alice@phones-0000000b;1"), ("1.2", "PJSIP/trunk-0007")):
        c.signals([sig("LINE_NEWCALL line_1", uid, channel)], 1.0)
    _t, fx = c.blind_transfer(1, "202", 2.0)
    assert fx.actions[0].action == actions.blind_transfer("Local/alice@phones-0000000b;1", "trunklocal", "202")
    _t, fx = c.blind_transfer(2, "202", 2.0)
    assert fx.actions[0].action == actions.redirect("PJSIP/trunk-0007", "trunklocal", "202", 1)
    _t, fx = c.drop(2, 2.0)
    assert fx.actions[0].action == actions.hangup("PJSIP/trunk-0007", 16)


def test_a_contact_is_wanted_once_per_caller_number_and_not_for_the_users_own_phone():
    c = control()
    fx = c.signals([sig("LINE_NEWCALL line_1", "1.1", "PJSIP/trunk-1"), sig("SET CALLERID 0301234567", "1.1"),
                    sig("LINE_CALLINFO LINECALLINFOSTATE_CALLERID", "1.1")], 1.0)
    assert [(w.handle, w.number) for w in fx.contacts] == [(1, "0301234567")]
    assert c.signals([sig("LINE_CALLINFO LINECALLINFOSTATE_CALLERID", "1.1")], 1.1).contacts == ()
    fx = c.contact_found(1, "0301234567", {"name": "Ext Caller"}, 1.2)
    assert [(e.param, e.callinfo["contact"]) for e in fx] == [("LINECALLINFOSTATE_OTHER", {"name": "Ext Caller"})]
    assert c.contact_found(1, "0000", None, 1.3) == []  # an answer for an older number
    # The line's own phone dialling out: callerid is the user.
    fx = c.signals([sig("LINE_NEWCALL line_1", "2.1", "Local/alice@phones-0000000c;1"),
                    sig("SET CALLERID 201", "2.1"), sig("LINE_CALLINFO LINECALLINFOSTATE_CALLERID", "2.1")], 2.0)
    assert fx.contacts == ()
    c.looks_up_contacts = False
    fx = c.signals([sig("LINE_NEWCALL line_1", "3.1", "PJSIP/trunk-2"), sig("SET CALLERID 0301", "3.1"),
                    sig("LINE_CALLINFO LINECALLINFOSTATE_CALLERID", "3.1")], 3.0)
    assert fx.contacts == ()


def test_set_lines_takes_effect_for_the_next_request():
    c = control()
    c.set_lines({"line_2": LineConfig(name="line_2", channel="PJSIP/bob", context="ctx")})
    with pytest.raises(TelephonyError):
        c.make_call("line_1", "201", owner=1, now=0.0)
    _t, fx = c.make_call("line_2", "201", owner=1, now=0.0)
    assert dict(fx.actions[0].action.headers)["Channel"] == "PJSIP/bob"


def test_a_call_named_by_newchannel_only_is_dropped_on_that_channel_never_on_its_uniqueid():
    c = control()
    c.signals([sig("LINE_NEWCALL line_1", "5.1")], 1.0)  # 1.4-11: no Channel header
    with pytest.raises(TelephonyError):
        c.drop(1, 1.0)
    core_event(c, event(Event="Newchannel", Channel="SIP/100-00000001", Uniqueid="5.1"), 1.1)
    _t, fx = c.drop(1, 1.2)
    assert fx.actions[0].action == actions.hangup("SIP/100-00000001", 16)
    assert core_event(c, event(Event="VarSet", Uniqueid="5.1"), 1.3) is None  # not the core's event
