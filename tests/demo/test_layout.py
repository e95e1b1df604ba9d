"""The demo's messages use exactly the header layouts of the real Asterisk 22 captures."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from .helpers import Session, action, get, make_pbx, parse_blocks, run_until_idle

DATA = Path(__file__).resolve().parents[1] / "data" / "ami"
CAPTURES = [
    "01b_login_plain_events_on.raw",
    "05_inbound_call.monitor.raw",
    "06_outbound_9NXXXXXX.monitor.raw",
    "07_outbound_busy.monitor.raw",
    "10_originate_async.driver.raw",
    "11_coreshowchannels.driver.raw",
]


def real_layouts():
    layouts = defaultdict(set)
    for name in CAPTURES:
        for block in parse_blocks((DATA / name).read_bytes()):
            event = get(block, "Event")
            if event:
                layouts[event].add(tuple(k for k, _ in block))
    return layouts


def demo_messages():
    clock, engine, factory = make_pbx()
    s = Session(factory)
    s.login(events="on")
    msgs = s.take()
    for kind in ("inbound", "outbound", "busy"):
        engine.play(kind)
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
                                   "CoreShowChannel", "DialBegin", "VarSet", "Newexten"])
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
