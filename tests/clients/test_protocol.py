"""The client protocol over StringTransport with a Clock and a fake bridge."""

from __future__ import annotations

import pytest
from twisted.logger import LogLevel, globalLogPublisher

from asttapi_server import __version__
from asttapi_server.clients import codec
from asttapi_server.errors import ActionFailed, ActionTimeout, LinkDown, TelephonyError

from .fakes import event, inbound_call
from .harness import USERS, Harness


def lineerr(response: dict) -> str:
    assert response["error"]["code"] == codec.TELEPHONY_ERROR, response
    return response["error"]["data"]["lineerr"]


# -- hello, framing --------------------------------------------------------------


def test_hello_is_the_first_line():
    h = Harness()
    c = h.connect()
    assert c.hello == {
        "server": "asttapi-server",
        "version": __version__,
        "protocol": 1,
        "login_required": False,
        "epoch": "e1",
        "pbx": "up",
    }
    assert Harness(USERS).connect().hello["login_required"] is True


def test_request_split_anywhere_and_crlf_accepted():
    h = Harness()
    c = h.connect()
    data = b'{"jsonrpc":"2.0","id":7,"method":"ping"}\r\n{"jsonrpc":"2.0","id":8,"method":"ping"}\n'
    for i in range(len(data)):
        c.send_raw(data[i : i + 1])
    assert [m["id"] for m in c.read()] == [7, 8]


def test_blank_lines_are_ignored_and_notifications_get_no_answer():
    h = Harness()
    c = h.connect()
    c.send_raw(b"\n\r\n   \n")
    c.send({"jsonrpc": "2.0", "method": "ping"})
    c.send({"jsonrpc": "2.0", "method": "noSuchThing"})
    assert c.read() == []
    assert c.result("ping") == {"seq": 0}


@pytest.mark.parametrize(
    "raw, code, rid",
    [
        (b"{not json", codec.PARSE_ERROR, None),
        (b'{"jsonrpc":"2.0","id":1,"method":"ping"', codec.PARSE_ERROR, None),  # truncated
        (b"\xff\xfe", codec.PARSE_ERROR, None),
        (b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":NaN}}', codec.PARSE_ERROR, None),
        (b"[]", codec.INVALID_REQUEST, None),  # an empty batch: one error, not an array
        (b"[" * 60000, codec.PARSE_ERROR, None),  # recursion, not a crash
        (b"42", codec.INVALID_REQUEST, None),
        (b'{"id":3,"method":"ping"}', codec.INVALID_REQUEST, 3),
        (b'{"jsonrpc":"1.0","id":"a","method":"ping"}', codec.INVALID_REQUEST, "a"),
        (b'{"jsonrpc":"2.0","id":{},"method":"ping"}', codec.INVALID_REQUEST, None),
        (b'{"jsonrpc":"2.0","id":true,"method":"ping"}', codec.INVALID_REQUEST, None),
        (b'{"jsonrpc":"2.0","id":4,"method":7}', codec.INVALID_REQUEST, 4),
        (b'{"jsonrpc":"2.0","id":4,"method":"ping","extra":1}', codec.INVALID_REQUEST, 4),
        (b'{"jsonrpc":"2.0","id":5,"method":"lineOpen","params":["line_1"]}', codec.INVALID_PARAMS, 5),
        (b'{"jsonrpc":"2.0","id":5,"method":"lineOpen","params":{"line":7}}', codec.INVALID_PARAMS, 5),
        (b'{"jsonrpc":"2.0","id":5,"method":"lineOpen","params":{}}', codec.INVALID_PARAMS, 5),
        (b'{"jsonrpc":"2.0","id":5,"method":"lineOpen","params":{"line":"x","lnie":1}}', codec.INVALID_PARAMS, 5),
        (b'{"jsonrpc":"2.0","id":5,"method":"lineDrop","params":{"call":"1"}}', codec.INVALID_PARAMS, 5),
        (b'{"jsonrpc":"2.0","id":5,"method":"lineDrop","params":{"call":1.5}}', codec.INVALID_PARAMS, 5),
        (b'{"jsonrpc":"2.0","id":5,"method":"lineDrop","params":{"call":true}}', codec.INVALID_PARAMS, 5),
        (b'{"jsonrpc":"2.0","id":6,"method":"rpc.discover"}', codec.METHOD_NOT_FOUND, 6),
    ],
)
def test_malformed_lines_get_an_error_and_the_connection_lives(raw, code, rid):
    h = Harness()
    c = h.connect()
    c.send_raw(raw + b"\n")
    (msg,) = c.read()
    assert msg["jsonrpc"] == "2.0"
    assert msg["id"] == rid
    assert msg["error"]["code"] == code
    assert isinstance(msg["error"]["message"], str) and msg["error"]["message"]
    assert not c.closed
    assert c.result("ping") == {"seq": 0}


def test_line_over_the_limit_closes_with_a_final_error():
    h = Harness(max_line_bytes=1000)
    c = h.connect()
    c.send_raw(b"x" * 600)
    assert not c.closed
    c.send_raw(b"x" * 600)  # no newline yet, already too long
    (msg,) = c.read()
    assert msg["error"]["code"] == codec.CONNECTION_CLOSING
    assert "1000 bytes" in msg["error"]["message"]
    assert c.transport.disconnecting
    c.send_raw(b'{"jsonrpc":"2.0","id":1,"method":"ping"}\n')
    assert c.read() == []
    # the client never reads the goodbye: aborted after close_timeout
    h.clock.advance(h.factory.close_timeout)
    assert h.clock.getDelayedCalls() == []


def test_complete_long_line_in_one_chunk_closes_too():
    h = Harness(max_line_bytes=100)
    c = h.connect()
    c.send_raw(b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"p":"' + b"y" * 200 + b'"}}\n')
    (msg,) = c.read()
    assert msg["error"]["code"] == codec.CONNECTION_CLOSING
    assert c.closed
    c.proto.connectionLost(None)
    assert h.clock.getDelayedCalls() == []


def test_line_exactly_at_the_limit_is_fine():
    h = Harness(max_line_bytes=64)
    c = h.connect()
    line = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'
    line = line[:-1] + b" " * (64 - len(line)) + b"}"
    assert len(line) == 64
    c.send_raw(line + b"\r\n")
    assert c.read()[0]["result"] == {"seq": 0}


def test_error_flood_closes_the_connection_but_slow_errors_do_not():
    h = Harness(error_limit=5, error_window=10.0)
    c = h.connect()
    for _ in range(20):  # one error every 3 s: never more than 5 in 10 s
        c.send_raw(b"garbage\n")
        h.clock.advance(3)
    assert not c.closed
    c.read()
    for _ in range(6):
        c.send_raw(b"garbage\n")
    msgs = c.read()
    assert msgs[-1]["error"]["code"] == codec.CONNECTION_CLOSING
    assert "errors" in msgs[-1]["error"]["message"]
    assert c.closed
    c.proto.connectionLost(None)
    assert h.clock.getDelayedCalls() == []


# -- login and rights --------------------------------------------------------------


def test_login_required_before_anything_but_ping():
    h = Harness(USERS)
    c = h.connect()
    assert c.result("ping") == {"seq": 0}
    r = c.call("lineOpen", line="line_1")
    assert r["error"]["code"] == codec.AUTH_ERROR
    r = c.call("login", username="alice", token="wrong")
    assert r["error"]["code"] == codec.AUTH_ERROR
    r = c.call("login", username="alice", token=USERS["alice"]["token"])
    assert r["result"] == {"user": "alice", "lines": ["line_1", "line_1*"]}
    assert c.call("login", username="bob", token=USERS["bob"]["token"])["error"]["code"] == codec.AUTH_ERROR
    assert c.result("lineOpen", line="line_1")["calls"] == []


def test_unknown_user_and_three_failed_logins_close():
    h = Harness(USERS)
    c = h.connect()
    assert c.call("login", username="mallory", token="x")["error"]["code"] == codec.AUTH_ERROR
    c.call("login", username="alice", token="nope")
    c.send({"jsonrpc": "2.0", "id": 9, "method": "login", "params": {"username": "alice", "token": "no"}})
    msgs = c.read()
    assert msgs[-1]["id"] is None and "failed logins" in msgs[-1]["error"]["message"]
    assert c.closed


def test_login_without_users_configured_is_refused_politely():
    c = Harness().connect()
    r = c.call("login", username="alice", token="x")
    assert r["error"]["code"] == codec.AUTH_ERROR
    assert "no login is needed" in r["error"]["message"]
    assert c.result("lineOpen", line="anything")["calls"] == []


def test_token_never_reaches_the_log():
    seen: list[dict] = []
    globalLogPublisher.addObserver(seen.append)
    try:
        h = Harness(USERS)
        c = h.connect()
        c.call("login", username="alice", token="wrong-" + USERS["alice"]["token"])
        c.call("login", username="alice", token=USERS["alice"]["token"])
        c.send_raw(b"x" * 70000)  # and a closing path
    finally:
        globalLogPublisher.removeObserver(seen.append)
    assert any(e.get("log_level") == LogLevel.warn for e in seen)
    from twisted.logger import formatEvent

    text = "\n".join(formatEvent(e) + repr(e) for e in seen)
    assert "alice" in text
    assert USERS["alice"]["token"] not in text


def test_user_cannot_open_lines_outside_its_patterns_and_sees_nothing_of_them():
    h = Harness(USERS)
    alice = h.connect("alice")
    bob = h.connect("bob")
    r = bob.call("lineOpen", line="line_1")
    assert lineerr(r) == "LINEERR_NOTOWNER"
    assert "line_1" in r["error"]["message"]
    assert bob.result("lineOpen", line="sip/bob")["calls"] == []
    alice.result("lineOpen", line="line_1")
    h.tel.model.add(5, "line_1")
    for ev in inbound_call("line_1", 5):
        h.hub.publish(ev)
    assert len(alice.read()) == 6
    assert bob.read() == []
    # nor can bob touch or inspect line_1's call by guessing its handle
    assert lineerr(bob.call("lineGetCallInfo", call=5)) == "LINEERR_INVALCALLHANDLE"
    assert lineerr(bob.call("lineDrop", call=5)) == "LINEERR_INVALCALLHANDLE"
    assert lineerr(bob.call("lineGetCalls", line="line_1")) == "LINEERR_INVALLINEHANDLE"
    assert h.tel.requests == []


# -- lines and events --------------------------------------------------------------


def test_line_open_lists_existing_calls_and_events_follow():
    h = Harness()
    h.tel.model.add(3, "line_1", state="LINECALLSTATE_CONNECTED")
    c = h.connect()
    r = c.result("lineOpen", line="line_1")
    assert r["seq"] == 0 and r["epoch"] == "e1" and "replay" not in r
    assert r["calls"][0]["call"] == 3 and r["calls"][0]["state"] == "LINECALLSTATE_CONNECTED"
    h.hub.publish(event("LINE_CALLSTATE", "line_1", 3, "LINECALLSTATE_DISCONNECTED", mode="LINEDISCONNECTMODE_BUSY"))
    (msg,) = c.read()
    assert msg == {
        "jsonrpc": "2.0",
        "method": "LINE_CALLSTATE",
        "params": {
            "line": "line_1",
            "call": 3,
            "state": "LINECALLSTATE_DISCONNECTED",
            "mode": "LINEDISCONNECTMODE_BUSY",
            "seq": 1,
            "callinfo": msg["params"]["callinfo"],
        },
    }
    assert set(msg["params"]["callinfo"]) >= {"callerid", "calleridname", "uniqueid", "origin"}
    assert c.result("lineGetCalls", line="line_1")["calls"][0]["call"] == 3
    assert c.result("lineGetCallInfo", call=3)["callinfo"]["callerid"] == "0301234567"
    assert c.result("lineClose", line="line_1") == {}
    h.hub.publish(event("LINE_CALLSTATE", "line_1", 3, "LINECALLSTATE_IDLE"))
    assert c.read() == []
    assert lineerr(c.call("lineClose", line="line_1")) == "LINEERR_INVALLINEHANDLE"


def test_events_once_per_line_and_only_for_open_lines():
    h = Harness()
    c = h.connect()
    c.result("lineOpen", line="a")
    c.result("lineOpen", line="a")  # twice: still once
    c.result("lineOpen", line="b")
    h.hub.publish(event("LINE_CALLSTATE", "a", 1, "LINECALLSTATE_OFFERING"))
    h.hub.publish(event("LINE_CALLSTATE", "b", 1, "LINECALLSTATE_OFFERING"))
    h.hub.publish(event("LINE_CALLSTATE", "z", 2, "LINECALLSTATE_OFFERING"))
    msgs = c.read()
    assert [(m["params"]["line"], m["params"]["seq"]) for m in msgs] == [("a", 1), ("b", 2)]


def test_line_less_devstate_goes_to_every_open_line_of_every_client():
    h = Harness()
    c1, c2, c3 = h.connect(), h.connect(), h.connect()
    c1.result("lineOpen", line="a")
    c1.result("lineOpen", line="b")
    c2.result("lineOpen", line="b")
    h.hub.publish(event("LINE_LINEDEVSTATE", None, None, "LINEDEVSTATE_OUTOFSERVICE", synthetic=True))
    got1 = sorted((m["params"]["line"], m["params"]["devstate"]) for m in c1.read())
    assert got1 == [("a", "LINEDEVSTATE_OUTOFSERVICE"), ("b", "LINEDEVSTATE_OUTOFSERVICE")]
    (m2,) = c2.read()
    assert m2["params"] == {"line": "b", "devstate": "LINEDEVSTATE_OUTOFSERVICE", "seq": 1, "synthetic": True}
    assert c3.read() == []


def test_make_call_answers_the_handle_and_its_newcall_is_not_sent_back():
    h = Harness()
    caller, other = h.connect(), h.connect()
    caller.result("lineOpen", line="line_1")
    other.result("lineOpen", line="line_1")
    assert lineerr(caller.call("lineMakeCall", line="line_2", number="200")) == "LINEERR_INVALLINEHANDLE"
    caller.send({"jsonrpc": "2.0", "id": "mc", "method": "lineMakeCall", "params": {"line": "line_1", "number": "+49 (30) 123-45.67"}})
    assert caller.read() == []  # waits for the PBX
    (_, line, number, owner) = h.tel.requests[-1]
    assert (line, number) == ("line_1", "+4930123456" + "7")
    assert owner == caller.proto.session.sid
    h.tel.model.add(77, "line_1", state="LINECALLSTATE_DIALTONE")
    h.tel.pending.pop().callback(77)
    assert caller.read() == [{"jsonrpc": "2.0", "id": "mc", "result": {"call": 77}}]
    h.hub.publish(event("LINE_NEWCALL", "line_1", 77, owner=owner))
    h.hub.publish(event("LINE_CALLSTATE", "line_1", 77, "LINECALLSTATE_DIALTONE"))
    assert [m["method"] for m in caller.read()] == ["LINE_CALLSTATE"]
    assert [m["method"] for m in other.read()] == ["LINE_NEWCALL", "LINE_CALLSTATE"]


@pytest.mark.parametrize("number", ["", "12\r\nAction: Hangup", "200@other", "SIP/200", "_X.", "1+2", "x" * 65, "12,3", "٣"])
def test_bad_numbers_never_reach_the_bridge(number):
    h = Harness()
    c = h.connect()
    c.result("lineOpen", line="line_1")
    assert c.call("lineMakeCall", line="line_1", number=number)["error"]["code"] == codec.INVALID_PARAMS
    assert h.tel.requests == []


@pytest.mark.parametrize(
    "failure, expected",
    [
        (TelephonyError("LINEERR_INVALCALLSTATE", "the call is not connected"), "LINEERR_INVALCALLSTATE"),
        (LinkDown("down"), "LINEERR_DISCONNECTED"),
        (ActionTimeout("slow"), "LINEERR_OPERATIONFAILED"),
        (ActionFailed("Redirect", {"Message": "Channel not found"}), "LINEERR_OPERATIONFAILED"),
        (RuntimeError("bug in bridge"), "LINEERR_OPERATIONFAILED"),
    ],
)
def test_telephony_failures_are_mapped_to_lineerr(failure, expected):
    h = Harness()
    h.tel.model.add(9, "line_1", state="LINECALLSTATE_CONNECTED")
    c = h.connect()
    c.result("lineOpen", line="line_1")
    c.send({"jsonrpc": "2.0", "id": 1, "method": "lineBlindTransfer", "params": {"call": 9, "number": "300"}})
    assert h.tel.requests == [("blind_transfer", 9, "300")]
    h.tel.pending.pop().errback(failure)
    (msg,) = c.read()
    assert msg["id"] == 1 and msg["error"]["data"]["lineerr"] == expected
    if isinstance(failure, ActionFailed):
        assert "Channel not found" in msg["error"]["message"]
    if isinstance(failure, RuntimeError):
        assert "bug in bridge" not in msg["error"]["message"]  # no internals to clients


def test_drop_and_redirect_succeed_with_empty_result():
    h = Harness()
    h.tel.model.add(9, "line_1")
    c = h.connect()
    c.result("lineOpen", line="line_1")
    c.send({"jsonrpc": "2.0", "id": 1, "method": "lineDrop", "params": {"call": 9}})
    h.tel.pending.pop().callback(None)
    c.send({"jsonrpc": "2.0", "id": 2, "method": "lineRedirect", "params": {"call": 9, "number": "500"}})
    h.tel.pending.pop().callback(None)
    assert [m["result"] for m in c.read()] == [{}, {}]
    assert h.tel.requests == [("drop", 9), ("blind_transfer", 9, "500")]


def test_link_down_is_refused_before_asking_the_bridge():
    h = Harness()
    h.tel.link_up = False
    c = h.connect()
    c.result("lineOpen", line="line_1")
    assert lineerr(c.call("lineMakeCall", line="line_1", number="200")) == "LINEERR_DISCONNECTED"
    assert h.tel.requests == []


def test_line_open_says_whether_the_pbx_link_is_in_service():
    h = Harness()
    c = h.connect()
    assert c.result("lineOpen", line="line_1")["devstate"] == "LINEDEVSTATE_INSERVICE"
    h.tel.link_up = False
    assert c.result("lineOpen", line="line_2")["devstate"] == "LINEDEVSTATE_OUTOFSERVICE"


def test_unavailable_tapi_functions_say_why():
    c = Harness().connect()
    for method in ("lineAnswer", "lineHold", "lineUnhold", "lineSetupTransfer"):
        r = c.call(method, call=1)
        assert lineerr(r) == "LINEERR_OPERATIONUNAVAIL"
        assert method in r["error"]["message"] and len(r["error"]["message"]) > 30
    assert c.call("lineFrobnicate")["error"]["code"] == codec.METHOD_NOT_FOUND


def test_answer_after_disconnect_is_dropped_quietly():
    h = Harness()
    c = h.connect()
    c.result("lineOpen", line="line_1")
    c.send({"jsonrpc": "2.0", "id": 1, "method": "lineMakeCall", "params": {"line": "line_1", "number": "200"}})
    c.proto.connectionLost(None)
    h.tel.pending.pop().callback(5)
    h.hub.publish(event("LINE_CALLSTATE", "line_1", 5, "LINECALLSTATE_DIALTONE"))
    assert h.hub.subscribers("line_1") == 0
    assert h.factory.connections == set()


# -- resume ------------------------------------------------------------------------


def test_resume_replays_what_was_missed():
    h = Harness(ring_size=100)
    c = h.connect()
    c.result("lineOpen", line="line_1")
    h.hub.publish(event("LINE_NEWCALL", "line_1", 1))
    last = c.read()[-1]["params"]["seq"]
    c.proto.connectionLost(None)
    h.hub.publish(event("LINE_CALLSTATE", "line_1", 1, "LINECALLSTATE_OFFERING"))
    h.hub.publish(event("LINE_CALLSTATE", "other", 2, "LINECALLSTATE_OFFERING"))
    h.hub.publish(event("LINE_LINEDEVSTATE", None, None, "LINEDEVSTATE_OUTOFSERVICE"))
    h.hub.publish(event("LINE_CALLSTATE", "line_1", 1, "LINECALLSTATE_CONNECTED"))
    c2 = h.connect()
    c2.send({"jsonrpc": "2.0", "id": 1, "method": "lineOpen", "params": {"line": "line_1", "seq": last, "epoch": "e1"}})
    msgs = c2.read()
    assert msgs[0]["result"]["replay"] == "ok" and msgs[0]["result"]["replayed"] == 3
    assert msgs[0]["result"]["seq"] == 5
    replay = [(m["method"], m["params"]["seq"], m["params"]["line"]) for m in msgs[1:]]
    assert replay == [("LINE_CALLSTATE", 2, "line_1"), ("LINE_LINEDEVSTATE", 4, "line_1"), ("LINE_CALLSTATE", 5, "line_1")]
    h.hub.publish(event("LINE_CALLSTATE", "line_1", 1, "LINECALLSTATE_IDLE"))
    assert c2.read()[0]["params"]["seq"] == 6


def test_resume_with_a_gap_says_so_and_sends_current_calls():
    h = Harness(ring_size=3)
    c = h.connect()
    h.tel.model.add(1, "line_1", state="LINECALLSTATE_CONNECTED")
    for i in range(5):
        h.hub.publish(event("LINE_CALLINFO", "line_1", 1, "LINECALLINFOSTATE_OTHER"))
    r = c.result("lineOpen", line="line_1", seq=1)
    assert r["replay"] == "gap" and "replayed" not in r
    assert r["calls"][0]["call"] == 1 and r["seq"] == 5
    # Nothing is replayed; the current call is announced the TAPI way instead.
    assert [(m["method"], m["params"]["seq"], m["params"].get("existing")) for m in c.seen] == [
        ("LINE_NEWCALL", 5, True), ("LINE_CALLSTATE", 5, True)]
    # from another server run: gap too, whatever the number
    c2 = h.connect()
    assert c2.result("lineOpen", line="line_1", seq=4, epoch="other-run")["replay"] == "gap"
    assert c2.result("lineOpen", line="line_1", seq=99)["replay"] == "gap"
    # a quiet line is not hurt by other lines' eviction
    assert c2.result("lineOpen", line="quiet", seq=0)["replay"] == "ok"
    assert c2.result("lineOpen", line="line_1", seq=4)["replayed"] == 1


# -- backpressure --------------------------------------------------------------------


def test_a_client_that_stops_reading_is_disconnected_and_others_are_not_slowed():
    h = Harness(send_buffer_bytes=20_000)
    slow, fast = h.connect(), h.connect()
    slow.result("lineOpen", line="line_1")
    fast.result("lineOpen", line="line_1")
    slow.proto.pauseProducing()  # the transport's buffer is full
    seen: list[dict] = []
    globalLogPublisher.addObserver(seen.append)
    try:
        n = 0
        while not slow.closed:
            h.hub.publish(event("LINE_CALLINFO", "line_1", 1, "LINECALLINFOSTATE_OTHER"))
            n += 1
            assert slow.proto.queued <= 20_000
            assert n < 1000
    finally:
        globalLogPublisher.removeObserver(seen.append)
    assert slow.transport.disconnected or slow.transport.disconnecting
    assert len(fast.read()) == n
    assert slow.transport.value() == b""  # nothing went to it while paused
    assert h.hub.subscribers("line_1") == 1
    from twisted.logger import formatEvent

    (warning,) = [formatEvent(e) for e in seen if "does not read" in formatEvent(e)]
    assert "20000" in warning and "127.0.0.1" in warning
    h.hub.publish(event("LINE_CALLINFO", "line_1", 1, "LINECALLINFOSTATE_OTHER"))
    assert len(fast.read()) == 1


def test_paused_output_is_queued_in_order_and_flushed_on_resume():
    h = Harness()
    c = h.connect()
    c.result("lineOpen", line="line_1")
    c.proto.pauseProducing()
    for _ in range(3):
        h.hub.publish(event("LINE_CALLINFO", "line_1", 1, "LINECALLINFOSTATE_OTHER"))
    c.send({"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert c.transport.value() == b"" and c.proto.queued > 0
    c.proto.resumeProducing()
    msgs = c.read()
    assert [m.get("params", {}).get("seq") for m in msgs[:3]] == [1, 2, 3]
    assert msgs[3]["result"] == {"seq": 3}
    assert c.proto.queued == 0


def test_registers_as_streaming_producer():
    c = Harness().connect()
    assert c.transport.producer is c.proto and c.transport.streaming


def test_factory_builds_its_authenticator_from_config_users():
    from types import SimpleNamespace

    from asttapi_server.clients.hub import Hub
    from asttapi_server.config import ServerConfig
    from asttapi_server.clients.protocol import ClientFactory

    from .fakes import FakeTelephony

    config = SimpleNamespace(
        users={"alice": SimpleNamespace(token="t", lines=("line_1",))},
        server=ServerConfig(max_line_bytes=1234, send_buffer_bytes=5678, max_lines_per_session=7,
                            request_rate=9.5, request_burst=11),
    )
    f = ClientFactory.from_config(config, Hub(), FakeTelephony(), clock=object())
    assert f.authenticator.login_required and f.max_line_bytes == 1234 and f.send_buffer_bytes == 5678
    assert (f.max_lines_per_session, f.request_rate, f.request_burst) == (7, 9.5, 11)
    f2 = ClientFactory(hub=Hub(), telephony=FakeTelephony(), users=config.users, clock=object())
    assert f2.authenticator.authenticate("alice", "t").may_open("line_1")
    assert not ClientFactory(Hub(), FakeTelephony(), clock=object()).authenticator.login_required


def test_listening_factory_logs_no_starting_factory_line():
    """An admin's log says "Clients may connect on ..."; Twisted's "Starting factory <... at 0x...>" is noise."""
    from twisted.logger import formatEvent

    from asttapi_server.clients.hub import Hub
    from asttapi_server.clients.protocol import ClientFactory

    from .fakes import FakeTelephony

    seen: list[dict] = []
    globalLogPublisher.addObserver(seen.append)
    try:
        f = ClientFactory(Hub(), FakeTelephony(), clock=object())
        f.doStart()
        f.doStop()
    finally:
        globalLogPublisher.removeObserver(seen.append)
    assert not [formatEvent(e) for e in seen if "factory" in formatEvent(e).lower()]


def test_line_open_announces_existing_calls_as_tapi_does():
    """A client opening a line mid-call gets LINE_NEWCALL + LINE_CALLSTATE for it, marked existing."""
    h = Harness()
    h.tel.model.add(3, "line_1", state="LINECALLSTATE_OFFERING")
    h.tel.model.add(4, "line_2", state="LINECALLSTATE_CONNECTED")
    c = h.connect()
    r = c.result("lineOpen", line="line_1")
    assert [x["call"] for x in r["calls"]] == [3]
    announced = [(m["method"], m["params"]["call"], m["params"].get("state"), m["params"]["existing"],
                  m["params"]["seq"]) for m in c.seen]
    assert announced == [("LINE_NEWCALL", 3, None, True, 0), ("LINE_CALLSTATE", 3, "LINECALLSTATE_OFFERING", True, 0)]
