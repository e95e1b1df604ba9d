"""JSON-RPC 2.0 batches (section 6 of the spec), on both transports."""

from __future__ import annotations

import json

import pytest

from asttapi_server.clients import codec
from tests.clients.fakes import event
from tests.clients.harness import USERS, Harness

from .harness import WSHarness


@pytest.fixture(params=[Harness, WSHarness], ids=["tcp", "websocket"])
def harness(request):
    return request.param


def req(rid, method, **params):
    msg = {"jsonrpc": "2.0", "method": method, "params": params}
    if rid is not None:
        msg["id"] = rid
    return msg


def test_a_batch_is_answered_with_one_array_in_request_order(harness):
    c = harness().connect()
    c.send([
        req(1, "ping"),
        req(None, "ping"),  # a notification: no answer
        req("x", "lineOpen", line="line_1"),
        {"jsonrpc": "2.0", "id": 3},  # no method
        42,  # not an object
        req(4, "noSuchMethod"),
    ])
    (answer,) = c.read()
    assert isinstance(answer, list)
    assert [a["id"] for a in answer] == [1, "x", 3, None, 4]
    assert answer[0]["result"] == {"seq": 0}
    assert answer[1]["result"]["calls"] == []
    assert [a["error"]["code"] for a in answer[2:]] == [
        codec.INVALID_REQUEST, codec.INVALID_REQUEST, codec.METHOD_NOT_FOUND]
    assert c.result("lineGetCalls", line="line_1") == {"calls": []}  # the batch's lineOpen took effect


def test_empty_batch_is_one_invalid_request_not_an_array(harness):
    c = harness().connect()
    c.send_raw(b"[]\n")
    assert c.read() == [{"jsonrpc": "2.0", "id": None, "error": {
        "code": codec.INVALID_REQUEST,
        "message": "Invalid request: an empty batch (an array needs at least one request)"}}]


def test_a_batch_of_notifications_gets_no_answer(harness):
    c = harness().connect()
    c.send([req(None, "ping"), req(None, "noSuchMethod")])
    assert c.read() == []
    assert c.result("ping") == {"seq": 0}


def test_a_batch_item_that_is_an_array_is_an_invalid_request_in_its_place(harness):
    c = harness().connect()
    c.send([[req(1, "ping")], req(2, "ping")])
    (answer,) = c.read()
    assert answer[0]["error"]["code"] == codec.INVALID_REQUEST and answer[0]["id"] is None
    assert answer[1] == {"jsonrpc": "2.0", "id": 2, "result": {"seq": 0}}


def test_the_array_waits_for_an_answer_from_the_pbx(harness):
    h = harness()
    c = h.connect()
    c.result("lineOpen", line="line_1")
    c.send([req(1, "lineMakeCall", line="line_1", number="200"), req(2, "ping")])
    assert c.read() == []  # ping is answered, but the array waits for lineMakeCall
    h.tel.pending.pop().callback(55)
    (answer,) = c.read()
    assert answer == [{"jsonrpc": "2.0", "id": 1, "result": {"call": 55}},
                      {"jsonrpc": "2.0", "id": 2, "result": {"seq": 0}}]


def test_events_while_a_batch_waits_are_not_held_back(harness):
    h = harness()
    c = h.connect()
    c.result("lineOpen", line="line_1")
    c.send([req(1, "lineMakeCall", line="line_1", number="200")])
    h.hub.publish(event("LINE_CALLSTATE", "line_1", 9, "LINECALLSTATE_OFFERING"))
    (ev,) = c.read()
    assert ev["method"] == "LINE_CALLSTATE"
    h.tel.pending.pop().callback(56)
    assert c.read() == [[{"jsonrpc": "2.0", "id": 1, "result": {"call": 56}}]]


def test_login_then_lines_in_one_batch(harness):
    c = harness(USERS).connect()
    c.send([req(1, "lineOpen", line="line_1"),
            req(2, "login", username="alice", token=USERS["alice"]["token"]),
            req(3, "lineOpen", line="line_1")])
    (answer,) = c.read()
    assert answer[0]["error"]["code"] == codec.AUTH_ERROR  # before the login, in order
    assert answer[1]["result"]["user"] == "alice"
    assert answer[2]["result"]["calls"] == []


def test_each_request_of_a_batch_counts_against_the_error_limit(harness):
    h = harness(error_limit=5, error_window=10.0)
    c = h.connect()
    c.send([req(i, "noSuchMethod") for i in range(5)])
    (answer,) = c.read()
    assert len(answer) == 5 and not c.closed
    h.clock.advance(11)
    c.send([req(i, "noSuchMethod") for i in range(6)] + [req(99, "ping")])
    msgs = c.read()
    assert msgs[-1]["id"] is None and msgs[-1]["error"]["code"] == codec.CONNECTION_CLOSING
    assert c.closed
    assert not any(isinstance(m, list) for m in msgs)  # the half-answered batch is not sent


def test_a_batch_over_the_size_limit_is_refused_whole(harness):
    c = harness(request_burst=5000).connect()  # the size limit, not the request rate
    c.send([req(None, "ping")] * (codec.MAX_BATCH + 1))
    (answer,) = c.read()
    assert answer["error"]["code"] == codec.INVALID_REQUEST and str(codec.MAX_BATCH) in answer["error"]["message"]
    c.send([req(None, "ping")] * codec.MAX_BATCH)
    assert c.read() == []


def test_a_batch_answer_after_disconnect_is_dropped(harness):
    h = harness()
    c = h.connect()
    c.result("lineOpen", line="line_1")
    c.send([req(1, "lineMakeCall", line="line_1", number="200")])
    c.proto.connectionLost(None)
    h.tel.pending.pop().callback(5)
    assert c.read() == []


def test_batch_encoding_is_one_line_of_the_answers():
    a = codec.encode_result(1, {})
    b = codec.encode_error(2, codec.INVALID_REQUEST, "no")
    line = codec.encode_batch([a, b])
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == [json.loads(a), json.loads(b)]


def test_a_batch_costs_a_request_rate_token_per_request(harness):
    h = harness(request_rate=10, request_burst=5, error_window=10.0)
    c = h.connect()
    c.send([req(i, "ping") for i in range(4)])  # 4 of the 5 tokens
    (answer,) = c.read()
    assert [a["id"] for a in answer] == [0, 1, 2, 3]
    c.send([req(i, "ping") for i in range(4, 7)])  # 3 more: only 1 left, refused whole
    (refused,) = c.read()
    assert refused["id"] is None and refused["error"]["code"] == codec.RATE_LIMITED
    assert not c.closed
    h.clock.advance(1.0)  # the bucket refills
    c.send([req(i, "ping") for i in range(7, 10)])
    (answer,) = c.read()
    assert [a["id"] for a in answer] == [7, 8, 9]
    c.send([req(None, "ping")] * 6)  # notifications only: refused silently, as one would be
    assert c.read() == []
