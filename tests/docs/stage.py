"""The whole server on a Clock, for transcripts: a PBX on one side, a client's JSON lines on the other.

The PBX is either the embedded demo (connected to the real AMI client through
twisted.test.iosim) or a real capture from tests/data/ami whose events are
sent as Asterisk sent them. Between them runs everything the server runs:
AMILink, the TAPI UserEvent mapping, Bridge, CallModel, the plugin host with
the bundled crm_sql on its demo CRM, Hub and ClientFactory. Blocking contact
lookups are queued and run when the script says (:meth:`Stage.lookups`), so a
transcript shows them where a real CRM's answer would arrive.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.test.iosim import FakeTransport, connect

from asttapi_server.ami.link import AMILink
from asttapi_server.ami.parser import AMIParser
from asttapi_server.service import build_bridge
from asttapi_server.clients.hub import Hub
from asttapi_server.clients.protocol import ClientFactory
from asttapi_server.config import load_config
from asttapi_server.core.model import CallModel
from asttapi_server.demo.engine import DemoEngine
from asttapi_server.demo.scenarios import Timing
from asttapi_server.demo.server import DemoAMIFactory
from asttapi_server.plugin_host import build_plugin_manager

DATA = Path(__file__).resolve().parent.parent / "data"
EPOCH = "5f0c1e9a2b7d4c11"
TOKEN = "a long random string"
USERS = {"crm": {"token": TOKEN, "lines": ["line_*", "sip/bob"]}}


class Client:
    """One client connection; records the transcript as ``>`` lines sent and lines received."""

    def __init__(self, stage: "Stage", port: int) -> None:
        from twisted.internet.address import IPv4Address
        from twisted.internet.testing import StringTransport

        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", port))
        self.proto = stage.factory.buildProtocol(self.transport.getPeer())
        self.proto.makeConnection(self.transport)
        self.transcript: list[str] = []
        self.messages: list[dict] = []
        self.mark = 0  # for scripts that take the messages in portions
        self.read()

    def read(self) -> list[dict]:
        data = self.transport.value()
        self.transport.clear()
        got = []
        for line in data.split(b"\n"):
            if line:
                self.transcript.append(line.decode())
                got.append(json.loads(line))
        self.messages += got
        return got

    def send(self, line: str) -> list[dict]:
        """Type one line (as into nc); returns what the server answered to it at once."""
        self.read()
        self.transcript.append("> " + line)
        self.proto.dataReceived(line.encode() + b"\n")
        return self.read()

    def request(self, rid: int, method: str, **params: Any) -> dict | None:
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params:
            msg["params"] = params
        got = self.send(json.dumps(msg, separators=(",", ":")))
        return next((m for m in got if m.get("id") == rid), None)  # None: answered later


class Stage:
    def __init__(self, *, users: dict | None = None, contacts: bool = True) -> None:
        config = load_config(None, {})  # demo mode: lines line_1 (bob), line_2 (bobbett)
        enabled = ("crm_sql",) if contacts else ()
        self.config = dataclasses.replace(config, plugins=dataclasses.replace(config.plugins, enabled=enabled))
        self.clock = MemoryReactorClock()
        self.clock.advance(1_795_674_350)
        self._jobs: list[tuple[Any, Deferred]] = []
        from twisted.internet.endpoints import TCP4ClientEndpoint

        self.ami = AMILink(TCP4ClientEndpoint(self.clock, "pbx", 5038), "asttapi", "asttapi-secret",
                             clock=self.clock, keepalive=0)
        self.model = CallModel(hangup_grace=5.0, max_age=14400.0, linger=30.0, boot_id="c0ffee00")
        self.plugins = build_plugin_manager(self.config.plugins, config=self.config, clock=self.clock,
                                            run_in_thread=self._queue_job)
        self.hub = Hub(ring_size=1000, epoch=EPOCH)
        from asttapi_server.pbx import PBXUnit, Switchboard

        # As make_service builds it: one PBX unit behind the switchboard the sessions talk to.
        self.board = Switchboard(self.config, hub=self.hub, clock=self.clock)
        self.bridge = build_bridge(self.config, self.ami, self.model, self.plugins, self.hub, self.clock,
                                   owners=self.board.owners, observe=False)
        self.board.add(PBXUnit("default", self.config.ami, link=self.ami, model=self.model, bridge=self.bridge))
        self.factory = ClientFactory(self.hub, self.board, users=USERS if users is None else users,
                                     clock=self.clock)
        self._port = 50000
        self._pump = None
        self._capture_proto = None

    # -- contact lookups ---------------------------------------------------------

    def _queue_job(self, job) -> Deferred:
        d: Deferred = Deferred()
        self._jobs.append((job, d))
        return d

    def lookups(self) -> None:
        """The CRM answers every lookup asked so far."""
        jobs, self._jobs = self._jobs, []
        for job, d in jobs:
            d.callback(job())

    # -- clients -------------------------------------------------------------------

    def connect(self) -> Client:
        self._port += 1
        return Client(self, self._port)

    # -- the demo PBX ----------------------------------------------------------------

    def start_demo(self) -> DemoEngine:
        self.engine = DemoEngine(self.clock, timing=Timing())
        self.ami.startService()
        factory = self.clock.tcpClients[-1][2]
        client_proto = factory.buildProtocol(None)
        server_proto = DemoAMIFactory(self.engine, "asttapi", "asttapi-secret").buildProtocol(None)
        self._pump = connect(server_proto, FakeTransport(server_proto, isServer=True),
                             client_proto, FakeTransport(client_proto, isServer=False), greet=False)
        self.run(0)
        assert self.bridge.link_up
        return self.engine

    def run(self, seconds: float, step: float = 0.05) -> None:
        """Let ``seconds`` pass on the PBX, delivering bytes both ways as they are written."""
        waited = 0.0
        while True:
            if self._pump is not None:
                for _ in range(50):
                    if not self._pump.pump():
                        break
            if waited >= seconds:
                break
            self.clock.advance(step)
            waited += step

    def play_until_idle(self, limit: float = 60.0) -> None:
        t = 0.0
        while self.engine.flows and t < limit:
            self.run(0.25)
            t += 0.25
        self.run(0.25)

    # -- a real capture --------------------------------------------------------------

    def start_capture(self) -> None:
        """Log in to a scripted Asterisk 22 (capture 03a's answers) with no channels up."""
        if not self.ami.running:
            self.ami.startService()
        factory = self.clock.tcpClients[-1][2]
        from twisted.internet.testing import StringTransport

        proto = factory.buildProtocol(None)
        transport = StringTransport()
        proto.makeConnection(transport)
        self._capture_proto, self._capture_transport = proto, transport
        proto.dataReceived(b"Asterisk Call Manager/11.0.0\r\n")
        for answer in (b"Challenge: 145467744\r\n", b"Message: Authentication accepted\r\n"):
            (action,) = AMIParser().feed(transport.value())
            transport.clear()
            proto.dataReceived(b"Response: Success\r\nActionID: %s\r\n%s\r\n" % (action.action_id.encode(), answer))
        (action,) = AMIParser().feed(transport.value())
        transport.clear()
        assert action.name == "CoreShowChannels"
        aid = action.action_id.encode()
        proto.dataReceived(b"Response: Success\r\nActionID: %s\r\nEventList: start\r\nMessage: Channels will "
                           b"follow\r\n\r\nEvent: CoreShowChannelsComplete\r\nActionID: %s\r\nEventList: Complete"
                           b"\r\nListItems: 0\r\n\r\n" % (aid, aid))
        assert self.bridge.link_up

    def capture_events(self, name: str) -> list[bytes]:
        """The event blocks of a capture, as Asterisk sent them."""
        raw = (DATA / "ami" / name).read_bytes()
        return [block + b"\r\n\r\n" for block in raw.split(b"\r\n\r\n") if block.startswith(b"Event: ")]

    def send_events(self, blocks: list[bytes], step: float = 0.125) -> None:
        for block in blocks:
            self._capture_proto.dataReceived(block)
            self._answer_getvars()
            self.clock.advance(step)

    def _answer_getvars(self) -> None:
        """Asterisk answers the server's presentation reads (Getvar CALLERID(pres)) at once: the
        capture's caller presents their number."""
        transport = self._capture_transport
        while b"Action: Getvar" in transport.value():
            actions = AMIParser().feed(transport.value())
            transport.clear()
            for action in actions:
                if action.name == "Getvar":
                    self._capture_proto.dataReceived(
                        b"Response: Success\r\nActionID: %s\r\nVariable: %s\r\nValue: allowed_not_screened"
                        b"\r\n\r\n" % (action.action_id.encode(), action.get("Variable").encode()))

    def drop_link(self) -> None:
        from twisted.internet.error import ConnectionLost
        from twisted.python.failure import Failure

        self._capture_proto.connectionLost(Failure(ConnectionLost("PBX gone")))
