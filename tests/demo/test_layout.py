"""The demo's messages use exactly the header layouts of the real Asterisk 22 captures.

The dialplan lines' flows against tests/data/ami (the TAPI dialplan), the
device line's against tests/data/ami-native too (real SIP phones, no UserEvent).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from .helpers import Session, action, get, make_pbx, parse_blocks, run_until_idle

DATA = Path(__file__).resolve().parents[1] / "data" / "ami"
NATIVE = DATA.parent / "ami-native"
CAPTURES = [
    DATA / "01b_login_plain_events_on.raw",
    DATA / "05_inbound_call.monitor.raw",
    DATA / "06_outbound_9NXXXXXX.monitor.raw",
    DATA / "07_outbound_busy.monitor.raw",
    DATA / "10_originate_async.driver.raw",
    DATA / "11_coreshowchannels.driver.raw",
    *sorted(NATIVE.glob("s*.raw")),
]


def real_layouts():
    layouts = defaultdict(set)
    for name in CAPTURES:
        for block in parse_blocks(name.read_bytes()):
            event = get(block, "Event")
            if event:
                layouts[event].add(tuple(k for k, _ in block))
    return layouts


def demo_messages():
    clock, engine, factory = make_pbx()
    s = Session(factory)
    s.login(events="on")
    msgs = s.take()
    for kind, kwargs in (("inbound", {}), ("outbound", {}), ("busy", {}), ("device_inbound", {"hold": 1.0}),
                         ("device_inbound", {"ending": "gives_up"}), ("device_inbound", {"ending": "reject"}),
                         ("device_outbound", {}), ("device_busy", {})):
        engine.play(kind, **kwargs)
        run_until_idle(clock)
    # click-to-dial on the device line, then lineBlindTransfer of its answered call
    s.send(action("Originate", ("ActionID", "d"), ("Channel", "PJSIP/203"), ("Context", "plain-phones"),
                  ("Exten", "95551234"), ("Async", "true"), ("ChannelId", "c-2")))
    for _ in range(12):
        clock.advance(0.25)
    s.send(action("BlindTransfer", ("ActionID", "t"), ("Channel", "c-2"), ("Context", "plain-phones"),
                  ("Exten", "201")))
    run_until_idle(clock)
    s.send(action("Originate", ("ActionID", "o"), ("Channel", "Local/bob@phones"),
                  ("Context", "trunklocal"), ("Exten", "95551234"), ("Async", "true"),
                  ("ChannelId", "c-1")))
    s.send(action("Originate", ("ActionID", "w"), ("Channel", "Local/alice@phones"),
                  ("Application", "Wait"), ("Data", "2"), ("Async", "true")))
    clock.advance(0)
    clock.advance(2)
    s.send(action("CoreShowChannels", ("ActionID", "csc")))
    run_until_idle(clock)
    return msgs + s.take()


REAL = real_layouts()
DEMO = demo_messages()


def test_every_event_the_demo_sends_has_a_real_layout():
    names = {get(m, "Event") for m in DEMO if get(m, "Event")}
    missing = {n for n in names if n not in REAL}
    assert not missing, missing
    for message in DEMO:
        event = get(message, "Event")
        if not event:
            continue
        assert tuple(k for k, _ in message) in REAL[event], (event, [k for k, _ in message])


@pytest.mark.parametrize("event", ["UserEvent", "Hangup", "Newchannel", "OriginateResponse",
                                   "CoreShowChannel", "DialBegin", "VarSet", "Newexten", "DialEnd",
                                   "DialState", "NewConnectedLine", "BridgeCreate", "BridgeEnter",
                                   "BridgeLeave", "BridgeDestroy", "Hold", "Unhold", "BlindTransfer"])
def test_key_order_matches_the_capture(event):
    ours = {tuple(k for k, _ in m) for m in DEMO if get(m, "Event") == event}
    assert ours, f"the demo never sent {event}"
    assert ours <= REAL[event]


def test_user_event_is_byte_identical_in_layout_to_the_capture():
    real = next(b for b in parse_blocks((DATA / "05_inbound_call.monitor.raw").read_bytes())
                if get(b, "Event") == "UserEvent")
    ours = next(m for m in DEMO if get(m, "Event") == "UserEvent")
    assert [k for k, _ in ours] == [k for k, _ in real] == [
        "Event", "Privilege", "Channel", "ChannelState", "ChannelStateDesc", "CallerIDNum",
        "CallerIDName", "ConnectedLineNum", "ConnectedLineName", "Language", "AccountCode",
        "Context", "Exten", "Priority", "Uniqueid", "Linkedid", "UserEvent", "TAPIEVENT",
    ]
    assert get(ours, "Privilege") == "user,all"
    assert get(ours, "AccountCode") == ""
