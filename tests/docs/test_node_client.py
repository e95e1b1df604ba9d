"""The Node.js client in docs/protocol.md, run as written against the server and the demo PBX.

It is what a CRM developer copies first; this proves it connects, logs in,
opens a line and pops a call with its caller at OFFERING (not bob's own
outbound call) and its contact.
Skipped where no ``node`` is installed.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile

from twisted.internet import defer, reactor
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import SkipTest, TestCase

from asttapi_server.config import load_config
from asttapi_server.demo.scenarios import Timing
from asttapi_server.service import make_service

from .transcripts import DOC

NODE = shutil.which("node")


def example(name: str) -> str:
    text = DOC.read_text()
    m = re.search(rf"<!-- example: {name} -->\n```js\n(.*?)```\n<!-- /example -->", text, re.S)
    assert m, f"no example {name!r} in {DOC}"
    return m.group(1)


class Output(ProcessProtocol):
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.err = b""
        self.ended: defer.Deferred = defer.Deferred()
        self._partial = b""

    def outReceived(self, data: bytes) -> None:
        data = self._partial + data
        *whole, self._partial = data.split(b"\n")
        self.lines += [line.decode() for line in whole]

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason) -> None:
        self.ended.callback(None)


class NodeClient(TestCase):
    timeout = 30

    @defer.inlineCallbacks
    def wait_for(self, out: Output, pattern: str, seconds: float = 10.0):
        for _ in range(int(seconds / 0.02)):
            for line in out.lines:
                if re.fullmatch(pattern, line):
                    return line
            yield deferLater(reactor, 0.02, lambda: None)
        self.fail(f"node never printed {pattern!r}; got {out.lines}, stderr {out.err.decode()!r}")

    @defer.inlineCallbacks
    def test_the_documented_node_client_pops_a_call(self):
        if NODE is None:
            raise SkipTest("node is not installed")
        config = load_config(None, {"server.listen": ["tcp:0:interface=127.0.0.1"], "web.listen": [],
                                    "users": {"crm": {"token": "t0ken-for-the-doc-test", "lines": ["line_*"]}}})
        app = make_service(config, reactor, demo_options={"timing": Timing.fast(), "autoplay": False})
        app.startService()
        self.addCleanup(app.stopService)
        port = (yield app.listeners[0].whenListening()).getHost().port
        for _ in range(200):
            if app.bridge.link_up:
                break
            yield deferLater(reactor, 0.02, lambda: None)
        folder = tempfile.mkdtemp(prefix="asttapi-node-")
        self.addCleanup(shutil.rmtree, folder, True)
        script = os.path.join(folder, "screenpop.js")
        with open(script, "w") as f:
            f.write(example("node-client"))
        out = Output()
        process = reactor.spawnProcess(out, NODE, [NODE, script, "127.0.0.1", str(port), "line_1", "crm",
                                                   "t0ken-for-the-doc-test"], env=None)

        def stop():
            if out.ended.called:
                return None
            process.signalProcess("KILL")
            return out.ended

        self.addCleanup(stop)
        yield self.wait_for(out, r"server \S+, PBX up")
        yield self.wait_for(out, r"line_1 open: LINEDEVSTATE_INSERVICE, 0 call\(s\) now")
        # bob dialling out on line_1's phone is no screen pop (his own number would pop)
        app.demo.play("outbound")
        yield self.wait_for(out, r"end \d+")
        self.assertEqual([line for line in out.lines if line.startswith("pop")], [])
        app.demo.play("inbound", caller=("0301234567", "Ext Caller"), ring=50.0)  # 0.5 s: the lookup ends while it rings
        pop = yield self.wait_for(out, r"pop \d+: .*")
        self.assertRegex(pop, r"^pop \d+: 0301234567 Ext Caller$")
        yield self.wait_for(out, r"contact \d+: Ext Caller, Contoso Ltd")
        yield self.wait_for(out, r"end \d+")
