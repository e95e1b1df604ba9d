"""The transcripts of docs/protocol.md, produced by running the server (see stage.py).

``python -m tests.docs.transcripts`` prints them; ``--write`` puts them into
docs/protocol.md and README.md between their ``<!-- transcript: NAME -->`` and
``<!-- /transcript -->`` marks. tests/docs/test_protocol_doc.py checks that
the doc holds exactly what this produces.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

from .stage import TOKEN, Stage

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "protocol.md"
README = ROOT / "README.md"
DOCS = (DOC, README)

# The capture's UserEvents, in order: NEWCALL, OFFERING, SET CALLERID, CALLINFO, CONNECTED, HANGUP, IDLE.
_CAPTURE = "05_inbound_call.monitor.raw"


def _upto(blocks: list[bytes], text: bytes) -> int:
    """Index just past the first UserEvent block whose TAPIEVENT contains ``text``."""
    for i, block in enumerate(blocks):
        if block.startswith(b"Event: UserEvent") and text in block:
            return i + 1
    raise AssertionError(f"no UserEvent with {text!r} in the capture")


def inbound() -> list[str]:
    """Capture 05 (real Asterisk 22, the shipped dialplan) seen by a CRM client with nc."""
    s = Stage()
    s.start_capture()
    c = s.connect()
    c.request(1, "lineOpen", line="line_1")
    c.request(2, "login", username="crm", token=TOKEN)
    c.request(3, "lineOpen", line="line_1")
    blocks = s.capture_events(_CAPTURE)
    offering = _upto(blocks, b"LINECALLSTATE_OFFERING")
    s.send_events(blocks[:offering])
    s.lookups()  # the CRM answers while the call rings
    connected = _upto(blocks, b"LINECALLSTATE_CONNECTED")
    s.send_events(blocks[offering:connected])
    c.read()
    c.send('{"jsonrpc":"2.0","id":4,"method":"lineAnswer","params":{"call":1}}')
    c.request(5, "lineGetCalls", line="line_1")
    s.send_events(blocks[connected:])
    c.read()
    c.request(6, "lineDrop", call=1)
    c.send("hello?")
    c.request(7, "ping")
    s.drop_link()
    c.read()
    return c.transcript


def pbx_down() -> list[str]:
    """A client connects while the server has no PBX link yet, then the PBX comes up."""
    s = Stage(users={})
    s.ami.startService()  # connecting: not logged in yet
    c = s.connect()
    c.request(1, "lineOpen", line="line_1")
    c.request(2, "lineMakeCall", line="line_1", number="200")
    s.start_capture()
    c.read()
    return c.transcript


def click_to_dial() -> list[str]:
    """lineMakeCall on the demo PBX: the phone rings, then Asterisk dials the number."""
    s = Stage(users={})
    s.start_demo()
    c = s.connect()
    c.request(1, "lineOpen", line="line_1")
    c.request(2, "lineMakeCall", line="line_1", number="+49 30 1234567")
    s.run(0.25)
    s.play_until_idle()
    c.read()
    return c.transcript


def _short(msg: dict) -> str:
    p = msg["params"]
    word = {"LINE_CALLSTATE": lambda: p["state"].removeprefix("LINECALLSTATE_"),
            "LINE_CALLINFO": lambda: "CALLINFO " + p["infostate"].removeprefix("LINECALLINFOSTATE_"),
            "LINE_LINEDEVSTATE": lambda: p["devstate"]}.get(msg["method"], lambda: msg["method"])()
    if p.get("mode"):
        word += f"({p['mode']})"
    if p.get("synthetic"):
        word += "*"
    return word


def _cycles(c, label: str, lines=("line_1", "line_2")) -> list[str]:
    c.read()
    events = [m for m in c.messages[c.mark:] if "method" in m and m["method"] != "hello"]
    c.mark = len(c.messages)
    out = [label]
    for line in lines:
        got = [_short(m) for m in events if m["params"]["line"] == line]
        if got:
            out.append(f"  {line}: " + " > ".join(got))
    return out


def lifecycles() -> list[str]:
    """Each role's events, from the demo PBX and the real captures, as the server sends them today."""
    out: list[str] = []
    s = Stage(users={})
    engine = s.start_demo()
    c = s.connect()
    for rid, line in enumerate(("line_1", "line_2"), 1):
        c.request(rid, "lineOpen", line=line)
    c.read()
    engine.play("inbound", caller=("0301234567", "Ext Caller"))
    s.run(0.25)
    s.lookups()
    s.play_until_idle()
    out += _cycles(c, "inbound call to the ring group; bob (line_1) answers, the caller hangs up (demo):")
    engine.play("inbound", caller=("02079460958", "Ellen Example"))
    s.run(0.5)
    s.lookups()
    c.read()
    handle = next(m["params"]["call"] for m in c.messages if m.get("method") == "LINE_NEWCALL"
                  and m["params"]["callinfo"]["callerid"] == "02079460958")
    c.request(10, "lineDrop", call=handle)
    s.play_until_idle()
    out += _cycles(c, "inbound call dropped with lineDrop while it rings (demo):")
    engine.play("outbound")
    s.play_until_idle()
    out += _cycles(c, "outbound call dialled on bob's phone, answered (demo):")
    engine.play("busy")
    s.play_until_idle()
    out += _cycles(c, "outbound call dialled on bob's phone, busy (demo):")
    c.request(11, "lineMakeCall", line="line_1", number="95551234")
    s.run(0.25)
    s.play_until_idle()
    out += _cycles(c, "lineMakeCall from line_1, answered (demo; this connection gets no LINE_NEWCALL):")
    # line_3: alice's SIP phone, a device line (channel events, no UserEvent; docs/device-lines.md)
    c.request(12, "lineOpen", line="line_3")
    c.read()
    c.mark = len(c.messages)
    for kind, kwargs, label in (
            ("device_inbound", {"caller": ("0301234567", "Ext Caller"), "hold": 2.0},
             "inbound call to alice's phone, answered, held and resumed (demo, device line_3):"),
            ("device_inbound", {"ending": "gives_up"}, "inbound call to alice's phone, the caller gives up (demo, device line_3):"),
            ("device_outbound", {}, "outbound call dialled on alice's phone, answered (demo, device line_3):"),
            ("device_busy", {}, "outbound call dialled on alice's phone, busy (demo, device line_3):")):
        engine.play(kind, **kwargs)
        s.run(0.25)
        s.lookups()
        s.play_until_idle()
        out += _cycles(c, label, lines=("line_3",))
    c.request(13, "lineMakeCall", line="line_3", number="95551234")
    s.run(0.25)
    s.play_until_idle()
    out += _cycles(c, "lineMakeCall from line_3, answered (demo, device line; no LINE_NEWCALL here):", lines=("line_3",))
    for name, label in (("05_inbound_call.monitor.raw", "inbound call, bob answers (real Asterisk 22, capture 05):"),
                        ("06_outbound_9NXXXXXX.monitor.raw", "outbound call, answered (real Asterisk 22, capture 06):"),
                        ("07_outbound_busy.monitor.raw", "outbound call, busy (real Asterisk 22, capture 07):")):
        s = Stage(users={}, contacts=False)
        s.start_capture()
        c = s.connect()
        c.request(1, "lineOpen", line="line_1")
        c.read()
        s.send_events(s.capture_events(name))
        out += _cycles(c, label)
    return out


def hello() -> list[str]:
    """The first line of every connection (here: users configured, PBX link up)."""
    s = Stage()
    s.start_capture()
    return s.connect().transcript


def call_object() -> list[str]:
    """lineGetCallInfo of capture 05's call while bob talks, pretty-printed."""
    s = Stage()
    s.start_capture()
    c = s.connect()
    c.request(1, "login", username="crm", token=TOKEN)
    c.request(2, "lineOpen", line="line_1")
    blocks = s.capture_events(_CAPTURE)
    offering, connected = _upto(blocks, b"LINECALLSTATE_OFFERING"), _upto(blocks, b"LINECALLSTATE_CONNECTED")
    s.send_events(blocks[:offering])
    s.lookups()
    s.send_events(blocks[offering:connected])
    result = c.request(3, "lineGetCallInfo", call=1)["result"]
    return json.dumps(result, indent=1).splitlines()


def error() -> list[str]:
    """A telephony error: a handle that names no call."""
    s = Stage(users={})
    s.start_capture()
    c = s.connect()
    c.request(1, "lineOpen", line="line_1")
    c.read()
    start = len(c.transcript)
    c.request(7, "lineGetCallInfo", call=99)
    return c.transcript[start:]


def readme_demo() -> list[str]:
    """README's first contact: nc against the demo (no users), its first inbound call on line_1."""
    s = Stage(users={})
    engine = s.start_demo()
    c = s.connect()
    c.request(1, "lineOpen", line="line_1")
    engine.play("inbound")
    s.run(0.25)
    s.lookups()
    s.play_until_idle()
    c.read()
    return c.transcript


TRANSCRIPTS: dict[str, Callable[[], list[str]]] = {
    "readme-demo": readme_demo,
    "hello": hello,
    "call-object": call_object,
    "error": error,
    "lifecycles": lifecycles,
    "inbound": inbound,
    "pbx-down": pbx_down,
    "click-to-dial": click_to_dial,
}

_BLOCK = re.compile(r"(<!-- transcript: ([\w-]+) -->\n```\w*\n)(.*?)(```\n<!-- /transcript -->)", re.S)


def blocks_in_doc(text: str) -> dict[str, str]:
    return {m.group(2): m.group(3) for m in _BLOCK.finditer(text)}


def render(name: str) -> str:
    return "".join(line + "\n" for line in TRANSCRIPTS[name]())


def write() -> None:
    for doc in DOCS:
        text = doc.read_text()
        text = _BLOCK.sub(lambda m: m.group(1) + render(m.group(2)) + m.group(4), text)
        doc.write_text(text)


if __name__ == "__main__":
    if "--write" in sys.argv:
        write()
    else:
        for name in sys.argv[1:] or TRANSCRIPTS:
            print(f"== {name}")
            print(render(name), end="")
