"""The whole server on a real reactor: demo PBX <-AMI-> server <-JSON-RPC-> clients, all loopback.

This is the newcomer's first run turned into a test: the same make_service
that `twistd -n asttapi` uses, with the demo playing calls fast.
"""

from __future__ import annotations

import json

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.task import deferLater
from twisted.protocols.basic import LineOnlyReceiver
from twisted.trial.unittest import TestCase

from asttapi_server.config import load_config
from asttapi_server.demo.scenarios import Timing
from asttapi_server.service import make_service
from tests.watching import Watching


class JsonClient(Watching, LineOnlyReceiver):
    delimiter = b"\n"
    MAX_LENGTH = 1 << 20

    def __init__(self) -> None:
        self.messages: list[dict] = []
        self._next = 0
        self._pending: dict[int, defer.Deferred] = {}
        self._watchers: list[tuple] = []

    def lineReceived(self, line: bytes) -> None:
        msg = json.loads(line)
        if "id" in msg and msg["id"] in self._pending:
            self._pending.pop(msg["id"]).callback(msg)
        self.received(msg)

    def call(self, method: str, **params) -> defer.Deferred:
        self._next += 1
        d: defer.Deferred = defer.Deferred()
        self._pending[self._next] = d
        self.sendLine(json.dumps({"jsonrpc": "2.0", "id": self._next, "method": method, "params": params}).encode())
        return d

    def events(self, method: str | None = None) -> list[dict]:
        return [m for m in self.messages if "method" in m and m["method"] != "hello"
                and (method is None or m["method"] == method)]


def is_event(method: str, **params):
    def predicate(msg: dict) -> bool:
        if msg.get("method") != method:
            return False
        p = msg.get("params", {})
        return all(p.get(k) == v for k, v in params.items())

    return predicate


@defer.inlineCallbacks
def start_demo(case: TestCase, *, autoplay: bool):
    """The whole server on the demo PBX over loopback, as ``case.app`` and ``case.port``,
    once its AMI link is logged in and resynchronised."""
    # A generous lookup timeout: the sample CRM answers in microseconds,
    # but a loaded CI machine can hold its thread up for seconds.
    config = load_config(None, {"server.listen": ["tcp:0:interface=127.0.0.1"], "web.listen": [],
                                "plugins.lookup_timeout": 20.0})
    case.app = make_service(config, reactor, demo_options={"timing": Timing.fast(), "autoplay": autoplay})
    case.app.startService()
    case.addCleanup(case.app.stopService)
    port = yield case.app.listeners[0].whenListening()
    case.port = port.getHost().port
    for _ in range(200):
        if case.app.bridge.link_up:
            break
        yield deferLater(reactor, 0.02, lambda: None)
    case.assertTrue(case.app.bridge.link_up, "AMI link to the demo PBX never came up")


class EndToEnd(TestCase):
    timeout = 30

    def start(self, *, autoplay: bool):
        return start_demo(self, autoplay=autoplay)

    @defer.inlineCallbacks
    def connect(self):
        client = JsonClient()
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.port), client)
        self.addCleanup(client.transport.loseConnection)
        yield client.wait_for(lambda m: m.get("method") == "hello")
        return client

    @defer.inlineCallbacks
    def test_inbound_call_pops_with_caller_and_contact(self):
        yield self.start(autoplay=False)
        client = yield self.connect()
        response = yield client.call("lineOpen", line="line_1")
        self.assertEqual(response["result"]["calls"], [])
        # A long talk: the contact lookup runs in a thread, which a loaded
        # machine may hold up for seconds, and a lookup that ends after the
        # call is announced to nobody. The test ends the call itself.
        self.app.demo.play("inbound", caller=("0301234567", "Ext Caller"), ring=0.2, talk=600.0)
        newcall = yield client.wait_for(is_event("LINE_NEWCALL", line="line_1"))
        offering = yield client.wait_for(is_event("LINE_CALLSTATE", state="LINECALLSTATE_OFFERING"))
        self.assertEqual(offering["params"]["call"], newcall["params"]["call"])
        info = yield client.wait_for(is_event("LINE_CALLINFO", infostate="LINECALLINFOSTATE_CALLERID"))
        self.assertEqual(info["params"]["callinfo"]["callerid"], "0301234567")
        yield client.wait_for(is_event("LINE_CALLSTATE", state="LINECALLSTATE_CONNECTED"))
        # The sample CRM knows this caller: the contact arrives as LINE_CALLINFO.
        contact = yield client.wait_for(lambda m: m.get("method") == "LINE_CALLINFO"
                                        and "contact" in m["params"]["callinfo"], timeout=25.0)
        self.assertEqual(contact["params"]["callinfo"]["contact"]["source"], "crm")
        dropped = yield client.call("lineDrop", call=newcall["params"]["call"])
        self.assertIn("result", dropped)
        yield client.wait_for(is_event("LINE_CALLSTATE", state="LINECALLSTATE_IDLE"))
        seqs = [m["params"]["seq"] for m in client.events()]
        self.assertEqual(seqs, sorted(seqs))
        self.assertEqual(len(set(seqs)), len(seqs))

    @defer.inlineCallbacks
    def test_ring_group_second_line_gets_disconnected_not_connected(self):
        yield self.start(autoplay=False)
        bob = yield self.connect()
        bobbett = yield self.connect()
        yield bob.call("lineOpen", line="line_1")
        yield bobbett.call("lineOpen", line="line_2")
        self.app.demo.play("inbound", ring=0.1)
        yield bob.wait_for(is_event("LINE_CALLSTATE", state="LINECALLSTATE_IDLE"))
        yield bobbett.wait_for(is_event("LINE_CALLSTATE", state="LINECALLSTATE_IDLE"))
        states = [m["params"]["state"] for m in bobbett.events("LINE_CALLSTATE")]
        self.assertIn("LINECALLSTATE_OFFERING", states)
        self.assertNotIn("LINECALLSTATE_CONNECTED", states)
        self.assertIn("LINECALLSTATE_DISCONNECTED", states)
        self.assertNotIn("line_1", {m["params"]["line"] for m in bobbett.events()})

    @defer.inlineCallbacks
    def test_make_call_owner_sees_no_newcall_other_client_does(self):
        yield self.start(autoplay=False)
        dialler = yield self.connect()
        watcher = yield self.connect()
        yield dialler.call("lineOpen", line="line_1")
        yield watcher.call("lineOpen", line="line_1")
        response = yield dialler.call("lineMakeCall", line="line_1", number="95551234")
        self.assertNotIn("error", response)
        handle = response["result"]["call"]
        yield dialler.wait_for(is_event("LINE_CALLSTATE", call=handle, state="LINECALLSTATE_IDLE"))
        yield watcher.wait_for(is_event("LINE_CALLSTATE", call=handle, state="LINECALLSTATE_IDLE"))
        self.assertEqual(dialler.events("LINE_NEWCALL"), [])
        self.assertEqual([m["params"]["call"] for m in watcher.events("LINE_NEWCALL")], [handle])
        states = [m["params"]["state"] for m in dialler.events("LINE_CALLSTATE")]
        for state in ("LINECALLSTATE_DIALTONE", "LINECALLSTATE_PROCEEDING", "LINECALLSTATE_IDLE"):
            self.assertIn(state, states)
        self.assertEqual({m["params"]["call"] for m in dialler.events()}, {handle})

    @defer.inlineCallbacks
    def test_drop_ends_a_ringing_call(self):
        yield self.start(autoplay=False)
        client = yield self.connect()
        yield client.call("lineOpen", line="line_1")
        self.app.demo.play("inbound", ring=50)
        offering = yield client.wait_for(is_event("LINE_CALLSTATE", state="LINECALLSTATE_OFFERING"))
        handle = offering["params"]["call"]
        response = yield client.call("lineDrop", call=handle)
        self.assertNotIn("error", response)
        yield client.wait_for(is_event("LINE_CALLSTATE", call=handle, state="LINECALLSTATE_IDLE"))

    @defer.inlineCallbacks
    def test_autoplay_demo_pops_a_call_unprompted(self):
        yield self.start(autoplay=True)
        client = yield self.connect()
        yield client.call("lineOpen", line="line_1")
        yield client.wait_for(is_event("LINE_NEWCALL", line="line_1"))
        info = yield client.wait_for(is_event("LINE_CALLINFO", infostate="LINECALLINFOSTATE_CALLERID"))
        self.assertTrue(info["params"]["callinfo"]["callerid"])

    @defer.inlineCallbacks
    def test_blind_transfer_of_an_own_call_ends_it_for_the_user(self):
        yield self.start(autoplay=False)
        client = yield self.connect()
        yield client.call("lineOpen", line="line_1")
        self.app.demo.engine.originate_talk = 500.0  # talks until transferred, however loaded the machine
        response = yield client.call("lineMakeCall", line="line_1", number="95551234")
        handle = response["result"]["call"]
        yield client.wait_for(is_event("LINE_CALLSTATE", call=handle, state="LINECALLSTATE_CONNECTED"))
        response = yield client.call("lineBlindTransfer", call=handle, number="201")
        self.assertEqual(response.get("result"), {}, response)
        yield client.wait_for(is_event("LINE_CALLSTATE", call=handle, state="LINECALLSTATE_IDLE"))
