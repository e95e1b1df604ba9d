"""Test helpers for the pure core: build TapiSignals directly, read captures by hand.

The AMI parser is a separate package with its own tests; these helpers do NOT
use it. ``transcribe`` is a deliberately tiny regex reader that pulls, in
order, the UserEvent TAPIEVENT texts (with their Uniqueid and Channel), the
Hangup events (Uniqueid, Cause) and the OriginateResponses out of a capture.
Everything it returns is *transcribed* from the real capture files in
tests/data, not parsed by production code.
"""

from __future__ import annotations

import re
from pathlib import Path

from asttapi_server.core.grammar import TapiSignal, parse_tapievent

DATA = Path(__file__).resolve().parent.parent / "data"

_BODY = re.compile(r"^(?:UserEvent: )?((?:TAPI\|)?TAPIEVENT\b.*)$", re.MULTILINE)


def sig(text: str, uniqueid: str | None = None, channel: str | None = None) -> TapiSignal:
    return TapiSignal(parse_tapievent(text), uniqueid, channel)


def brief(events) -> list[tuple]:
    """Events as (msg, line, call, param, mode) tuples, for whole-list asserts."""
    return [(e.msg, e.line, e.call, e.param, e.mode) for e in events]


def per_line(events) -> dict[str, list[str]]:
    """line -> the sequence of msg/param it got (NEWCALL, then the states/infostates)."""
    out: dict[str, list[str]] = {}
    for e in events:
        out.setdefault(e.line, []).append(e.param or e.msg)
    return out


def transcribe(relpath: str) -> list[tuple]:
    """[("tapi", text, uniqueid, channel) | ("hangup", uniqueid, cause, channel)
    | ("originate", uniqueid, channel, response, reason)] in capture order."""
    raw = (DATA / relpath).read_bytes().decode("utf-8", "replace")
    out: list[tuple] = []
    for block in re.split(r"\r?\n\r?\n", raw):
        headers: dict[str, str] = {}
        for line in block.splitlines():
            key, sep, value = line.partition(": ")
            if sep and key not in headers:
                headers[key] = value
        event = headers.get("Event", "")
        if event.startswith("UserEvent"):
            m = _BODY.search(block)
            if m:
                out.append(("tapi", m.group(1).strip(), headers.get("Uniqueid"), headers.get("Channel")))
        elif event == "Hangup":
            out.append(("hangup", headers["Uniqueid"], int(headers["Cause"]), headers.get("Channel")))
        elif event == "OriginateResponse":
            out.append(("originate", headers.get("Uniqueid"), headers.get("Channel"),
                        headers.get("Response"), int(headers.get("Reason", "0"))))
    return out


def replay(model, items, start: float = 100.0, step: float = 0.01, tick: bool = True) -> list:
    """Feed transcribed items to a model, one time step apart; return every event."""
    events = []
    now = start
    for item in items:
        now += step
        if item[0] == "tapi":
            events += model.apply(TapiSignal(parse_tapievent(item[1]), item[2], item[3]), now)
        elif item[0] == "hangup":
            events += model.channel_hangup(item[1], item[2], now)
        if tick:
            events += model.tick(now)
    return events
