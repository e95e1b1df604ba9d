"""A client-side-only server for loopback tests: hub, protocol and a scripted fake bridge.

Run as ``python -m tests.clients.serve ENDPOINT [USERS_JSON]``; prints
``PORT <n>`` once listening. Opening ``line_1`` plays an inbound call on it;
lineMakeCall plays an outbound call on the handle it answers.
"""

from __future__ import annotations

import json
import os
import sys

from twisted.internet import defer, reactor, task

from asttapi_server.clients.auth import Authenticator
from asttapi_server.clients.hub import Hub
from asttapi_server.clients.listen import server_endpoint
from asttapi_server.clients.protocol import ClientFactory

from .fakes import FakeTelephony, event, inbound_call


class ScriptedTelephony(FakeTelephony):
    def __init__(self, hub: Hub) -> None:
        super().__init__()
        self.hub = hub

    def play(self, events, step=0.02):
        for i, ev in enumerate(events):
            reactor.callLater(step * (i + 1), self.hub.publish, ev)

    def make_call(self, line, number, owner):
        self.next_handle += 1
        handle = self.next_handle
        info = {"callerid": line, "calledid": number, "origin": "LINECALLORIGIN_OUTBOUND", "uniqueid": f"u{handle}"}
        self.model.add(handle, line, state="LINECALLSTATE_DIALTONE").callinfo = dict(info)
        self.play(
            [
                event("LINE_NEWCALL", line, handle, callinfo=info, owner=owner),
                event("LINE_CALLSTATE", line, handle, "LINECALLSTATE_DIALTONE", callinfo=info),
                event("LINE_CALLSTATE", line, handle, "LINECALLSTATE_PROCEEDING", callinfo=info),
                event("LINE_CALLSTATE", line, handle, "LINECALLSTATE_CONNECTED", callinfo=info),
                event("LINE_CALLSTATE", line, handle, "LINECALLSTATE_DISCONNECTED",
                      mode="LINEDISCONNECTMODE_NORMAL", callinfo=info),
                event("LINE_CALLSTATE", line, handle, "LINECALLSTATE_IDLE", callinfo=info),
            ]
        )
        return defer.succeed(handle)


def main() -> None:
    endpoint = sys.argv[1]
    users = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    hub = Hub()
    tel = ScriptedTelephony(hub)
    subscribe = hub.subscribe

    def subscribe_and_play(sub, line):
        subscribe(sub, line)
        if line == "line_1":
            tel.play(inbound_call("line_1", 7))

        if line == "flood" and not flood.running:
            big = event("LINE_CALLINFO", "flood", 1, "LINECALLINFOSTATE_OTHER").with_callinfo(pad="x" * 20000)
            flood.f = lambda: hub.publish(big)
            flood.start(0.002)

    flood = task.LoopingCall(lambda: flood.f())
    hub.subscribe = subscribe_and_play
    factory = ClientFactory(hub, tel, Authenticator(users), send_buffer_bytes=int(os.environ.get("SEND_BUFFER", 1 << 20)))

    def listening(port):
        print(f"PORT {getattr(port.getHost(), 'port', 0)}", flush=True)

    d = server_endpoint(reactor, endpoint).listen(factory)  # the server's own safe defaults
    d.addCallbacks(listening, lambda f: (print(f"FAILED {f.getErrorMessage()}", flush=True), reactor.stop()))
    reactor.run()


if __name__ == "__main__":
    main()
