"""The client session on the real call model (tests/clients use a fake model)."""

from __future__ import annotations

import json

from twisted.internet.testing import StringTransport

from asttapi_server.clients.hub import Hub
from asttapi_server.clients.protocol import ClientFactory

from .fakes import make_bridge


def test_late_linegetcallinfo_after_idle_reads_the_lingering_record():
    bridge, _hub, clock, ami = make_bridge(linger=30.0)
    hub = Hub()
    bridge.hub = hub
    factory = ClientFactory(hub, bridge, users={}, clock=clock)
    proto = factory.buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)

    def call(method: str, **params) -> dict:
        transport.clear()
        proto.dataReceived(json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode() + b"\n")
        return [json.loads(x) for x in transport.value().splitlines() if b'"id":1' in x][0]

    call("lineOpen", line="line_1")
    for text in ("LINE_NEWCALL line_1", "LINE_CALLSTATE LINECALLSTATE_OFFERING",
                 "SET CALLERID 0301234567", "LINE_CALLSTATE LINECALLSTATE_IDLE"):
        ami.event(Event="UserEvent", Uniqueid="9.1", UserEvent="TAPI", TAPIEVENT=text)
    handle = bridge.model.by_uniqueid("9.1").handle

    info = call("lineGetCallInfo", call=handle)["result"]
    assert info["state"] == "LINECALLSTATE_IDLE"
    assert info["callinfo"]["callerid"] == "0301234567"

    clock.advance(31)  # linger over: the record is freed
    error = call("lineGetCallInfo", call=handle)["error"]
    assert error["data"]["lineerr"] == "LINEERR_INVALCALLHANDLE"
    assert bridge.model.tracked == 0
