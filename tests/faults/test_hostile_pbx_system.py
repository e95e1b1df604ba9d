"""Issue 11 at the system level: the outside caller's comma and a hostile PBX, as a CRM client sees it.

AMI bytes into the real AMILink -> Bridge -> CallModel -> Hub -> client
sessions; the client's JSON requests out to the bytes the PBX receives.
"""

from __future__ import annotations

from pathlib import Path

from twisted.logger import capturedLogs, formatEvent

from .system import System, events

DATA = Path(__file__).resolve().parent.parent / "data"


def evil_stream_while_the_call_is_up() -> bytes:
    """tests/data/ami-hostile/evil-callerid-comma.raw (hand-made, see its README) up to the live call."""
    raw = (DATA / "ami-hostile/evil-callerid-comma.raw").read_bytes()
    raw = raw.split(b"\r\n", 1)[1]  # the banner: the fake PBX already sent one
    return raw[: raw.index(b"LINECALLINFOSTATE_CALLERID")] + b"\r\n\r\n"


def test_the_comma_caller_id_makes_one_call_and_lineDrop_writes_no_regex_channel():
    s = System()
    s.start()
    client = s.connect()
    client.result("lineOpen", line="line_1")
    with capturedLogs() as logged:
        s.session.send(evil_stream_while_the_call_is_up())
    seen = events(client)
    handles = {e[1] for e in seen if e[1] is not None}
    assert [e[0] for e in seen if e[0] == "LINE_NEWCALL"] == ["LINE_NEWCALL"]
    assert len(handles) == 1
    assert s.model.by_uniqueid("/^/") is None
    lines = [formatEvent(e) for e in logged]
    assert sum("Malformed TAPIEVENT" in line for line in lines) == 1
    # The CRM drops every handle it knows of, and a few it guesses.
    # (The one real Hangup's answer never comes here; nothing waits for it.)
    for n, handle in enumerate(sorted(handles | {1, 2, 3})):
        client.send({"jsonrpc": "2.0", "id": 100 + n, "method": "lineDrop", "params": {"call": handle}})
    sent = s.session.transport.value()
    assert b"Channel: /" not in sent
    assert sent.count(b"Action: Hangup\r\n") == 1
    assert b"Channel: Local/100@inbound-00000000;2\r\n" in sent


def test_garbage_and_a_20000_line_event_leave_the_link_and_the_clients_working():
    """Item 8: header-less garbage and one TAPIEVENT naming 20,000 lines."""
    s = System()
    s.start()
    client = s.connect()
    client.result("lineOpen", line="line_1")
    with capturedLogs() as logged:
        for i in range(2000):
            s.session.send(b"\x1b[2J garbage %d without a colon\r\n\r\n" % i)
        s.tapi("LINE_NEWCALL " + " ".join(f"l{i}" for i in range(20000)), "1795674354.7")
        s.tapi("LINE_NEWCALL line_1", "1795674354.8")
    assert [e[0] for e in events(client)] == ["LINE_NEWCALL"]
    lines = [formatEvent(e) for e in logged]
    assert len(lines) <= 3, lines
    assert not any("\x1b" in line for line in lines)
    assert s.ami.connected and s.bridge.link_up
    assert client.result("lineGetCalls", line="line_1")["calls"]
