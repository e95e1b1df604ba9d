"""`make run ARGS=--demo-pbxs=2`: two demo PBXs in one server, each ringing lines of its own."""

from __future__ import annotations

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from asttapi_server.config import load_config
from asttapi_server.demo.scenarios import Timing
from asttapi_server.service import make_service

from .test_end_to_end import JsonClient, is_event


class TwoDemoPBXs(TestCase):
    timeout = 30

    @defer.inlineCallbacks
    def start(self, app):
        """Start ``app``, wait until every demo PBX's link is up; the client port."""
        app.startService()
        self.addCleanup(app.stopService)
        port = (yield app.listeners[0].whenListening()).getHost().port
        for _ in range(300):
            if app.switchboard.link_up:
                break
            yield deferLater(reactor, 0.02, lambda: None)
        return port

    @defer.inlineCallbacks
    def test_each_demo_pbx_rings_its_own_lines(self):
        config = load_config(None, {"server.listen": ["tcp:0:interface=127.0.0.1"], "web.listen": [],
                                    "plugins.enabled": [], "demo_pbxs": "2"})
        app = make_service(config, reactor, demo_options={"timing": Timing.fast(), "autoplay": False})
        port = yield self.start(app)
        self.assertEqual(app.switchboard.pbx_states(), {"pbx1": "up", "pbx2": "up"})
        client = JsonClient()
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
        self.addCleanup(client.transport.loseConnection)
        hello = yield client.wait_for(lambda m: m.get("method") == "hello")
        self.assertEqual(hello["params"]["pbxs"], {"pbx1": "up", "pbx2": "up"})
        for line in ("line_1", "line_4"):
            yield client.call("lineOpen", line=line)
        second = app.switchboard.units["pbx2"].demo
        second.play("inbound", ring=0.1)
        newcall = yield client.wait_for(is_event("LINE_NEWCALL"))
        self.assertEqual(newcall["params"]["line"], "line_4")  # the second PBX's line, not the first's
        yield client.wait_for(is_event("LINE_CALLSTATE", line="line_4", state="LINECALLSTATE_IDLE"))
        self.assertEqual([m["params"]["line"] for m in client.events("LINE_NEWCALL")], ["line_4"])

    @defer.inlineCallbacks
    def test_a_reload_adds_and_removes_demo_pbxs_while_a_client_stays(self):
        import os
        import tempfile

        from asttapi_server.service import reload

        folder = tempfile.mkdtemp()
        path = os.path.join(folder, "asttapi.toml")

        def write(pbxs):
            text = ('demo = true\n[server]\nlisten = ["tcp:0:interface=127.0.0.1"]\n'
                    '[plugins]\nenabled = []\n')
            for name in pbxs:
                text += f'[pbx.{name}]\n'
            for name in pbxs:
                line = {"pbx1": "line_1", "pbx2": "line_4", "pbx3": "line_6"}[name]
                person = {"pbx1": "bob", "pbx2": "carol", "pbx3": "erin"}[name]
                text += f'[lines.{line}]\nchannel = "Local/{person}@phones"\ncontext = "trunklocal"\npbx = "{name}"\n'
            with open(path, "w") as f:
                f.write(text)
            return load_config(path)

        app = make_service(write(["pbx1", "pbx2"]), reactor,
                           demo_options={"timing": Timing.fast(), "autoplay": False})
        port = yield self.start(app)
        client = JsonClient()
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
        self.addCleanup(client.transport.loseConnection)
        yield client.wait_for(lambda m: m.get("method") == "hello")
        for line in ("line_1", "line_4", "line_6"):
            yield client.call("lineOpen", line=line)
        # Remove pbx2 and add pbx3, in one reload.
        done = yield reload(app, write(["pbx1", "pbx3"]))
        self.assertTrue(done)
        yield client.wait_for(is_event("LINE_LINEDEVSTATE", line="line_4", devstate="LINEDEVSTATE_OUTOFSERVICE"))
        yield client.wait_for(is_event("LINE_LINEDEVSTATE", line="line_6", devstate="LINEDEVSTATE_INSERVICE"))
        self.assertEqual(set(app.switchboard.units), {"pbx1", "pbx3"})
        self.assertIs(app.getServiceNamed("demo-pbx-pbx3").parent, app)  # the new demo PBX runs
        self.assertRaises(KeyError, app.getServiceNamed, "demo-pbx-pbx2")  # the removed one is gone
        app.switchboard.units["pbx3"].demo.play("inbound", ring=0.1)
        newcall = yield client.wait_for(is_event("LINE_NEWCALL"))
        self.assertEqual(newcall["params"]["line"], "line_6")
        app.switchboard.units["pbx1"].demo.play("inbound", ring=0.1)
        yield client.wait_for(is_event("LINE_NEWCALL", line="line_1"))
        self.assertFalse(client.transport.disconnecting)
