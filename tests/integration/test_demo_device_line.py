"""The demo's device line end to end: demo PBX <-AMI-> the real server <-JSON-RPC-> clients, loopback.

The same make_service as ``twistd -n asttapi`` with no options: line_3 is
alice's PJSIP/203, a device line, whose calls the server follows from the
demo's channel events (no UserEvent), beside the dialplan lines line_1/line_2.
"""

from __future__ import annotations

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.trial.unittest import TestCase


from .test_end_to_end import JsonClient, is_event, start_demo


def states(client, handle=None, line="line_3") -> list[str]:
    """The line's events as a client saw them (the contact lookup's CALLINFO OTHER left out: it comes when the CRM answers)."""
    out = []
    for m in client.events():
        p = m["params"]
        if p.get("line") != line or (handle is not None and p.get("call") != handle):
            continue
        if m["method"] == "LINE_CALLSTATE":
            out.append(p["state"].removeprefix("LINECALLSTATE_") + (f"({p['mode']})" if p.get("mode") else ""))
        elif m["method"] == "LINE_CALLINFO" and p["infostate"] != "LINECALLINFOSTATE_OTHER":
            out.append("info:" + p["infostate"].removeprefix("LINECALLINFOSTATE_"))
        elif m["method"] == "LINE_NEWCALL":
            out.append("NEWCALL")
    return out


class DemoDeviceLine(TestCase):
    timeout = 30

    @defer.inlineCallbacks
    def setUp(self):
        yield start_demo(self, autoplay=False)
        assert self.app.config.lines["line_3"].device == "PJSIP/203"

    @defer.inlineCallbacks
    def connect(self, line="line_3"):
        client = JsonClient()
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.port), client)
        self.addCleanup(client.transport.loseConnection)
        yield client.wait_for(lambda m: m.get("method") == "hello")
        opened = yield client.call("lineOpen", line=line)
        self.assertEqual(opened["result"]["calls"], [])
        return client

    @defer.inlineCallbacks
    def test_an_inbound_call_to_the_device_line(self):
        alice = yield self.connect()
        bob = yield self.connect("line_1")
        self.app.demo.play("device_inbound", caller=("0301234567", "Ext Caller"), hold=1.0)
        idle = yield alice.wait_for(is_event("LINE_CALLSTATE", line="line_3", state="LINECALLSTATE_IDLE"))
        self.assertEqual(states(alice), ["NEWCALL", "OFFERING", "info:CONNECTEDID", "CONNECTED", "ONHOLD",
                                         "CONNECTED", "DISCONNECTED(LINEDISCONNECTMODE_NORMAL)", "IDLE"])
        info = idle["params"]["callinfo"]
        self.assertEqual((info["callerid"], info["calleridname"], info["calledid"], info["connectedid"],
                          info["origin"]), ("0301234567", "Ext Caller", "203", "0301234567",
                                            "LINECALLORIGIN_EXTERNAL"))
        self.assertEqual(bob.events(), [])  # another line's call is not line_1's

    @defer.inlineCallbacks
    def test_a_queue_call_from_a_caller_who_withholds_the_number(self):
        """The demo's FreePBX-style queue (400, member Local/203@from-queue/n), the caller withholding
        the number: the pop comes (after the server read the presentation), with the queue's number,
        the caller shown BLOCKED and the number nowhere in what the client received."""
        alice = yield self.connect()
        self.app.demo.play("device_queue", caller=("0301234567", "Ext Caller"), withheld=True)
        idle = yield alice.wait_for(is_event("LINE_CALLSTATE", line="line_3", state="LINECALLSTATE_IDLE"))
        self.assertEqual(states(alice), ["NEWCALL", "OFFERING", "info:CONNECTEDID", "CONNECTED",
                                         "DISCONNECTED(LINEDISCONNECTMODE_NORMAL)", "IDLE"])
        (newcall,) = alice.events("LINE_NEWCALL")
        for info in (newcall["params"]["callinfo"], idle["params"]["callinfo"]):
            self.assertEqual((info["callerid"], info["calleridname"], info["calleridflags"]),
                             (None, None, ["LINECALLPARTYID_BLOCKED"]))
            self.assertEqual((info["calledid"], info["origin"]), ("400", "LINECALLORIGIN_EXTERNAL"))
        self.assertEqual(idle["params"]["callinfo"]["connectedidflags"], ["LINECALLPARTYID_BLOCKED"])
        self.assertNotIn("0301234567", repr(alice.messages))
        self.assertNotIn("Ext Caller", repr(alice.messages))

    @defer.inlineCallbacks
    def test_the_caller_gives_up_while_the_device_rings(self):
        alice = yield self.connect()
        self.app.demo.play("device_inbound", ending="gives_up")
        yield alice.wait_for(is_event("LINE_CALLSTATE", line="line_3", state="LINECALLSTATE_IDLE"))
        self.assertEqual(states(alice), ["NEWCALL", "OFFERING", "DISCONNECTED(LINEDISCONNECTMODE_CANCELLED)",
                                         "IDLE"])

    @defer.inlineCallbacks
    def test_click_to_dial_on_the_device_line(self):
        dialler = yield self.connect()
        watcher = yield self.connect()
        response = yield dialler.call("lineMakeCall", line="line_3", number="95551234")
        self.assertNotIn("error", response)
        handle = response["result"]["call"]
        idle = yield dialler.wait_for(is_event("LINE_CALLSTATE", call=handle, state="LINECALLSTATE_IDLE"))
        yield watcher.wait_for(is_event("LINE_CALLSTATE", call=handle, state="LINECALLSTATE_IDLE"))
        # the dialling client sees its call's progress on its own handle, and no LINE_NEWCALL for it
        self.assertEqual(states(dialler), ["DIALTONE", "info:CALLEDID", "PROCEEDING", "RINGBACK", "info:CONNECTEDID",
                                           "CONNECTED", "DISCONNECTED(LINEDISCONNECTMODE_NORMAL)", "IDLE"])
        self.assertEqual({m["params"]["call"] for m in dialler.events()}, {handle})
        self.assertEqual([m["params"]["call"] for m in watcher.events("LINE_NEWCALL")], [handle])
        info = idle["params"]["callinfo"]
        self.assertEqual((info["callerid"], info["calledid"], info["connectedid"], info["origin"]),
                         ("203", "95551234", "95551234", "LINECALLORIGIN_OUTBOUND"))

    @defer.inlineCallbacks
    def test_blind_transfer_and_drop_on_the_device_line(self):
        client = yield self.connect()
        self.app.demo.engine.originate_talk = 500.0  # talks until transferred, however loaded the machine
        response = yield client.call("lineMakeCall", line="line_3", number="95551234")
        handle = response["result"]["call"]
        yield client.wait_for(is_event("LINE_CALLSTATE", call=handle, state="LINECALLSTATE_CONNECTED"))
        response = yield client.call("lineBlindTransfer", call=handle, number="201")
        self.assertEqual(response.get("result"), {}, response)
        yield client.wait_for(is_event("LINE_CALLSTATE", call=handle, state="LINECALLSTATE_IDLE"))
        self.assertEqual(states(client, handle)[-2:], ["CONNECTED", "IDLE"])  # transferred: no DISCONNECTED

        self.app.demo.play("device_inbound", ring=500.0)  # rings until dropped
        offering = yield client.wait_for(is_event("LINE_CALLSTATE", line="line_3", state="LINECALLSTATE_OFFERING"))
        ringing = offering["params"]["call"]
        response = yield client.call("lineDrop", call=ringing)
        self.assertNotIn("error", response)
        yield client.wait_for(is_event("LINE_CALLSTATE", call=ringing, state="LINECALLSTATE_IDLE"))
        self.assertEqual(self.app.demo.engine.channels, {})
