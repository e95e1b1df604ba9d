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


def device_bridge(tmp_path, *, plugins: PluginHost | None = None):
    path = tmp_path / "asttapi.toml"
    path.write_text(CONFIG)
    config = load_config(str(path))
    clock = Clock()
    clock.advance(1_795_691_000)
    ami, hub = FakeAMI(), RecordingHub()
    model = CallModel(hangup_grace=config.calls.hangup_grace, linger=config.calls.linger)
    host = plugins or build_plugin_manager(config.plugins, config=config, clock=clock, entry_points=[],
                                           search_paths=[], run_in_thread=maybeDeferred)
    bridge = build_bridge(config, ami, model, host, hub, clock)
    host.app = bridge
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
    config = load_config(None, {})
    host = build_plugin_manager(config.plugins, config=config, entry_points=[], search_paths=[],
                                run_in_thread=maybeDeferred)
    assert "tapi_userevent" in host.names and "channel_events" not in host.names
    assert host.wanted_event_names() == {"UserEvent", "UserEventTAPI"}
