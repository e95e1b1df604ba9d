"""Small stand-ins for the call model and the bridge (the Telephony protocol)."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred, succeed

from asttapi_server.core.events import TapiEvent

CALLINFO = {
    "callerid": "0301234567",
    "calleridname": "Alice Example",
    "calledid": "200",
    "calledidname": "",
    "connectedid": "",
    "connectedidname": "",
    "origin": "LINECALLORIGIN_EXTERNAL",
    "uniqueid": "1700000000.1",
}


@dataclass
class FakeCall:
    """``lines`` track the call (not IDLE); ``state`` is theirs unless ``states`` says otherwise;
    ``left`` are lines that went IDLE on it; ``ended`` is set once the whole call is over."""

    handle: int
    lines: tuple[str, ...]
    state: str = "LINECALLSTATE_OFFERING"
    callinfo: dict[str, Any] = field(default_factory=lambda: dict(CALLINFO))
    states: dict[str, str] = field(default_factory=dict)
    left: tuple[str, ...] = ()
    ended: float | None = None

    def state_on(self, line: str) -> str | None:
        if line in self.left:
            return "LINECALLSTATE_IDLE"
        return self.states.get(line, self.state) if line in self.lines else None

    @property
    def seen_lines(self) -> tuple[str, ...]:
        return self.lines + self.left

    @property
    def holding_lines(self) -> tuple[str, ...]:
        gone = ("LINECALLSTATE_DISCONNECTED", "LINECALLSTATE_IDLE")
        return tuple(line for line in self.lines if self.state_on(line) not in gone)


class FakeModel:
    """get / calls_on_line / snapshot, as core.model.CallModel offers them."""

    def __init__(self) -> None:
        self.calls: dict[int, FakeCall] = {}

    def add(self, handle: int, *lines: str, state: str = "LINECALLSTATE_OFFERING") -> FakeCall:
        call = FakeCall(handle, lines, state)
        self.calls[handle] = call
        return call

    def get(self, handle: int) -> FakeCall | None:
        return self.calls.get(handle)

    def calls_on_line(self, line: str) -> list[FakeCall]:
        return [c for c in self.calls.values() if line in c.lines]

    def snapshot(self, call: FakeCall, line: str) -> dict:
        return {
            "call": call.handle,
            "line": line,
            "state": call.state_on(line),
            "callinfo": dict(call.callinfo),
            "lines": list(call.lines),
        }


class FakeTelephony:
    """Records requests; each answer is a Deferred the test fires (or a set result)."""

    def __init__(self) -> None:
        self.link_up = True
        self.model = FakeModel()
        self.requests: list[tuple] = []
        self.pending: list[Deferred] = []
        self.auto: Any = None  # if set: make_call answers succeed(auto) at once
        self.next_handle = 100

    def make_call(self, line: str, number: str, owner: Hashable) -> Deferred:
        self.requests.append(("make_call", line, number, owner))
        if self.auto is not None:
            self.next_handle += 1
            self.model.add(self.next_handle, line, state="LINECALLSTATE_DIALTONE")
            return succeed(self.next_handle)
        d: Deferred = Deferred()
        self.pending.append(d)
        return d

    def drop(self, handle: int) -> Deferred:
        self.requests.append(("drop", handle))
        d: Deferred = Deferred()
        self.pending.append(d)
        return d

    def blind_transfer(self, handle: int, number: str) -> Deferred:
        self.requests.append(("blind_transfer", handle, number))
        d: Deferred = Deferred()
        self.pending.append(d)
        return d


def event(msg: str, line: str | None, call: int | None = None, param: str | None = None, **kw: Any) -> TapiEvent:
    if call is not None and "callinfo" not in kw:
        kw["callinfo"] = dict(CALLINFO)
    return TapiEvent(msg, line, call, param, **kw)


def inbound_call(line: str, handle: int) -> list[TapiEvent]:
    """The events of a whole inbound call on ``line``."""
    return [
        event("LINE_NEWCALL", line, handle),
        event("LINE_CALLSTATE", line, handle, "LINECALLSTATE_OFFERING"),
        event("LINE_CALLINFO", line, handle, "LINECALLINFOSTATE_CALLERID"),
        event("LINE_CALLSTATE", line, handle, "LINECALLSTATE_CONNECTED", mode="LINECONNECTEDMODE_ACTIVE"),
        event("LINE_CALLSTATE", line, handle, "LINECALLSTATE_DISCONNECTED", mode="LINEDISCONNECTMODE_NORMAL"),
        event("LINE_CALLSTATE", line, handle, "LINECALLSTATE_IDLE"),
    ]
