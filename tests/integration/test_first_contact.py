"""What a CRM client meets first (issue 12): the caller at LINE_NEWCALL, lookups that end, link state.

Real Asterisk 22 captures from tests/data/ami go through the parser, the TAPI
UserEvent mapping, the bridge and the model exactly as in the server.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred

from asttapi_server.ami.parser import AMIParser

from .fakes import base_config, make_bridge
from .test_bridge import _Host, user_event
from .test_capture_pipeline import DATA, per_line, replay


def _host():
    from asttapi_server.plugin_host import build_plugin_manager

    return _Host(build_plugin_manager(base_config().plugins, config=base_config()))


# -- the caller's number at LINE_NEWCALL -----------------------------------------


def test_newcall_carries_the_callers_number_from_the_real_userevent():
    """05: Asterisk 22's UserEvent has CallerIDNum 0301234567 / CallerIDName "Ext Caller"."""
    bridge, hub, clock, _ami = make_bridge()
    replay("ami/05_inbound_call.monitor.raw", bridge, clock)
    newcall, offering = hub.events[0], hub.events[1]
    assert newcall.msg == "LINE_NEWCALL" and offering.param == "LINECALLSTATE_OFFERING"
    for event in (newcall, offering):
        assert event.callinfo["callerid"] == "0301234567"
        assert event.callinfo["calleridname"] == "Ext Caller"
        assert event.callinfo["calledid"] == "100"  # the channel's Exten: the number dialled
    # The dialplan's own SET CALLERID + LINE_CALLINFO still arrive (same number here).
    assert hub.events[2].param == "LINECALLINFOSTATE_CALLERID"
    assert hub.events[2].callinfo["callerid"] == "0301234567"


def test_the_answering_channels_caller_id_is_not_the_calls():
    """05: CONNECTED comes from Local/bob (CallerIDNum 100): it must not overwrite the caller."""
    bridge, hub, clock, _ami = make_bridge()
    replay("ami/05_inbound_call.monitor.raw", bridge, clock)
    connected = [e for e in hub.events if e.param == "LINECALLSTATE_CONNECTED"]
    assert connected and connected[0].callinfo["callerid"] == "0301234567"


def test_outbound_call_from_the_phone_shows_the_phone_as_caller_and_the_dialled_number():
    """06: TAPI's callerid is the calling party (the line's phone, 201 Alice); calledid the Exten."""
    bridge, hub, clock, _ami = make_bridge()
    replay("ami/06_outbound_9NXXXXXX.monitor.raw", bridge, clock)
    info = hub.events[0].callinfo
    assert (info["callerid"], info["calleridname"], info["calledid"]) == ("201", "Alice", "95551234")


def test_old_asterisk_without_channel_snapshot_still_gets_the_number_from_the_dialplan():
    """1.4 sends no CallerIDNum in UserEvents: NEWCALL has none, LINE_CALLINFO brings it."""
    bridge, hub, clock, _ami = make_bridge()
    replay("ami-legacy/asterisk-1.4.raw", bridge, clock)
    assert hub.events[0].callinfo["callerid"] is None
    assert hub.events[2].param == "LINECALLINFOSTATE_CALLERID"
    assert hub.events[2].callinfo["callerid"] == "0301234567"


def test_a_different_set_callerid_is_announced_and_looked_up_again():
    """The dialplan may rewrite the number (here: to E.164); LINE_CALLINFO CALLERID tells it."""
    raw = (DATA / "ami/05_inbound_call.monitor.raw").read_bytes()
    raw = raw.replace(b"TAPIEVENT: SET CALLERID 0301234567", b"TAPIEVENT: SET CALLERID +49301234567")
    host = _host()
    bridge, hub, clock, _ami = make_bridge(plugins=host)
    for message in AMIParser().feed(raw):
        if message.kind == "event":
            bridge.on_ami_event(message)
    info = [e for e in hub.events if e.param == "LINECALLINFOSTATE_CALLERID"][0].callinfo
    assert info["callerid"] == "+49301234567"
    assert hub.events[0].callinfo["callerid"] == "0301234567"
    assert [n for n, _ in host.lookups] == ["0301234567", "+49301234567"]


# -- contact lookups: start at LINE_NEWCALL, always end with a signal ------------------


def _inbound(ami, uid="300.1", channel="PJSIP/trunk-0001"):
    ami.event(Event="UserEvent", Channel=channel, Uniqueid=uid, CallerIDNum="0301234567",
              CallerIDName="Ext Caller", Exten="100", UserEvent="TAPI", TAPIEVENT="LINE_NEWCALL line_1")
    user_event(ami, "LINE_CALLSTATE LINECALLSTATE_OFFERING", uid, channel)


def test_lookup_starts_at_newcall_and_a_match_comes_as_callinfo_other():
    host = _host()
    bridge, hub, clock, ami = make_bridge(plugins=host)
    ami.event(Event="UserEvent", Channel="PJSIP/trunk-0001", Uniqueid="300.1", CallerIDNum="0301234567",
              UserEvent="TAPI", TAPIEVENT="LINE_NEWCALL line_1")
    assert [n for n, _ in host.lookups] == ["0301234567"]  # before any OFFERING
    host.lookups[0][1].callback({"name": "Ext Caller", "source": "crm"})
    assert hub.events[-1].param == "LINECALLINFOSTATE_OTHER"
    assert hub.events[-1].callinfo["contact"] == {"name": "Ext Caller", "source": "crm"}


def test_a_lookup_miss_is_signalled_with_contact_null():
    host = _host()
    bridge, hub, clock, ami = make_bridge(plugins=host)
    _inbound(ami)
    host.lookups[0][1].callback(None)  # no match, a plugin error or the timeout: all None
    last = hub.events[-1]
    assert (last.msg, last.param) == ("LINE_CALLINFO", "LINECALLINFOSTATE_OTHER")
    assert "contact" in last.callinfo and last.callinfo["contact"] is None


def test_every_finished_lookup_is_signalled_even_when_contact_stays_null():
    host = _host()
    bridge, hub, clock, ami = make_bridge(plugins=host)
    _inbound(ami)
    host.lookups[0][1].callback(None)
    user_event(ami, "SET CALLERID 0309999999", "300.1", "PJSIP/trunk-0001")
    user_event(ami, "LINE_CALLINFO LINECALLINFOSTATE_CALLERID", "300.1", "PJSIP/trunk-0001")
    n = len(hub.events)
    host.lookups[1][1].callback(None)
    assert [e.param for e in hub.events[n:]] == ["LINECALLINFOSTATE_OTHER"]
    assert hub.events[-1].callinfo["contact"] is None


def test_a_lookup_timeout_through_the_real_plugin_host_is_signalled():
    from asttapi_server.hookspecs import hookimpl
    from asttapi_server.plugin_host import build_plugin_manager

    class Slow:
        @hookimpl
        def asttapi_lookup_contact(self, number, callinfo, app):
            return Deferred()  # never answers

    config = base_config()
    bridge, hub, clock, ami = make_bridge(plugins=None)
    host = build_plugin_manager(config.plugins, config=config, clock=clock)
    host.register(Slow(), "slow")
    bridge.use_plugins(host)
    _inbound(ami)
    assert hub.events[-1].param == "LINECALLSTATE_OFFERING"
    clock.advance(host.lookup_timeout + 0.1)
    assert hub.events[-1].param == "LINECALLINFOSTATE_OTHER"
    assert hub.events[-1].callinfo["contact"] is None


def test_without_lookup_plugins_no_contact_event_is_sent():
    bridge, hub, clock, ami = make_bridge()
    assert bridge.plugins.looks_up_contacts is False
    _inbound(ami)
    assert [e.param or e.msg for e in hub.events] == ["LINE_NEWCALL", "LINECALLSTATE_OFFERING"]
    assert "contact" not in hub.events[-1].callinfo


def test_no_lookup_of_the_users_own_phone_on_an_outbound_call():
    """06: the line's phone (Local/alice@phones) dials out; 201 is the user, not a customer."""
    host = _host()
    bridge, hub, clock, _ami = make_bridge(plugins=host)
    replay("ami/06_outbound_9NXXXXXX.monitor.raw", bridge, clock)
    assert host.lookups == []
    assert "contact" not in hub.events[-1].callinfo


def test_a_lookup_answer_after_the_call_ended_is_dropped():
    host = _host()
    bridge, hub, clock, ami = make_bridge(plugins=host)
    _inbound(ami)
    user_event(ami, "LINE_CALLSTATE LINECALLSTATE_IDLE", "300.1", "PJSIP/trunk-0001")
    n = len(hub.events)
    host.lookups[0][1].callback(None)
    assert len(hub.events) == n


# -- life cycles on the real captures, as docs/protocol.md tells them --------------------


def test_answering_line_goes_connected_then_idle():
    bridge, hub, clock, _ami = make_bridge()
    replay("ami/05_inbound_call.monitor.raw", bridge, clock)
    assert per_line(hub.events)["line_1"] == [
        "LINE_NEWCALL", "LINECALLSTATE_OFFERING", "LINECALLINFOSTATE_CALLERID",
        "LINECALLSTATE_CONNECTED", "LINECALLSTATE_IDLE"]


def test_a_raising_lookup_plugin_is_signalled_as_no_contact():
    from asttapi_server.hookspecs import hookimpl
    from asttapi_server.plugin_host import build_plugin_manager

    class Broken:
        @hookimpl
        def asttapi_lookup_contact(self, number, callinfo, app):
            raise RuntimeError("CRM down")

    config = base_config()
    bridge, hub, clock, ami = make_bridge(plugins=None)
    host = build_plugin_manager(config.plugins, config=config, clock=clock)
    host.register(Broken(), "broken")
    bridge.use_plugins(host)
    _inbound(ami)
    others = [e for e in hub.events if e.param == "LINECALLINFOSTATE_OTHER"]
    assert len(others) == 1 and others[0].callinfo["contact"] is None
