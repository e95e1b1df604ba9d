"""Rights follow the call: issue 11, item 2, on the real call model and bridge.

The reproduction: a ring group rings line_1 (alice) and line_2 (bob); alice
answers, the dialplan sends line_2 LINECALLSTATE_HANGUP (DISCONNECTED), and
bob sends lineDrop / lineBlindTransfer on the shared handle. That once hung
up / redirected alice's caller on a real Asterisk; now it is refused with a
TAPI error, logged (throttled, escaped) and no AMI action is written.
"""

from __future__ import annotations

import json

from twisted.internet.testing import StringTransport
from twisted.logger import formatEvent, globalLogPublisher

from asttapi_server.clients.hub import Hub
from asttapi_server.clients.protocol import ClientFactory
from tests.integration.fakes import make_bridge

USERS = {
    "alice": {"token": "tok-alice-0123456789", "lines": ["line_1"]},
    "bob": {"token": "tok-bob-00123456789", "lines": ["line_2"]},
    "eve\u2028FAKE: root logged in": {"token": "tok-eve-00123456789", "lines": ["line_2"]},
    "boss": {"token": "tok-boss-0123456789", "lines": ["*"]},
}


class Client:
    """A logged-in client session (``token``: another than USERS' for ``user``)."""

    def __init__(self, factory: ClientFactory, user: str, token: str | None = None) -> None:
        self.proto = factory.buildProtocol(None)
        self.transport = StringTransport()
        self.proto.makeConnection(self.transport)
        self.rid = 0
        assert "result" in self.call("login", username=user, token=token or USERS[user]["token"])

    def send(self, method: str, **params) -> None:
        self.rid += 1
        self.transport.clear()
        line = {"jsonrpc": "2.0", "id": self.rid, "method": method, "params": params}
        self.proto.dataReceived(json.dumps(line).encode() + b"\n")

    def call(self, method: str, **params) -> dict:
        self.send(method, **params)
        msgs = [json.loads(x) for x in self.transport.value().splitlines()]
        (response,) = [m for m in msgs if m.get("id") == self.rid]
        return response


def lineerr(response: dict) -> str:
    return response["error"]["data"]["lineerr"]


def ring_group(ami, uid: str = "9.1") -> None:
    def tapi(text: str) -> None:
        ami.event(Event="UserEvent", Uniqueid=uid, Channel="PJSIP/trunk-0001", UserEvent="TAPI", TAPIEVENT=text)

    tapi("LINE_NEWCALL line_1 line_2")
    tapi("LINE_CALLSTATE LINECALLSTATE_OFFERING")
    tapi("SET CALLERID 0301234567")
    tapi(f"[~{uid}&line_1] LINE_CALLSTATE LINECALLSTATE_CONNECTED")
    tapi(f"[~{uid}&!line_1] LINE_CALLSTATE LINECALLSTATE_HANGUP")


def setup(**calls):
    bridge, _hub, clock, ami = make_bridge(**calls)
    hub = Hub()
    bridge.hub = hub
    factory = ClientFactory(hub, bridge, users=USERS, clock=clock)
    return bridge, clock, ami, factory


def capture_logs():
    seen: list[dict] = []
    globalLogPublisher.addObserver(seen.append)
    return seen


def refusals(seen: list[dict]) -> list[dict]:
    return [e for e in seen if "refused" in e.get("log_format", "")]


def test_a_colleague_whose_line_left_the_call_cannot_drop_or_transfer_it():
    bridge, clock, ami, factory = setup()
    alice, bob = Client(factory, "alice"), Client(factory, "bob")
    alice.call("lineOpen", line="line_1")
    bob.call("lineOpen", line="line_2")
    ring_group(ami)
    handle = bridge.model.by_uniqueid("9.1").handle
    seen = capture_logs()
    try:
        drop = bob.call("lineDrop", call=handle)
        transfer = bob.call("lineBlindTransfer", call=handle, number="0999")
        redirect = bob.call("lineRedirect", call=handle, number="0999")
        again = bob.call("lineDrop", call=handle)
    finally:
        globalLogPublisher.removeObserver(seen.append)
    assert [lineerr(r) for r in (drop, transfer, redirect, again)] == ["LINEERR_NOTOWNER"] * 4
    assert "held by another line" in drop["error"]["message"]
    assert ami.actions == []  # nothing reached Asterisk
    logged = refusals(seen)
    # One line per kind of refusal (drop, transfer, redirect); the repeated drop is held back.
    assert len(logged) == 3
    assert {e["method"] for e in logged} == {"lineDrop", "lineBlindTransfer", "lineRedirect"}
    assert all(e["user"] == "bob" and e["line"] == "line_2" and e["handle"] == handle for e in logged)

    # alice holds the call: her drop goes to Asterisk (which has not answered yet).
    alice.send("lineDrop", call=handle)
    assert alice.transport.value() == b""
    assert [a for a, _h, _d in ami.actions] == ["Hangup"]


def test_line_get_call_info_shows_only_the_requesters_lines():
    bridge, clock, ami, factory = setup()
    alice, bob, boss = Client(factory, "alice"), Client(factory, "bob"), Client(factory, "boss")
    alice.call("lineOpen", line="line_1")
    bob.call("lineOpen", line="line_2")
    boss.call("lineOpen", line="line_1")
    boss.call("lineOpen", line="line_2")
    ring_group(ami)
    handle = bridge.model.by_uniqueid("9.1").handle
    assert bridge.model.get(handle).lines == ("line_1", "line_2")  # the model knows both

    mine = bob.call("lineGetCallInfo", call=handle)["result"]
    assert mine["line"] == "line_2" and mine["lines"] == ["line_2"]
    assert mine["state"] == "LINECALLSTATE_DISCONNECTED"
    assert bob.call("lineGetCalls", line="line_2")["result"]["calls"][0]["lines"] == ["line_2"]
    assert alice.call("lineGetCallInfo", call=handle)["result"]["lines"] == ["line_1"]
    # A session with both lines open sees both, through the line that holds the call.
    both = boss.call("lineGetCallInfo", call=handle)["result"]
    assert both["line"] == "line_1" and both["lines"] == ["line_1", "line_2"]


def test_after_its_line_went_idle_a_live_call_is_invisible_and_a_finished_one_readable():
    bridge, clock, ami, factory = setup(linger=30.0)
    alice, bob = Client(factory, "alice"), Client(factory, "bob")
    alice.call("lineOpen", line="line_1")
    bob.call("lineOpen", line="line_2")
    ring_group(ami)
    handle = bridge.model.by_uniqueid("9.1").handle
    ami.event(Event="UserEvent", Uniqueid="9.1", UserEvent="TAPI",
              TAPIEVENT="[~9.1&line_2] LINE_CALLSTATE LINECALLSTATE_IDLE")
    # The call goes on on alice's line: bob's line has left it entirely.
    assert lineerr(bob.call("lineGetCallInfo", call=handle)) == "LINEERR_INVALCALLHANDLE"
    assert lineerr(bob.call("lineDrop", call=handle)) == "LINEERR_INVALCALLHANDLE"
    # The whole call ends: every line that had it may read the final record while it lingers.
    ami.event(Event="UserEvent", Uniqueid="9.1", UserEvent="TAPI", TAPIEVENT="LINE_CALLSTATE LINECALLSTATE_IDLE")
    late = bob.call("lineGetCallInfo", call=handle)["result"]
    assert late["state"] == "LINECALLSTATE_IDLE" and late["lines"] == []
    assert late["callinfo"]["callerid"] == "0301234567"
    # ... but not act on it, not even the line that had it last.
    assert lineerr(alice.call("lineDrop", call=handle)) == "LINEERR_INVALCALLSTATE"
    assert ami.actions == []
    clock.advance(31)
    assert lineerr(bob.call("lineGetCallInfo", call=handle)) == "LINEERR_INVALCALLHANDLE"


def test_own_line_disconnected_answers_invalcallstate_not_a_hangup():
    bridge, clock, ami, factory = setup()
    alice = Client(factory, "alice")
    alice.call("lineOpen", line="line_1")
    for text in ("LINE_NEWCALL line_1", "LINE_CALLSTATE LINECALLSTATE_OFFERING",
                 "LINE_CALLSTATE LINECALLSTATE_DISCONNECTED"):
        ami.event(Event="UserEvent", Uniqueid="7.1", Channel="PJSIP/trunk-0002", UserEvent="TAPI", TAPIEVENT=text)
    handle = bridge.model.by_uniqueid("7.1").handle
    response = alice.call("lineDrop", call=handle)
    assert lineerr(response) == "LINEERR_INVALCALLSTATE"
    assert "DISCONNECTED on line 'line_1'" in response["error"]["message"]
    assert ami.actions == []


def test_an_offered_line_may_still_act_and_a_refusal_log_line_is_escaped():
    bridge, clock, ami, factory = setup()
    bob = Client(factory, "bob")
    bob.call("lineOpen", line="line_2")
    for text in ("LINE_NEWCALL line_2", "LINE_CALLSTATE LINECALLSTATE_OFFERING"):
        ami.event(Event="UserEvent", Uniqueid="8.1", Channel="PJSIP/trunk-0003", UserEvent="TAPI", TAPIEVENT=text)
    handle = bridge.model.by_uniqueid("8.1").handle
    bob.send("lineDrop", call=handle)  # TAPI: reject the offered call
    assert bob.transport.value() == b""  # waiting for Asterisk
    assert [a for a, _h, _d in ami.actions] == ["Hangup"]

    eve = Client(factory, "eve\u2028FAKE: root logged in")
    seen = capture_logs()
    try:
        assert lineerr(eve.call("lineDrop", call=99999)) == "LINEERR_INVALCALLHANDLE"
    finally:
        globalLogPublisher.removeObserver(seen.append)
    (entry,) = refusals(seen)
    assert entry["user"] == "eve\\u2028FAKE: root logged in"
    assert "\u2028" not in formatEvent(entry)
    assert entry["line"] == "(none of its lines)"
