"""A client can tell at connect time whether the PBX is there, and LINEDEVSTATE only reports changes.

The rule (docs/protocol.md, "Link state"): ``hello.pbx`` and the lineOpen
result's ``devstate`` tell the state now, as TAPI's lineGetLineDevStatus
would; LINE_LINEDEVSTATE then reports changes from what the client was told.
So a client that opened a line while the PBX was down hears INSERVICE when it
comes up, and a client that opened it while up never hears a first INSERVICE.
"""

from __future__ import annotations

from twisted.internet.error import ConnectionLost

from tests.clients.harness import Conn

from .system import System, events

IN = ("LINE_LINEDEVSTATE", None, "LINEDEVSTATE_INSERVICE", False)
OUT = ("LINE_LINEDEVSTATE", None, "LINEDEVSTATE_OUTOFSERVICE", False)


def connect(s: System) -> tuple[Conn, dict]:
    s._port += 1
    conn = Conn(s.factory, s._port)
    hello = conn.read()[0]
    assert hello["method"] == "hello"
    return conn, hello["params"]


def test_pbx_down_at_connect_is_said_in_hello_and_lineopen_then_inservice_follows():
    s = System()
    s.ami.startService()  # connecting, not yet logged in
    client, hello = connect(s)
    assert hello["pbx"] == "down"
    opened = client.result("lineOpen", line="line_1")
    assert opened["devstate"] == "LINEDEVSTATE_OUTOFSERVICE"
    s.come_back()
    assert events(client) == [IN]


def test_no_first_inservice_for_a_client_that_connected_while_the_pbx_was_up():
    s = System()
    s.start()
    client, hello = connect(s)
    assert hello["pbx"] == "up"
    assert client.result("lineOpen", line="line_1")["devstate"] == "LINEDEVSTATE_INSERVICE"
    assert events(client) == []
    s.session.close(ConnectionLost("PBX gone"))
    assert events(client) == [OUT]
    late, hello = connect(s)
    assert hello["pbx"] == "down"
    assert late.result("lineOpen", line="line_1")["devstate"] == "LINEDEVSTATE_OUTOFSERVICE"
    s.clock.advance(2.0)
    s.come_back()
    assert events(client) == [IN] and events(late) == [IN]


def test_replayed_events_are_marked_and_live_ones_are_not():
    s = System()
    s.start()
    client, hello = connect(s)
    opened = client.result("lineOpen", line="line_1")
    s.tapi("LINE_NEWCALL line_1", "1795674354.1")
    live = [m for m in client.read() if m.get("method") == "LINE_NEWCALL"]
    assert live and "replayed" not in live[0]["params"]
    client.proto.connectionLost(None)
    s.tapi("LINE_CALLSTATE LINECALLSTATE_OFFERING", "1795674354.1")
    s.tapi("LINE_CALLSTATE LINECALLSTATE_IDLE", "1795674354.1")
    again, _ = connect(s)
    again.send({"jsonrpc": "2.0", "id": 1, "method": "lineOpen",
                "params": {"line": "line_1", "seq": opened["seq"], "epoch": hello["epoch"]}})
    msgs = again.read()
    assert msgs[0]["result"]["replay"] == "ok" and msgs[0]["result"]["replayed"] == 3
    replayed = msgs[1:]
    assert [m["method"] for m in replayed] == ["LINE_NEWCALL", "LINE_CALLSTATE", "LINE_CALLSTATE"]
    assert all(m["params"]["replayed"] is True for m in replayed)
    # Apart from the marker, a replayed event is exactly what was sent live.
    first = dict(replayed[0]["params"])
    del first["replayed"]
    assert first == live[0]["params"]
    s.tapi("LINE_NEWCALL line_1", "1795674354.9")
    assert "replayed" not in again.read()[0]["params"]
