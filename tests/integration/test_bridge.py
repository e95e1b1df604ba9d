"""The bridge with a fake AMI link, a recording hub and a Clock."""

from __future__ import annotations

import pytest
from twisted.internet.defer import Deferred, succeed

from asttapi_server.ami.message import Message
from asttapi_server.errors import ActionFailed, LinkDown, TelephonyError

from .fakes import make_bridge


def user_event(ami, text: str, uniqueid: str, channel: str = "PJSIP/alice-0001") -> None:
    ami.event(Event="UserEvent", Channel=channel, Uniqueid=uniqueid, UserEvent="TAPI", TAPIEVENT=text)


def failure_of(d: Deferred) -> Exception:
    failures = []
    d.addErrback(failures.append)
    assert failures, "expected the Deferred to have failed"
    return failures[0].value


def result_of(d: Deferred):
    results = []
    d.addCallback(results.append)
    assert results, "expected the Deferred to have fired"
    return results[0]


# -- link state and resync ---------------------------------------------------


def test_link_loss_and_return_tell_every_line_and_resync_ends_dead_calls():
    bridge, hub, clock, ami = make_bridge()
    user_event(ami, "LINE_NEWCALL line_1", "100.1")
    user_event(ami, "LINE_CALLSTATE LINECALLSTATE_OFFERING", "100.1")
    user_event(ami, "LINE_NEWCALL line_1", "100.2")
    user_event(ami, "LINE_CALLSTATE LINECALLSTATE_OFFERING", "100.2")
    hub.events.clear()

    ami.link(False)
    assert [(e.msg, e.line, e.param) for e in hub.events] == [
        ("LINE_LINEDEVSTATE", None, "LINEDEVSTATE_OUTOFSERVICE")
    ]
    assert not bridge.link_up
    hub.events.clear()

    ami.link(True)
    assert not bridge.link_up  # not in service until resynchronised
    _headers, d = ami.pop("CoreShowChannels")
    d.callback([
        Message.from_items([("Response", "Success"), ("EventList", "start")]),
        Message.from_items([("Event", "CoreShowChannel"), ("Channel", "PJSIP/x-1"), ("Uniqueid", "100.2")]),
        Message.from_items([("Event", "CoreShowChannelsComplete"), ("ListItems", "1")]),
    ])
    assert bridge.link_up
    brief = [(e.msg, e.call, e.param, e.synthetic) for e in hub.events]
    dead = bridge.model.by_uniqueid("100.1")
    assert brief[:2] == [
        ("LINE_CALLSTATE", dead.handle, "LINECALLSTATE_DISCONNECTED", True),
        ("LINE_CALLSTATE", dead.handle, "LINECALLSTATE_IDLE", True),
    ]
    assert brief[-1] == ("LINE_LINEDEVSTATE", None, "LINEDEVSTATE_INSERVICE", False)
    live = bridge.model.by_uniqueid("100.2")
    assert live.ended is None


def test_a_call_whose_events_named_no_channel_is_dropped_on_the_channel_the_resync_lists():
    # Asterisk 1.4-11 UserEvents carry no Channel header, and a call restored
    # after a restart saw no Newchannel: the resync's channel list names it.
    bridge, hub, clock, ami = make_bridge()
    ami.event(Event="UserEvent", Uniqueid="100.7", UserEvent="TAPI", TAPIEVENT="LINE_NEWCALL line_1")
    call = bridge.model.by_uniqueid("100.7")
    assert isinstance(failure_of(bridge.drop(call.handle)), TelephonyError)
    assert all(action != "Hangup" for action, _h, _d in ami.actions)
    ami.link(False)
    ami.link(True)
    _headers, d = ami.pop("CoreShowChannels")
    d.callback([
        Message.from_items([("Response", "Success"), ("EventList", "start")]),
        Message.from_items([("Event", "CoreShowChannel"), ("Channel", "SIP/100-00000001"), ("Uniqueid", "100.7")]),
        Message.from_items([("Event", "CoreShowChannelsComplete"), ("ListItems", "1")]),
    ])
    bridge.drop(call.handle)
    headers, _action = ami.pop("Hangup")
    assert dict(headers)["Channel"] == "SIP/100-00000001"


def test_link_dropping_again_during_resync_is_not_reported_in_service():
    bridge, hub, clock, ami = make_bridge()
    ami.link(False)
    ami.link(True)
    _h, stale = ami.pop("CoreShowChannels")
    ami.link(False)
    hub.events.clear()
    stale.callback([])
    assert not bridge.link_up
    assert hub.events == []


def test_resync_failure_still_goes_in_service():
    bridge, hub, clock, ami = make_bridge()
    ami.link(False)
    hub.events.clear()
    ami.link(True)
    _h, d = ami.pop("CoreShowChannels")
    d.errback(ActionFailed("CoreShowChannels", Message.from_items([("Response", "Error"), ("Message", "x")])))
    assert bridge.link_up
    assert [e.param for e in hub.events] == ["LINEDEVSTATE_INSERVICE"]


# -- click to dial -------------------------------------------------------------


def test_make_call_originates_with_our_channel_id_and_filters_newcall():
    bridge, hub, clock, ami = make_bridge()
    d = bridge.make_call("line_1", "95551234", owner=7)
    headers, action = ami.pop("Originate")
    h = dict(headers)
    assert h["Channel"] == "Local/alice@phones"
    assert h["Context"] == "trunklocal"
    assert h["Exten"] == "95551234"
    assert h["Async"] == "true"
    assert [v for k, v in headers if k == "Variable"] == ["TAPI_LINE=line_1", f"TAPI_CALL={bridge.model.get(1).handle}"]
    channel_id = h["ChannelId"]
    action.callback(Message.from_items([("Response", "Success"), ("Message", "Originate successfully queued")]))
    handle = result_of(d)
    assert bridge.model.get(handle).channel_id == channel_id

    # The dialplan of the outbound context runs on the ChannelId channel.
    ami.event(Event="OriginateResponse", ActionID="fake-1", Response="Success",
              Channel="Local/alice@phones-0000000b;1", Reason="4", Uniqueid=channel_id)
    for text in ("LINE_NEWCALL line_1", "LINE_CALLSTATE LINECALLSTATE_DIALTONE",
                 "LINE_CALLSTATE LINECALLSTATE_DIALING", "LINE_CALLSTATE LINECALLSTATE_PROCEEDING",
                 "LINE_CALLSTATE LINECALLSTATE_CONNECTED", "LINE_CALLSTATE LINECALLSTATE_IDLE"):
        user_event(ami, text, channel_id)
    assert {e.call for e in hub.events} == {handle}
    newcalls = [e for e in hub.events if e.msg == "LINE_NEWCALL"]
    assert len(newcalls) == 1 and newcalls[0].owner == 7  # the hub keeps it from client 7
    assert [e.param for e in hub.events if e.msg == "LINE_CALLSTATE"] == [
        "LINECALLSTATE_DIALTONE", "LINECALLSTATE_DIALING", "LINECALLSTATE_PROCEEDING",
        "LINECALLSTATE_CONNECTED", "LINECALLSTATE_IDLE",
    ]


def test_originate_refused_by_asterisk_fails_the_request_and_frees_the_call():
    bridge, hub, clock, ami = make_bridge()
    d = bridge.make_call("line_1", "95551234", owner=7)
    _h, action = ami.pop("Originate")
    action.errback(ActionFailed("Originate", Message.from_items([("Response", "Error"), ("Message", "Originate failed")])))
    err = failure_of(d)
    assert isinstance(err, TelephonyError) and err.lineerr == "LINEERR_OPERATIONFAILED"
    assert "Originate failed" in str(err)
    clock.advance(3600)
    assert bridge.model.tracked == 0


def test_async_originate_failure_ends_the_call_for_its_owner():
    bridge, hub, clock, ami = make_bridge()
    d = bridge.make_call("line_1", "95551234", owner=7)
    headers, action = ami.pop("Originate")
    action.callback(Message.from_items([("Response", "Success")]))
    handle = result_of(d)
    ami.event(Event="OriginateResponse", ActionID="fake-1", Response="Failure",
              Channel="Local/alice@phones", Reason="5", Uniqueid=dict(headers)["ChannelId"])
    states = [(e.call, e.param, e.mode) for e in hub.events if e.msg == "LINE_CALLSTATE"]
    assert states[-1][:2] == (handle, "LINECALLSTATE_IDLE")
    assert (handle, "LINECALLSTATE_DISCONNECTED", "LINEDISCONNECTMODE_BUSY") in states


@pytest.mark.parametrize("number", ["", "123\r\nAction: Hangup", "1;2", "x" * 80])
def test_make_call_refuses_undialable_numbers(number):
    bridge, hub, clock, ami = make_bridge()
    err = failure_of(bridge.make_call("line_1", number, owner=1))
    assert err.lineerr == "LINEERR_INVALADDRESS"
    assert ami.actions == []


def test_requests_while_link_down_fail_with_lineerr_disconnected():
    bridge, hub, clock, ami = make_bridge(link_up=False)
    err = failure_of(bridge.make_call("line_1", "201", owner=1))
    assert err.lineerr == "LINEERR_DISCONNECTED"
    assert ami.actions == []


def test_make_call_on_line_without_channel_is_unavailable():
    bridge, hub, clock, ami = make_bridge()
    err = failure_of(bridge.make_call("line_9", "201", owner=1))
    assert err.lineerr == "LINEERR_OPERATIONUNAVAIL"


def test_link_lost_while_originating_maps_to_disconnected():
    bridge, hub, clock, ami = make_bridge()
    d = bridge.make_call("line_1", "201", owner=1)
    _h, action = ami.pop("Originate")
    action.errback(LinkDown("gone"))
    assert failure_of(d).lineerr == "LINEERR_DISCONNECTED"


# -- drop and transfer -----------------------------------------------------------


def test_drop_hangs_up_the_calls_channel_and_transfer_redirects_it():
    bridge, hub, clock, ami = make_bridge()
    user_event(ami, "LINE_NEWCALL line_1", "200.1", channel="PJSIP/trunk-0007")
    user_event(ami, "LINE_CALLSTATE LINECALLSTATE_OFFERING", "200.1", channel="PJSIP/trunk-0007")
    handle = bridge.model.by_uniqueid("200.1").handle

    d = bridge.blind_transfer(handle, "202")
    headers, action = ami.pop("Redirect")
    assert dict(headers) == {"Channel": "PJSIP/trunk-0007", "Context": "trunklocal", "Exten": "202", "Priority": "1"}
    action.callback(Message.from_items([("Response", "Success")]))
    assert result_of(d) is None

    d = bridge.drop(handle)
    headers, action = ami.pop("Hangup")
    assert dict(headers)["Channel"] == "PJSIP/trunk-0007"
    action.errback(ActionFailed("Hangup", Message.from_items([("Response", "Error"), ("Message", "No such channel")])))
    err = failure_of(d)
    assert err.lineerr == "LINEERR_OPERATIONFAILED" and "No such channel" in str(err)


def test_drop_unknown_call_is_invalcallhandle():
    bridge, hub, clock, ami = make_bridge()
    assert failure_of(bridge.drop(999)).lineerr == "LINEERR_INVALCALLHANDLE"


# -- plugins -----------------------------------------------------------------------


class _Host:
    """A PluginHost stand-in whose contact lookup the test controls."""

    def __init__(self, real):
        self._real = real
        self.lookups: list[tuple[str, Deferred]] = []
        self.finished: list = []

    def wanted_event_names(self):
        return self._real.wanted_event_names()

    def mappers(self):
        return self._real.mappers()

    def map_with(self, impls, message, now, pbx="default", calls=None):
        return self._real.map_with(impls, message, now, pbx, calls)

    def map_channel_list(self, messages, since, now, pbx="default", calls=None):
        # make_bridge answers the resync's CoreShowChannels: without this the bridge's
        # AttributeError went to an unhandled Deferred, which trial then blamed on
        # whichever test ran when it was collected (tests/ops/test_reload.py, once).
        return self._real.map_channel_list(messages, since, now, pbx, calls)

    implemented = frozenset({"asttapi_client_event", "asttapi_call_finished", "asttapi_lookup_contact"})

    def client_event(self, event):
        return event

    def call_finished(self, call):
        self.finished.append(call.handle)

    def lookup_contact(self, number, callinfo):
        d: Deferred = Deferred()
        self.lookups.append((number, d))
        return d


def test_contact_arrives_later_as_callinfo_without_delaying_call_events():
    from asttapi_server.plugin_host import build_plugin_manager

    from .fakes import base_config

    host = _Host(build_plugin_manager(base_config().plugins, config=base_config()))
    bridge, hub, clock, ami = make_bridge(plugins=host)
    for text in ("LINE_NEWCALL line_1", "LINE_CALLSTATE LINECALLSTATE_OFFERING",
                 "SET CALLERID 0301234567", "LINE_CALLINFO LINECALLINFOSTATE_CALLERID"):
        user_event(ami, text, "300.1")
    assert [n for n, _ in host.lookups] == ["0301234567"]
    assert [e.param or e.msg for e in hub.events] == [
        "LINE_NEWCALL", "LINECALLSTATE_OFFERING", "LINECALLINFOSTATE_CALLERID"]
    # A repeated CALLINFO for the same number does not look it up again.
    user_event(ami, "LINE_CALLINFO LINECALLINFOSTATE_CALLERID", "300.1")
    assert len(host.lookups) == 1

    host.lookups[0][1].callback({"name": "Ext Caller", "company": "Contoso", "source": "crm"})
    last = hub.events[-1]
    assert last.msg == "LINE_CALLINFO"
    assert last.callinfo["contact"]["name"] == "Ext Caller"

    user_event(ami, "LINE_CALLSTATE LINECALLSTATE_IDLE", "300.1")
    assert host.finished == [last.call]


def test_a_raising_mapping_plugin_never_stops_the_flow():
    from asttapi_server.hookspecs import hookimpl
    from asttapi_server.plugin_host import build_plugin_manager

    from .fakes import base_config

    class Broken:
        @hookimpl
        def asttapi_ami_event_names(self):
            return ["UserEvent"]

        @hookimpl
        def asttapi_map_ami_event(self, message, app):
            raise RuntimeError("plugin bug")

        @hookimpl
        def asttapi_client_event(self, event, app):
            raise RuntimeError("plugin bug")

    config = base_config()
    host = build_plugin_manager(config.plugins, config=config)
    host.register(Broken(), "broken")
    bridge, hub, clock, ami = make_bridge(plugins=host)
    user_event(ami, "LINE_NEWCALL line_1", "400.1")
    user_event(ami, "LINE_CALLSTATE LINECALLSTATE_OFFERING", "400.1")
    assert [e.param or e.msg for e in hub.events] == ["LINE_NEWCALL", "LINECALLSTATE_OFFERING"]


def test_garbage_events_are_survived():
    bridge, hub, clock, ami = make_bridge()
    ami.event(Event="Hangup", Uniqueid="", Cause="banana")
    ami.event(Event="OriginateResponse", Response="Success")
    ami.event(Event="UserEvent", UserEvent="TAPI", TAPIEVENT="[~&&!] LINE_CALLSTATE")
    ami.event(Event="UserEvent", UserEvent="TAPI")
    user_event(ami, "LINE_NEWCALL line_1", "500.1")
    assert [e.msg for e in hub.events] == ["LINE_NEWCALL"]


def test_transfer_of_a_call_from_the_users_phone_moves_the_far_party_with_blindtransfer():
    """Redirecting the phone's own channel would move the user and drop the customer."""
    bridge, hub, clock, ami = make_bridge()
    # The line's phone is Local/alice@phones; it dialled out through [trunklocal].
    user_event(ami, "LINE_NEWCALL line_1", "600.1", channel="Local/alice@phones-0000000b;1")
    user_event(ami, "LINE_CALLSTATE LINECALLSTATE_CONNECTED", "600.1", channel="Local/alice@phones-0000000b;1")
    handle = bridge.model.by_uniqueid("600.1").handle
    d = bridge.blind_transfer(handle, "202")
    headers, action = ami.pop("BlindTransfer")
    assert dict(headers) == {"Channel": "Local/alice@phones-0000000b;1", "Context": "trunklocal", "Exten": "202"}
    assert not [a for a, _, _ in ami.actions if a == "Redirect"]
    action.errback(ActionFailed("BlindTransfer", Message.from_items([
        ("Response", "Error"), ("Message", "Invalid/unknown command: BlindTransfer")])))
    err = failure_of(d)
    assert err.lineerr == "LINEERR_OPERATIONFAILED" and "BlindTransfer" in str(err)


def test_phone_channel_match_is_by_name_prefix_not_substring():
    from asttapi_server.core.control import is_phone_channel as _is_phone_channel

    assert _is_phone_channel("PJSIP/bob-0000002a", "PJSIP/bob")
    assert _is_phone_channel("SIP/bob-0a1b2c3d", "sip/bob")
    assert _is_phone_channel("Local/alice@phones-0000000b;1", "Local/alice@phones")
    assert not _is_phone_channel("PJSIP/bobbett-00000001", "PJSIP/bob")
    assert not _is_phone_channel("PJSIP/trunk-0007", "PJSIP/bob")


def test_call_finished_once_per_call_even_when_lines_go_idle_together():
    """The safety net ends a ring-group call on both lines in one batch."""
    from asttapi_server.plugin_host import build_plugin_manager

    from .fakes import base_config

    host = _Host(build_plugin_manager(base_config().plugins, config=base_config()))
    bridge, hub, clock, ami = make_bridge(plugins=host, hangup_grace=5.0)
    for text in ("LINE_NEWCALL line_1", "LINE_NEWCALL line_2", "LINE_CALLSTATE LINECALLSTATE_OFFERING"):
        user_event(ami, text, "700.1")
    handle = bridge.model.by_uniqueid("700.1").handle
    ami.event(Event="Hangup", Uniqueid="700.1", Cause="16", Channel="PJSIP/trunk-1")
    clock.advance(6)
    idles = [e.line for e in hub.events if e.param == "LINECALLSTATE_IDLE"]
    assert sorted(idles) == ["line_1", "line_2"]
    assert host.finished == [handle]


def test_bookkeeping_follows_the_model_even_when_a_plugin_drops_the_idle():
    from asttapi_server.hookspecs import hookimpl
    from asttapi_server.plugin_host import build_plugin_manager

    from .fakes import base_config

    class DropIdle:
        finished: list = []

        @hookimpl
        def asttapi_client_event(self, event, app):
            return False if event.param == "LINECALLSTATE_IDLE" else None

        @hookimpl
        def asttapi_call_finished(self, call, app):
            self.finished.append(call.handle)

    config = base_config()
    host = build_plugin_manager(config.plugins, config=config)
    host.register(DropIdle(), "drop_idle")
    bridge, hub, clock, ami = make_bridge(plugins=host)
    for text in ("LINE_NEWCALL line_1", "SET CALLERID 201", "LINE_CALLINFO LINECALLINFOSTATE_CALLERID",
                 "LINE_CALLSTATE LINECALLSTATE_IDLE"):
        user_event(ami, text, "800.1")
    assert "LINECALLSTATE_IDLE" not in [e.param for e in hub.events]
    # The call still ended and was reported finished: the model's events count, not what clients saw.
    call = bridge.model.by_uniqueid("800.1")
    assert call is not None and call.ended is not None
    assert DropIdle.finished == [call.handle]


def test_a_repeated_dialplan_mistake_is_logged_once_a_minute_but_counted_every_time():
    from twisted.logger import LogLevel, capturedLogs

    bridge, hub, clock, ami = make_bridge()
    with capturedLogs() as logs:
        for i in range(500):  # every call of a busy hour hits the same typo'd ~uniqueid
            user_event(ami, "[~no.such.call] LINE_CALLSTATE LINECALLSTATE_CONNECTED", f"{i}.1")
            clock.advance(0.1)
        clock.advance(11)
        user_event(ami, "[~no.such.call] LINE_CALLSTATE LINECALLSTATE_CONNECTED", "x.1")
    warnings = [e for e in logs if e.get("log_level") == LogLevel.warn]
    assert len(warnings) == 2
    assert warnings[1]["held"] == 499
    assert bridge.model.stats["unknown_call"] == 501


def test_one_declared_set_of_wanted_events_is_applied_where_the_bytes_are_framed():
    from asttapi_server.core.control import CORE_EVENTS

    bridge, hub, clock, ami = make_bridge()
    assert ami.event_filter == {n.lower() for n in CORE_EVENTS} | {"userevent", "usereventtapi"}


def test_event_names_in_another_case_are_routed_by_the_same_rule_as_the_filter():
    bridge, hub, clock, ami = make_bridge(hangup_grace=0.0)
    ami.event(Event="USEREVENT", Channel="PJSIP/trunk-1", Uniqueid="910.1", UserEvent="TAPI",
              TAPIEVENT="LINE_NEWCALL line_1")
    assert [e.msg for e in hub.events] == ["LINE_NEWCALL"]
    ami.event(Event="hangup", Uniqueid="910.1", Cause="17", Channel="PJSIP/trunk-1")
    assert [(e.param, e.mode) for e in hub.events[1:]] == [
        ("LINECALLSTATE_DISCONNECTED", "LINEDISCONNECTMODE_BUSY"), ("LINECALLSTATE_IDLE", None)]


def test_the_timer_is_only_reconsidered_when_a_deadline_moved():
    bridge, hub, clock, ami = make_bridge()
    asked = []
    real = bridge.control.next_deadline
    bridge.control.next_deadline = lambda: asked.append(1) or real()
    user_event(ami, "LINE_NEWCALL line_1", "920.1")  # a new call: its max_age deadline
    assert len(asked) == 1
    for state in ("OFFERING", "ACCEPTED", "CONNECTED", "ONHOLD", "CONNECTED"):
        user_event(ami, f"LINE_CALLSTATE LINECALLSTATE_{state}", "920.1")
    user_event(ami, "SET CALLERID 0301234567", "920.1")
    assert len(asked) == 1  # per-event work without a deadline change asks nothing
    user_event(ami, "LINE_CALLSTATE LINECALLSTATE_IDLE", "920.1")  # ended: the linger deadline
    assert len(asked) == 2
    clock.advance(bridge.model.linger + 1)
    assert bridge.model.tracked == 0 and clock.getDelayedCalls() == []
