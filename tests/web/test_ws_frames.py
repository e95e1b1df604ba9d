"""Issue 22, item 3: every WebSocket frame spends from the request budget, a paused socket is not read.

Only whole messages reached the rate limit: empty continuation frames from
one unauthenticated socket moved another client's ping from 0.69 ms to
142 ms, and pings whose pongs were never read grew the server by 120 MB
(pongs were written past the send queue, even while the output was paused).
"""

from __future__ import annotations

import json

from asttapi_server.clients import codec
from tests.clients.test_large_answers import Telephony, ghost_calls

from .harness import WSHarness


def pongs(c) -> list[bytes]:
    got: list[bytes] = []
    c.client.onPong = got.append
    return got


def test_pings_spend_from_the_request_budget_and_wait_when_it_is_empty():
    h = WSHarness(request_rate=10, request_burst=20)
    c = h.connect()
    got = pongs(c)
    for i in range(500):
        c.client.sendPing(b"%d" % i)
    c.pump()
    assert 20 <= len(got) <= 21  # the burst; the rest waits unread in the server's buffer
    assert len(c.server.data) > 0 and c.proto._holds
    h.clock.advance(1.0)
    c.pump()
    assert 29 <= len(got) <= 32  # the rate: ten a second
    other = h.connect()  # nobody else waits for it
    assert other.result("ping") == {"seq": 0}


def test_empty_continuation_frames_spend_tokens_and_a_message_has_at_most_256_frames():
    h = WSHarness(request_rate=10, request_burst=20)
    c = h.connect()
    c.client.beginMessage(isBinary=False)
    for _ in range(500):
        c.client.sendMessageFrame(b"")
    c.pump()
    assert len(c.server.data) > 1000  # most frames not even parsed
    assert len(c.server.message_data or []) <= 22
    assert not c.closed
    h2 = WSHarness(request_rate=1000, request_burst=1000)  # enough tokens: the frame cap applies
    c2 = h2.connect()
    c2.client.beginMessage(isBinary=False)
    for _ in range(300):
        c2.client.sendMessageFrame(b"")
    c2.pump()
    (msg,) = c2.read()
    assert msg["error"] == {"code": codec.CONNECTION_CLOSING,
                            "message": "A message in more than 256 frames; closing the connection"}
    assert c2.client.remoteCloseCode == 1009
    assert h2.factory.cut_offs["oversize"] == 1


def test_a_blank_message_costs_a_token_though_it_holds_no_request():
    h = WSHarness(request_rate=10, request_burst=20)
    c = h.connect()
    for _ in range(200):
        c.client.sendMessage(b"", isBinary=False)
    c.pump()
    assert c.proto._holds and len(c.server.data) > 0


def test_while_the_output_is_paused_no_pong_is_written_and_the_socket_is_not_read():
    h = WSHarness()
    c = h.connect()
    got = pongs(c)
    c.proto.pauseProducing()  # the TCP transport says: the client does not read what we send
    assert c.transport.producerState == "paused"
    for i in range(50):
        c.client.sendPing(b"%d" % i)
    c.pump()
    assert got == [] and len(c.server.data) > 0
    c.proto.resumeProducing()  # it reads again
    c.pump()
    assert len(got) == 50 and c.transport.producerState == "producing"


def test_a_ping_read_while_the_output_is_paused_gets_no_pong():
    h = WSHarness()
    c = h.connect()
    got = pongs(c)
    c.proto.paused = True  # paused within the same read (the frame was already parsed)
    c.client.sendPing(b"x")
    c.pump()
    assert got == []


def test_without_users_an_idle_websocket_is_closed_at_the_login_timeout():
    h = WSHarness()  # no [users]: nobody logs in, but a socket must still send something
    c = h.connect()
    h.clock.advance(9.9)
    assert not c.closed
    h.clock.advance(0.1)
    (msg,) = c.read()
    assert msg["error"]["message"] == "No request within 10 seconds; closing the connection"
    assert c.closed
    busy = h.connect()
    busy.result("ping")
    h.clock.advance(100)
    assert busy.result("ping") == {"seq": 0}


def test_a_large_answer_is_one_fragmented_message_made_as_the_client_reads():
    h = WSHarness()
    h.factory.telephony = Telephony(ghost_calls(300))
    h.factory.request_burst = 1000
    c = h.connect()
    answer = c.call("lineOpen", line="line_1")
    assert len(answer["result"]["calls"]) == 300
    assert [m["method"] for m in c.seen] == ["LINE_NEWCALL", "LINE_CALLSTATE"] * 300
    assert json.loads(json.dumps(answer))["result"]["calls"][299]["callinfo"]["calleridname"] == "N" * 248
