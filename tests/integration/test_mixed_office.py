"""A device line and dialplan lines on one Asterisk call (issue 21 item 5), end to end.

The reception phone (PJSIP/301) is a device line; it dials the README's
TAPI-dialplan ring group (line_1 = PJSIP/202, line_2 = PJSIP/203), whose
UserEvents run on the reception phone's own channel: one Uniqueid for both
pictures. alice's phone (line_2) answers. The capture is
tests/data/ami-native-handmade/h11_mixed_office.raw (HAND-MADE, see its
README.txt), played through the real parser, plugin host (the device mapping
and the UserEvent mapping), bridge, call model and client sessions.

Each line's call follows its own source completely: the reception's call
from its channel events, line_1's and line_2's from the dialplan; rights
follow the state each line's source gave it.
"""

from __future__ import annotations

from pathlib import Path

from asttapi_server.ami.parser import AMIParser
from asttapi_server.clients.hub import Hub
from asttapi_server.clients.protocol import ClientFactory
from tests.clients.test_rights import Client, lineerr

from .test_device_lines import device_bridge

CAPTURE = Path(__file__).resolve().parents[1] / "data" / "ami-native-handmade" / "h11_mixed_office.raw"
CONFIG = """
[lines.reception]
device = "PJSIP/301"
context = "inbound"

[lines.line_1]
channel = "PJSIP/202"
context = "inbound"

[lines.line_2]
channel = "PJSIP/203"
context = "inbound"

[users.reception]
token = "tok-reception-0123456789"
lines = ["reception"]

[users.bobbett]
token = "tok-bobbett-0123456789"
lines = ["line_1"]

[users.alice]
token = "tok-alice-000123456789"
lines = ["line_2"]
"""


class Recorder(Hub):
    def __init__(self) -> None:
        super().__init__(ring_size=1000, epoch="mixed")
        self.events: list = []

    def publish(self, event):
        self.events.append(event)
        return super().publish(event)


def office(tmp_path):
    bridge, hub, clock, ami = device_bridge(tmp_path, config_text=CONFIG, hub=Recorder())
    factory = ClientFactory(hub, bridge, users=bridge.config.users, clock=clock)
    return bridge, hub, clock, ami, factory, bridge.config


def replay(messages, bridge, clock):
    for message in messages:
        bridge.on_ami_event(message)
        clock.advance(0.01)


def per_line(events):
    out: dict = {}
    for e in events:
        if e.call is not None:
            out.setdefault(e.line, []).append((e.call, e.param or e.msg))
    return out


def test_each_line_follows_its_own_source_completely(tmp_path):
    bridge, hub, clock, _ami, _factory, _ = office(tmp_path)
    replay([m for m in AMIParser().feed(CAPTURE.read_bytes()) if m.kind == "event"], bridge, clock)
    lines = per_line(hub.events)
    reception = [p for _, p in lines["reception"]]
    assert reception == ["LINE_NEWCALL", "LINECALLSTATE_DIALING", "LINECALLSTATE_PROCEEDING",
                         "LINECALLSTATE_RINGBACK", "LINECALLINFOSTATE_CONNECTEDID", "LINECALLSTATE_CONNECTED",
                         "LINECALLSTATE_DISCONNECTED", "LINECALLSTATE_IDLE"]
    assert [p for _, p in lines["line_2"]] == ["LINE_NEWCALL", "LINECALLSTATE_OFFERING", "LINECALLINFOSTATE_CALLERID",
                                                "LINECALLSTATE_CONNECTED", "LINECALLSTATE_IDLE"]
    assert [p for _, p in lines["line_1"]] == ["LINE_NEWCALL", "LINECALLSTATE_OFFERING", "LINECALLINFOSTATE_CALLERID",
                                                "LINECALLSTATE_DISCONNECTED", "LINECALLSTATE_IDLE"]
    # two calls: the reception's own (its handle) and the ring group's (one handle for both its lines)
    (reception_call,) = {c for c, _ in lines["reception"]}
    (group_call,) = {c for c, _ in lines["line_1"]} | {c for c, _ in lines["line_2"]}
    assert reception_call != group_call
    # each call's info is its own source's: the reception placed a call to 100 (OUTBOUND, connected to
    # alice); the dialplan's lines were offered the reception's call (what the dialplan SET)
    rec = [e for e in hub.events if e.line == "reception"][-1].callinfo
    assert (rec["callerid"], rec["calledid"], rec["origin"]) == ("301", "100", "LINECALLORIGIN_OUTBOUND")
    assert (rec["connectedid"], rec["connectedidname"]) == ("203", "alice")
    group = [e for e in hub.events if e.line == "line_2"][-1].callinfo
    assert (group["callerid"], group["calleridname"], group["calledid"]) == ("301", "Reception", "100")
    assert group["origin"] == "LINECALLORIGIN_UNKNOWN" and group["connectedid"] is None
    assert not any(e.synthetic for e in hub.events)
    clock.advance(60)
    assert bridge.model.tracked == 0


def test_rights_follow_the_state_each_lines_source_gave_it(tmp_path):
    """While alice talks on line_2: bobbett (line_1, told HANGUP) may neither drop nor transfer the
    call, alice may; the reception acts on its own call, by its own handle, and cannot see the other."""
    bridge, hub, clock, ami, factory, config = office(tmp_path)
    clients = {}
    for name, line in (("bobbett", "line_1"), ("alice", "line_2"), ("reception", "reception")):
        clients[name] = Client(factory, name, config.users[name].token)
        assert "result" in clients[name].call("lineOpen", line=line)
    messages = [m for m in AMIParser().feed(CAPTURE.read_bytes()) if m.kind == "event"]
    talking = next(i for i, m in enumerate(messages) if m.name == "BridgeEnter")
    replay(messages[:talking + 1], bridge, clock)
    lines = per_line(hub.events)
    (group_call,) = {c for c, _ in lines["line_2"]}
    (reception_call,) = {c for c, _ in lines["reception"]}
    assert bridge.model.get(group_call).holding_lines == ("line_2",)

    bobbett, alice, reception = clients["bobbett"], clients["alice"], clients["reception"]
    for method, params in (("lineDrop", {}), ("lineBlindTransfer", {"number": "204"})):
        assert lineerr(bobbett.call(method, call=group_call, **params)) == "LINEERR_NOTOWNER"
    assert lineerr(reception.call("lineDrop", call=group_call)) == "LINEERR_INVALCALLHANDLE"
    assert ami.actions == []  # nothing reached Asterisk
    alice.send("lineDrop", call=group_call)
    headers, _d = ami.pop("Hangup")
    assert dict(headers)["Channel"] == "PJSIP/301-00000090"  # the dialplan's call: its caller's channel
    reception.send("lineDrop", call=reception_call)
    headers, _d = ami.pop("Hangup")
    assert dict(headers)["Channel"] == "PJSIP/301-00000090"  # the device line's call: its phone's channel
