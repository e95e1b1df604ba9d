"""Device lines end to end: real captures -> AMIParser -> bundled channel-events plugin -> Bridge -> model -> hub.

The config is what an admin writes (``[lines.bob] device = "PJSIP/201"``),
the plugin host is the real one (it registers the device mapping because of
that config), and the bytes are tests/data/ami-native as Asterisk sent them.
"""

from __future__ import annotations

from pathlib import Path

from twisted.internet.defer import maybeDeferred
from twisted.internet.task import Clock

from asttapi_server.ami.message import Message
from asttapi_server.ami.parser import AMIParser
from asttapi_server.service import build_bridge
from asttapi_server.config import load_config
from asttapi_server.core.model import CallModel
from asttapi_server.hookspecs import hookimpl
from asttapi_server.plugin_host import PluginHost, build_plugin_manager

from .fakes import FakeAMI, RecordingHub

NATIVE = Path(__file__).resolve().parent.parent / "data" / "ami-native"

CONFIG = """
[lines.bob]
device = "PJSIP/201"
context = "plain-phones"

[lines.bobbett]
device = "PJSIP/202"
context = "plain-phones"

[lines.alice]
device = "PJSIP/203"
context = "plain-phones"
"""


def device_bridge(tmp_path, *, plugins: PluginHost | None = None, config_text: str = CONFIG, hub=None):
    """The real bridge, plugin host and model for ``config_text`` on a FakeAMI, the link up;
    (bridge, hub, clock, ami). ``hub``: one of the caller's (default: a RecordingHub)."""
    path = tmp_path / "asttapi.toml"
    path.write_text(config_text)
    config = load_config(str(path))
    clock = Clock()
    clock.advance(1_795_691_000)
    ami, hub = FakeAMI(), hub if hub is not None else RecordingHub()
    model = CallModel(hangup_grace=config.calls.hangup_grace, linger=config.calls.linger)
    host = plugins or build_plugin_manager(config.plugins, config=config, clock=clock, entry_points=[],
                                           search_paths=[], run_in_thread=maybeDeferred)
    bridge = build_bridge(config, ami, model, host, hub, clock)
    host.app = bridge.plugin_context
    ami.link(True)
    _headers, d = ami.pop("CoreShowChannels")
    d.callback([Message.from_items([("Response", "Success"), ("EventList", "start")])])
    hub.events.clear()
    return bridge, hub, clock, ami


def replay(raw: bytes, bridge, clock: Clock) -> None:
    for message in AMIParser().feed(raw):
        if message.kind == "event":
            bridge.on_ami_event(message)
        clock.advance(0.001)


def per_line(events) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for e in events:
        out.setdefault(e.line, []).append(e.param or e.msg)
    return out


def test_ring_group_through_the_real_bridge(tmp_path):
    bridge, hub, clock, _ = device_bridge(tmp_path)
    assert "channel_events" in bridge.plugins.names
    assert {"DialBegin", "Hangup", "NewConnectedLine"} <= bridge.plugins.wanted_event_names()
    replay((NATIVE / "s01_inbound_ringgroup_answered.raw").read_bytes(), bridge, clock)
    assert per_line(hub.events) == {
        "bob": ["LINE_NEWCALL", "LINECALLSTATE_OFFERING", "LINECALLINFOSTATE_CONNECTEDID",
                "LINECALLSTATE_CONNECTED", "LINECALLSTATE_DISCONNECTED", "LINECALLSTATE_IDLE"],
        "bobbett": ["LINE_NEWCALL", "LINECALLSTATE_OFFERING", "LINECALLSTATE_DISCONNECTED",
                    "LINECALLSTATE_IDLE"],
    }
    assert [e.mode for e in hub.events if e.param == "LINECALLSTATE_DISCONNECTED"] == [
        "LINEDISCONNECTMODE_PICKUP", "LINEDISCONNECTMODE_NORMAL"]
    assert not any(e.synthetic for e in hub.events)
    clock.advance(120)
    assert bridge.model.tracked == 0


class Contacts:
    """A contact plugin that records what it was asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    @hookimpl
    def asttapi_lookup_contact(self, number, callinfo, app):
        self.asked.append(number)
        return {"name": "Ext Caller Ltd"}


def test_inbound_device_calls_get_a_contact_lookup_calls_placed_do_not(tmp_path):
    path = tmp_path / "asttapi.toml"
    path.write_text(CONFIG)
    config = load_config(str(path))
    host = build_plugin_manager(config.plugins, config=config, entry_points=[], search_paths=[],
                                run_in_thread=maybeDeferred)
    contacts = Contacts()
    host.register(contacts, "contacts")
    host.check()
    bridge, hub, clock, _ = device_bridge(tmp_path, plugins=host)
    replay((NATIVE / "s01_inbound_ringgroup_answered.raw").read_bytes(), bridge, clock)
    replay((NATIVE / "s05_outbound_answered.raw").read_bytes(), bridge, clock)
    # one lookup per ringing line's call, none for bob's own outbound call
    assert contacts.asked == ["0301234567", "0301234567"]


def test_click_to_dial_on_a_device_line(tmp_path):
    bridge, hub, clock, ami = device_bridge(tmp_path)
    d = bridge.make_call("bob", "95551234", owner="crm")
    headers, action = ami.pop("Originate")
    headers = dict(headers)
    assert headers["Channel"] == "PJSIP/201" and headers["Context"] == "plain-phones"
    action.callback(Message.from_items([("Response", "Success")]))
    handle = d.result
    # the lab's capture, with our ChannelId where the lab's CTI put its own
    raw = (NATIVE / "s07_click_to_dial.raw").read_bytes().replace(b"c2d-1e8b533511d1",
                                                                 headers["ChannelId"].encode())
    messages = [m for m in AMIParser().feed(raw) if m.kind == "event"]
    answered = next(i for i, m in enumerate(messages) if m.name == "BridgeEnter")
    for message in messages[:answered + 1]:
        bridge.on_ami_event(message)
    assert {e.call for e in hub.events} == {handle}
    newcall = [e for e in hub.events if e.msg == "LINE_NEWCALL"]
    assert [e.owner for e in newcall] == ["crm"]  # the hub hides it from the dialling client
    assert [e.param for e in hub.events if e.msg == "LINE_CALLSTATE"] == [
        "LINECALLSTATE_DIALTONE", "LINECALLSTATE_PROCEEDING", "LINECALLSTATE_CONNECTED"]
    # lineDrop and lineBlindTransfer act on the phone's own channel
    bridge.drop(handle)
    drop, _ = ami.pop("Hangup")
    assert dict(drop)["Channel"] == "PJSIP/201-00000009"
    bridge.blind_transfer(handle, "203")
    transfer, _ = ami.pop("BlindTransfer")
    assert dict(transfer)["Channel"] == "PJSIP/201-00000009" and dict(transfer)["Exten"] == "203"
    for message in messages[answered + 1:]:
        bridge.on_ami_event(message)
    assert hub.events[-1].param == "LINECALLSTATE_IDLE"
    assert bridge.model.get(handle).ended is not None


def test_without_device_lines_the_mapping_is_not_registered(tmp_path):
    config = load_config(None, {"lines": {"line_1": {"channel": "Local/bob@phones"}}})
    host = build_plugin_manager(config.plugins, config=config, entry_points=[], search_paths=[],
                                run_in_thread=maybeDeferred)
    assert "tapi_userevent" in host.names and "channel_events" not in host.names
    assert host.wanted_event_names() == {"UserEvent", "UserEventTAPI"}


def _user_event(text: str, uniqueid: str = "1795691999.1") -> Message:
    """A hand-made TAPI UserEvent as Asterisk 22 lays it out (the capture 05 shape)."""
    return Message.from_items([
        ("Event", "UserEvent"), ("Privilege", "user,all"), ("Channel", "Local/100@inbound-00000001;2"),
        ("ChannelState", "4"), ("CallerIDNum", "0301234567"), ("CallerIDName", "Ext Caller"),
        ("Exten", "100"), ("Uniqueid", uniqueid), ("Linkedid", uniqueid), ("UserEvent", "TAPI"),
        ("TAPIEVENT", text)])


def test_a_user_event_naming_a_device_line_is_refused_and_logged_once(tmp_path):
    """One line, one source, through the real plugin host: bob is a device line, line_1 a dialplan one."""
    from twisted.logger import capturedLogs, formatEvent

    path = tmp_path / "asttapi.toml"
    path.write_text(CONFIG + '\n[lines.line_1]\nchannel = "Local/bob@phones"\n')
    config = load_config(str(path))
    host = build_plugin_manager(config.plugins, config=config, entry_points=[], search_paths=[],
                                run_in_thread=maybeDeferred)
    bridge, hub, clock, _ = device_bridge(tmp_path, plugins=host)
    bridge.config = config
    with capturedLogs() as logged:
        for n in range(3):
            uid = f"1795691999.{n}"
            bridge.on_ami_event(_user_event("LINE_NEWCALL line_1 bob", uid))
            bridge.on_ami_event(_user_event(f"[~{uid}&bob] LINE_CALLSTATE LINECALLSTATE_OFFERING", uid))
    assert {e.line for e in hub.events} == {"line_1"}
    assert [e.msg for e in hub.events] == ["LINE_NEWCALL"] * 3
    warnings = [formatEvent(e) for e in logged if "device line" in formatEvent(e)]
    # one line per kind (verb) a minute, not one per event
    assert len(warnings) == 2 and all("bob" in w for w in warnings)


class _SiteFirst:
    """A site plugin that maps TAPI UserEvents itself, ahead of every built-in mapping."""

    @hookimpl
    def asttapi_ami_event_names(self):
        return ("UserEvent",)

    @hookimpl(tryfirst=True)
    def asttapi_map_ami_event(self, message, app):
        from asttapi_server.mappings import tapi_userevent

        return tapi_userevent.asttapi_map_ami_event(message, app)


class _SiteLast(_SiteFirst):
    """The same, after the built-in mappings (which claim the event first)."""

    @hookimpl(trylast=True)
    def asttapi_map_ami_event(self, message, app):
        return super().asttapi_map_ami_event(message, app)


def test_a_user_event_cannot_drive_a_device_line_whatever_the_hook_order(tmp_path):
    """The rule is the core's: a site plugin mapping UserEvents first (tryfirst, or registered
    last) still cannot put a dialplan's call on a device line; nor can the built-in mapping."""
    path = tmp_path / "asttapi.toml"
    path.write_text(CONFIG + '\n[lines.line_1]\nchannel = "Local/bob@phones"\n')
    config = load_config(str(path))
    for site in (_SiteFirst(), _SiteLast()):
        host = build_plugin_manager(config.plugins, config=config, entry_points=[], search_paths=[],
                                    run_in_thread=maybeDeferred)
        host.register(site, "site_userevents")
        bridge, hub, clock, _ = device_bridge(tmp_path, plugins=host)
        first = bridge.routes.get("UserEvent").mappers[0].plugin_name
        assert first == ("tapi_userevent" if isinstance(site, _SiteLast) else "site_userevents")
        uid = "1795691999.7"
        bridge.on_ami_event(_user_event("LINE_NEWCALL line_1 bob", uid))
        bridge.on_ami_event(_user_event(f"[~{uid}&bob] LINE_CALLSTATE LINECALLSTATE_OFFERING", uid))
        assert {e.line for e in hub.events} == {"line_1"}, first
        assert [e.msg for e in hub.events] == ["LINE_NEWCALL"], first


def test_the_user_event_mapping_still_works_beside_device_lines(tmp_path):
    """The TAPI UserEvent capture gives what it gives today when device lines are configured too."""
    path = tmp_path / "asttapi.toml"
    path.write_text(CONFIG + '\n[lines.line_1]\nchannel = "Local/bob@phones"\n'
                    '\n[lines.line_2]\nchannel = "Local/bobbett@phones"\n')
    config = load_config(str(path))
    host = build_plugin_manager(config.plugins, config=config, entry_points=[], search_paths=[],
                                run_in_thread=maybeDeferred)
    bridge, hub, clock, _ = device_bridge(tmp_path, plugins=host)
    # the device mapping takes no UserEvent (the core keeps them off device lines)
    assert [impl.plugin_name for impl in bridge.routes.get("UserEvent").mappers] == ["tapi_userevent"]
    capture = NATIVE.parent / "ami" / "05_inbound_call.monitor.raw"
    replay(capture.read_bytes(), bridge, clock)
    with_devices = per_line(hub.events)

    plain = load_config(None, {"lines": {"line_1": {"channel": "Local/bob@phones"},
                                         "line_2": {"channel": "Local/bobbett@phones"}}})
    host = build_plugin_manager(plain.plugins, config=plain, entry_points=[], search_paths=[],
                                run_in_thread=maybeDeferred)
    bridge, hub, clock, _ = device_bridge(tmp_path, plugins=host)
    replay(capture.read_bytes(), bridge, clock)
    assert with_devices == per_line(hub.events) and with_devices["line_1"][0] == "LINE_NEWCALL"


def test_a_reconnect_adopts_a_live_device_call_and_ends_one_that_is_gone(tmp_path):
    """Through the real bridge: the link drops mid-call (s11, Hangups lost), comes back, the list is empty."""
    bridge, hub, clock, ami = device_bridge(tmp_path)
    msgs = [m for m in AMIParser().feed((NATIVE / "s11_pbx_restart_during_call.raw").read_bytes())
            if m.kind == "event"]
    cut = next(i for i, m in enumerate(msgs) if m.name in ("SoftHangupRequest", "Hangup"))
    for message in msgs[:cut]:
        bridge.on_ami_event(message)
    ami.link(False)
    clock.advance(5)  # Asterisk restarts
    ami.link(True)
    hub.events.clear()
    _headers, d = ami.pop("CoreShowChannels")
    d.callback([Message.from_items([("Response", "Success"), ("EventList", "start")]),
                Message.from_items([("Event", "CoreShowChannelsComplete"), ("EventList", "Complete"),
                                    ("ListItems", "0")])])
    bob = [e for e in hub.events if e.line == "bob"]
    assert [(e.param, e.mode) for e in bob] == [("LINECALLSTATE_DISCONNECTED", "LINEDISCONNECTMODE_UNKNOWN"),
                                                ("LINECALLSTATE_IDLE", None)]
    assert not any(e.synthetic for e in bob)  # the device mapping's own end, not the safety net's

    # and the server (re)connecting mid-call adopts what the list shows
    ami.link(False)
    ami.link(True)
    hub.events.clear()
    item = Message.from_items([
        ("Event", "CoreShowChannel"), ("Channel", "PJSIP/201-00000011"), ("ChannelState", "6"),
        ("ChannelStateDesc", "Up"), ("CallerIDNum", "201"), ("CallerIDName", "bob"),
        ("ConnectedLineNum", "0301234567"), ("ConnectedLineName", "Ext Caller"), ("Context", "plain-phones"),
        ("Exten", ""), ("Priority", "1"), ("Uniqueid", "1795692100.50"), ("Linkedid", "1795692100.48"),
        ("Application", "AppDial"), ("ApplicationData", "(Outgoing Line)")])
    _headers, d = ami.pop("CoreShowChannels")
    d.callback([Message.from_items([("Response", "Success"), ("EventList", "start")]), item])
    assert [e.param or e.msg for e in hub.events if e.line == "bob"] == ["LINE_NEWCALL", "LINECALLSTATE_CONNECTED"]
    assert bridge.model.by_uniqueid("1795692100.50").callinfo["connectedid"] == "0301234567"


def test_a_clients_blind_transfer_on_a_device_line_replays_s08(tmp_path):
    """lineBlindTransfer of bob's answered call (s08): BlindTransfer on bob's own channel, then the
    rest of the capture: bob's line goes IDLE, alice's line gets the caller as its connected party."""
    bridge, hub, clock, ami = device_bridge(tmp_path)
    messages = [m for m in AMIParser().feed((NATIVE / "s08_blind_transfer_ami.raw").read_bytes())
                if m.kind == "event"]
    cut = next(i for i, m in enumerate(messages) if m.name == "BlindTransfer")
    for message in messages[:cut]:
        bridge.on_ami_event(message)
        clock.advance(0.001)
    [bob_call] = {e.call for e in hub.events if e.line == "bob"}
    assert [e.param for e in hub.events if e.call == bob_call][-1] == "LINECALLSTATE_CONNECTED"

    d = bridge.blind_transfer(bob_call, "203")
    headers, action = ami.pop("BlindTransfer")
    # the phone's own channel: Asterisk sends its bridged peer (the caller) to 203 (what the lab's CTI sent)
    assert dict(headers) == {"Channel": "PJSIP/201-0000000a", "Context": "plain-phones", "Exten": "203"}
    action.callback(Message.from_items([("Response", "Success"), ("Message", "Transfer succeeded")]))
    assert d.called

    for message in messages[cut:]:
        bridge.on_ami_event(message)
        clock.advance(0.001)
    lines = per_line(hub.events)
    assert lines["bob"] == ["LINE_NEWCALL", "LINECALLSTATE_OFFERING", "LINECALLINFOSTATE_CONNECTEDID",
                            "LINECALLSTATE_CONNECTED", "LINECALLSTATE_IDLE"]
    assert lines["alice"] == ["LINE_NEWCALL", "LINECALLSTATE_OFFERING", "LINECALLINFOSTATE_CONNECTEDID",
                              "LINECALLSTATE_CONNECTED", "LINECALLSTATE_DISCONNECTED", "LINECALLSTATE_IDLE"]
    alice = [e for e in hub.events if e.line == "alice"]
    info = alice[-1].callinfo
    assert (info["callerid"], info["calleridname"], info["connectedid"], info["connectedidname"]) == (
        "0301234567", "Ext Caller", "0301234567", "Ext Caller")
    assert info["calledid"] == "203" and info["origin"] == "LINECALLORIGIN_EXTERNAL"
    assert [e.mode for e in alice if e.param == "LINECALLSTATE_DISCONNECTED"] == ["LINEDISCONNECTMODE_NORMAL"]
    assert not any(e.synthetic for e in hub.events)
    clock.advance(120)
    assert bridge.model.tracked == 0
