"""What docs/protocol.md and docs/device-lines.md say device lines put in callinfo is what they put there.

A real capture (tests/data/ami-native) through the real plugin host, bridge
and model (tests/integration/test_device_lines.py's wiring): a call rings
bob's phone from the trunk and bob answers.
"""

from __future__ import annotations

from pathlib import Path

from tests.integration.test_device_lines import NATIVE, device_bridge, replay

ROOT = Path(__file__).resolve().parents[2]


def _bobs_events(tmp_path):
    bridge, hub, clock, _ = device_bridge(tmp_path)
    replay((NATIVE / "s01_inbound_ringgroup_answered.raw").read_bytes(), bridge, clock)
    return [e for e in hub.events if e.line == "bob"]


def test_the_origin_is_in_newcall_already_as_both_docs_say(tmp_path):
    events = _bobs_events(tmp_path)
    newcall = next(e for e in events if e.msg == "LINE_NEWCALL")
    offering = next(e for e in events if e.param == "LINECALLSTATE_OFFERING")
    assert newcall.callinfo["origin"] == offering.callinfo["origin"] == "LINECALLORIGIN_EXTERNAL"
    row = next(line for line in (ROOT / "docs" / "device-lines.md").read_text().splitlines()
               if line.startswith("| `DialBegin`, the device is `DestChannel`, a calling `Channel`"))
    assert "the origin already in it" in row, row
    origin = next(line for line in (ROOT / "docs" / "protocol.md").read_text().splitlines()
                  if line.startswith("| `origin` | lineMakeCall"))
    assert "already in `LINE_NEWCALL`" in origin, origin


def test_a_device_line_fills_connectedid_which_the_protocol_doc_says(tmp_path):
    events = _bobs_events(tmp_path)
    connected = next(e for e in events if e.param == "LINECALLSTATE_CONNECTED")
    assert connected.callinfo["connectedid"]  # the other party, from Asterisk's ConnectedLine
    assert any(e.param == "LINECALLINFOSTATE_CONNECTEDID" for e in events)
    table = (ROOT / "docs" / "protocol.md").read_text()
    row = next(line for line in table.splitlines()  # the table "Where each callinfo field comes from"
               if line.startswith("| `connectedid`, `connectedidname` |") and "SET CONNECTEDID" in line)
    assert "device line" in row and "only `SET CONNECTEDID`" not in row, row
    origin = next(line for line in table.splitlines() if line.startswith("| `origin` | lineMakeCall"))
    assert "device line" in origin and "otherwise only `SET CALLORIGIN`" not in origin, origin
