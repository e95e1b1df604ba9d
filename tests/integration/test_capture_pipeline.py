"""Real captures through the production pipeline: parser -> mapping plugin -> bridge -> model.

Unlike tests/core (which transcribes captures by regex), these feed the raw
bytes from tests/data through AMIParser and the Bridge exactly as the running
server does, and check what each line's clients would receive.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from twisted.internet.task import Clock

from asttapi_server.ami.parser import AMIParser

from .fakes import make_bridge

DATA = Path(__file__).resolve().parent.parent / "data"


def replay(relpath: str, bridge, clock: Clock, *, step: float = 0.001) -> None:
    raw = (DATA / relpath).read_bytes()
    if relpath.endswith(".gz"):
        raw = gzip.decompress(raw)
    parser = AMIParser()
    for message in parser.feed(raw):
        if message.kind == "event":
            bridge.on_ami_event(message)
        clock.advance(step)


def per_line(events) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for e in events:
        out.setdefault(e.line, []).append(e.param or e.msg)
    return out


INBOUND = ["LINE_NEWCALL", "LINECALLSTATE_OFFERING", "LINECALLINFOSTATE_CALLERID",
           "LINECALLSTATE_CONNECTED", "LINECALLSTATE_IDLE"]


def test_inbound_call_real_asterisk_22():
    """05: the manual's inbound flow; [~A&!line_1] HANGUP reaches nobody (only line_1 tracks)."""
    bridge, hub, clock, _ami = make_bridge()
    replay("ami/05_inbound_call.monitor.raw", bridge, clock)
    assert per_line(hub.events) == {"line_1": INBOUND}
    offering = hub.events[1]
    assert offering.callinfo["uniqueid"] == "1795674354.1"
    callinfo = hub.events[2]
    assert callinfo.callinfo["callerid"] == "0301234567"
    assert not any(e.synthetic for e in hub.events)
    clock.advance(120)
    assert bridge.model.tracked == 0


def test_outbound_9nxxxxxx_real_asterisk_22():
    bridge, hub, clock, _ami = make_bridge()
    replay("ami/06_outbound_9NXXXXXX.monitor.raw", bridge, clock)
    assert per_line(hub.events) == {
        "line_1": ["LINE_NEWCALL", "LINECALLSTATE_DIALTONE", "LINECALLSTATE_DIALING",
                   "LINECALLSTATE_PROCEEDING", "LINECALLSTATE_IDLE"]
    }
    clock.advance(120)
    assert bridge.model.tracked == 0


def test_outbound_busy_real_asterisk_22():
    bridge, hub, clock, _ami = make_bridge()
    replay("ami/07_outbound_busy.monitor.raw", bridge, clock)
    assert per_line(hub.events) == {
        "line_1": ["LINE_NEWCALL", "LINECALLSTATE_DIALTONE", "LINECALLSTATE_DIALING",
                   "LINECALLSTATE_PROCEEDING", "LINECALLSTATE_BUSY", "LINECALLSTATE_IDLE"]
    }


@pytest.mark.parametrize("name", [
    "asterisk-1.2.raw", "asterisk-1.4.raw", "asterisk-11.raw", "modern-with-pipe-dialplan.raw",
])
def test_legacy_dialects_give_the_same_flow(name):
    bridge, hub, clock, _ami = make_bridge()
    replay(f"ami-legacy/{name}", bridge, clock)
    assert per_line(hub.events) == {"line_1": INBOUND}
    assert hub.events[2].callinfo["callerid"] == "0301234567"


def test_untied_events_are_ignored_not_invented():
    """1.4 without Uniqueid and the manual's typo on an unknown call: logged, no call made up."""
    for name in ("asterisk-1.4-no-uniqueid.raw", "asterisk-1.2-manual-typo.raw"):
        bridge, hub, clock, _ami = make_bridge()
        replay(f"ami-legacy/{name}", bridge, clock)
        assert hub.events == []
        assert bridge.model.tracked == 0


def test_missing_idle_is_cleaned_up_after_grace():
    """07 with every IDLE UserEvent cut out: the Hangup starts the grace timer, then synthetic IDLE."""
    raw = (DATA / "ami/07_outbound_busy.monitor.raw").read_bytes()
    blocks = raw.split(b"\r\n\r\n")
    kept = [b for b in blocks if b"LINECALLSTATE_IDLE" not in b or not b.startswith(b"Event: UserEvent")]
    assert len(kept) < len(blocks)
    bridge, hub, clock, _ami = make_bridge(hangup_grace=5.0)
    parser = AMIParser()
    for message in parser.feed(b"\r\n\r\n".join(kept)):
        if message.kind == "event":
            bridge.on_ami_event(message)
    assert per_line(hub.events)["line_1"][-1] == "LINECALLSTATE_BUSY"
    clock.advance(4.9)
    assert per_line(hub.events)["line_1"][-1] == "LINECALLSTATE_BUSY"
    clock.advance(0.2)
    tail = hub.events[-2:]
    assert [e.param for e in tail] == ["LINECALLSTATE_DISCONNECTED", "LINECALLSTATE_IDLE"]
    assert all(e.synthetic for e in tail)
    # The call's own channel (1795674367.10) hangs up with Cause 16 in the
    # capture; the 17 "User busy" is on the PSTN leg, which the call doesn't own.
    assert tail[0].mode == "LINEDISCONNECTMODE_NORMAL"


def test_flood_capture_does_not_break_the_stream_nor_flood_the_log():
    """15: 10,000 'FLOOD n' UserEvents (unknown verb) amid 30k other events: all ignored, no call,
    and the log says so a handful of times, not ten thousand (peer pitfall 11)."""
    from twisted.logger import LogLevel, capturedLogs

    bridge, hub, clock, _ami = make_bridge()
    with capturedLogs() as logs:
        replay("ami/15_userevent_flood_events_on.monitor.raw.gz", bridge, clock, step=0)
    assert hub.events == []
    assert bridge.model.tracked == 0
    warnings = [e for e in logs if e.get("log_level") in (LogLevel.warn, LogLevel.error)]
    assert 1 <= len(warnings) <= 3, [e.get("log_format") for e in warnings[:5]]


def test_every_capture_passes_through_the_bridge_without_error():
    from twisted.logger import globalLogPublisher

    failures = []

    def observer(event):
        if event.get("log_failure") is not None:
            failures.append(event)

    globalLogPublisher.addObserver(observer)
    try:
        for path in sorted((DATA / "ami").glob("*.raw")) + sorted((DATA / "ami-legacy").glob("*.raw")):
            bridge, _hub, clock, _ami = make_bridge()
            replay(str(path.relative_to(DATA)), bridge, clock, step=0)
            clock.advance(20000)
            assert bridge.model.tracked == 0, path.name
    finally:
        globalLogPublisher.removeObserver(observer)
    assert failures == []
