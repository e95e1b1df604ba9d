"""Issue 22, item 5: a large answer streams under backpressure and counts against the budget.

``lineOpen`` on a line with 1,500 live calls (248-character names) reset a
fast reader after 18 bytes: the whole answer and its 3,000 announcements were
queued in one reactor turn and passed ``send_buffer_bytes``. A line flooded
with ghost calls then could not be opened by anyone.
"""

from __future__ import annotations

import json

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from asttapi_server.clients import codec
from asttapi_server.clients.auth import Authenticator
from asttapi_server.clients.hub import Hub
from asttapi_server.clients.protocol import ClientFactory
from asttapi_server.core import grammar
from asttapi_server.core.events import TapiEvent
from asttapi_server.core.model import CallModel


class Telephony:
    link_up = True

    def __init__(self, model: CallModel) -> None:
        self.model = model


def ghost_calls(n: int, name: int = 248) -> CallModel:
    model = CallModel(max_calls=20_000)
    for i in range(n):
        uid = f"77{i}.{i}"
        for text in (f"[~{uid}] LINE_NEWCALL line_1", f"[~{uid}] SET CALLERIDNAME {'N' * name}",
                     f"[~{uid}] SET CONNECTEDIDNAME {'C' * name}", f"[~{uid}] SET CALLEDIDNAME {'D' * name}",
                     f"[~{uid}] LINE_CALLSTATE LINECALLSTATE_OFFERING"):
            model.apply(grammar.TapiSignal(grammar.parse_tapievent(text), uid, f"PJSIP/g-{i:08d}"), 0.0)
    return model


class KernelTransport(StringTransport):
    """A TCP transport as the producer sees it: it pauses the producer once 64 KiB wait to be
    sent, and ``drain()`` (the client reading) empties it and resumes the producer."""

    LIMIT = 65536

    def write(self, data: bytes) -> None:
        super().write(data)
        if self.producer is not None and self.streaming and len(self.io.getvalue()) > self.LIMIT \
                and self.producerState != "paused":
            self.producerState = "paused"
            self.producer.pauseProducing()

    def drain(self) -> bytes:
        data = self.value()
        self.clear()
        if self.producer is not None and self.producerState == "paused":
            self.producerState = "producing"
            self.producer.resumeProducing()
        return data


def connect(factory: ClientFactory) -> tuple:
    addr = IPv4Address("TCP", "127.0.0.1", 40001)
    transport = KernelTransport(peerAddress=addr)
    proto = factory.buildProtocol(addr)
    proto.makeConnection(transport)
    transport.drain()  # the hello
    return proto, transport


def read_all(transport: KernelTransport) -> tuple[list[dict], int]:
    """Everything the server writes while the client reads as fast as it can: (messages, reads)."""
    data, reads = b"", 0
    while True:
        chunk = transport.drain()
        if not chunk:
            break
        reads += 1
        data += chunk
    return [json.loads(line) for line in data.split(b"\n") if line], reads


def request(rid: int, method: str, **params) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params}).encode() + b"\n"


@pytest.fixture(scope="module")
def model():
    return ghost_calls(1500)


def test_line_open_on_1500_ghost_calls_reaches_a_fast_reader_whole(model):
    factory = ClientFactory(Hub(), Telephony(model), Authenticator({}), clock=Clock(),
                            request_burst=5000)  # the budget is the next test's subject
    proto, transport = connect(factory)
    proto.dataReceived(request(1, "lineOpen", line="line_1"))
    assert proto.queued <= factory.send_buffer_bytes
    msgs, reads = read_all(transport)
    assert not transport.disconnecting and not proto.closing
    (answer,) = [m for m in msgs if m.get("id") == 1]
    assert len(answer["result"]["calls"]) == 1500
    assert answer["result"]["calls"][0]["callinfo"]["calleridname"] == "N" * 248
    announced = [m for m in msgs if m.get("method") in ("LINE_NEWCALL", "LINE_CALLSTATE")]
    assert len(announced) == 3000 and msgs[0] is answer
    assert reads > 10  # written as the client read it, not in one turn
    assert "slow_reader" not in factory.cut_offs


def test_events_published_while_the_answer_streams_follow_it_in_order(model):
    hub = Hub()
    factory = ClientFactory(hub, Telephony(model), Authenticator({}), clock=Clock(), request_burst=5000)
    proto, transport = connect(factory)
    proto.dataReceived(request(1, "lineOpen", line="line_1"))
    data = transport.drain()  # the client has read a little; most of the answer is still to be made
    hub.publish(TapiEvent("LINE_CALLSTATE", "line_1", 1, "LINECALLSTATE_CONNECTED"))
    while chunk := transport.drain():
        data += chunk
    lines = [json.loads(line) for line in data.split(b"\n") if line]
    assert lines[0]["id"] == 1 and len(lines[0]["result"]["calls"]) == 1500
    assert [m["method"] for m in lines[1:-1]] == ["LINE_NEWCALL", "LINE_CALLSTATE"] * 1500
    assert lines[-1]["method"] == "LINE_CALLSTATE" and lines[-1]["params"]["seq"] == 1


def test_a_slow_reader_holds_calls_not_their_encoding(model):
    factory = ClientFactory(Hub(), Telephony(model), Authenticator({}), clock=Clock(), request_burst=5000)
    proto, transport = connect(factory)
    proto.dataReceived(request(1, "lineOpen", line="line_1"))
    assert len(transport.value()) < KernelTransport.LIMIT + codec.STREAM_CHUNK * 2
    assert proto.queued == 0  # nothing encoded waits in the queue: the rest is made when read


def test_a_large_answer_costs_the_request_budget_a_token_per_call(model):
    factory = ClientFactory(Hub(), Telephony(model), Authenticator({}), clock=Clock(),
                            request_rate=50, request_burst=200)
    proto, transport = connect(factory)
    proto.dataReceived(request(1, "lineOpen", line="line_1"))
    read_all(transport)
    proto.dataReceived(request(2, "ping"))
    msgs, _ = read_all(transport)
    assert msgs[-1]["error"]["code"] == codec.RATE_LIMITED  # in debt for the 1,500 calls listed
    factory.clock.advance(200 / 50 + 0.1)  # the debt (at most a burst) is paid off
    proto.dataReceived(request(3, "ping"))
    msgs, _ = read_all(transport)
    assert msgs[-1]["id"] == 3 and "result" in msgs[-1]


@pytest.mark.parametrize("n", [0, 1, 2, 7, 300])
@pytest.mark.parametrize("chunk", [1, 64, 16384])
def test_a_streamed_result_is_exactly_the_encoded_result(n, chunk):
    items = [{"call": i, "name": "ü\u2028\ud800" * (i % 3), "x": [i, None, 1.5]} for i in range(n)]
    rest = {"seq": 7, "epoch": "e", "replay": "gap"}
    chunks = list(codec.encode_result_stream(12, "calls", iter(items), rest, chunk=chunk))
    assert b"".join(chunks) == codec.encode_result(12, {"calls": items, **rest})
    assert all(b"\n" not in c for c in chunks[:-1])


def test_in_a_batch_a_large_answer_streams_too(model):
    factory = ClientFactory(Hub(), Telephony(model), Authenticator({}), clock=Clock(), request_burst=10_000)
    proto, transport = connect(factory)
    batch = [{"jsonrpc": "2.0", "id": i, "method": "lineGetCalls", "params": {"line": "line_1"}} for i in range(3)]
    proto.dataReceived(b'[{"jsonrpc":"2.0","id":9,"method":"lineOpen","params":{"line":"line_1"}},'
                       + json.dumps(batch).encode()[1:] + b"\n")
    assert proto.queued <= factory.send_buffer_bytes and len(transport.value()) < 200_000
    msgs, reads = read_all(transport)
    (array,) = [m for m in msgs if isinstance(m, list)]
    assert [a["id"] for a in array] == [9, 0, 1, 2]
    assert all(len(a["result"]["calls"]) == 1500 for a in array)
    assert reads > 20 and not transport.disconnecting


def test_a_batch_array_of_streams_is_exactly_encode_batch():
    parts = [codec.encode_result(1, {"a": 1}),
             codec.encode_result_stream(2, "calls", iter([{"x": i} for i in range(50)]), {"seq": 1}, chunk=10),
             codec.encode_error(3, -32602, "bad")]
    expected = codec.encode_batch([parts[0], codec.encode_result(2, {"calls": [{"x": i} for i in range(50)],
                                                                     "seq": 1}), parts[2]])
    assert b"".join(codec.encode_batch_stream(parts)) == expected
