"""The demo PBX over real loopback TCP (trial TestCases; pytest runs and counts them)."""

from __future__ import annotations

import hashlib

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.trial import unittest

from asttapi_server.demo import DemoPBX, Timing, start_demo_pbx

from .helpers import get, parse_blocks

SECRET = "loop-secret"


class Recorder(Protocol):
    """Collects whole messages; fires waiters when a message matches."""

    def __init__(self) -> None:
        self.buf = b""
        self.messages: list = []
        self.waiters: list = []
        self.closed = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.buf += data
        if self.buf.startswith(b"Asterisk Call Manager/") and b"\r\n" in self.buf:
            banner, self.buf = self.buf.split(b"\r\n", 1)
            self._got([("Banner", banner.decode())])
        while b"\r\n\r\n" in self.buf:
            raw, self.buf = self.buf.split(b"\r\n\r\n", 1)
            [msg] = parse_blocks(raw + b"\r\n\r\n")
            self._got(msg)

    def _got(self, msg) -> None:
        self.messages.append(msg)
        for pred, d in list(self.waiters):
            if pred(msg):
                self.waiters.remove((pred, d))
                d.callback(msg)

    def wait_for(self, pred) -> defer.Deferred:
        for msg in self.messages:
            if pred(msg):
                return defer.succeed(msg)
        d = defer.Deferred()
        self.waiters.append((pred, d))
        return d.addTimeout(10, reactor)

    def send(self, *pairs) -> None:
        self.transport.write("".join(f"{k}: {v}\r\n" for k, v in pairs).encode() + b"\r\n")

    def connectionLost(self, reason=None) -> None:
        self.closed.callback(None)


class DemoLoopbackTests(unittest.TestCase):
    @defer.inlineCallbacks
    def setUp(self):
        self.pbx = yield start_demo_pbx(reactor, port=0, username="asttapi", secret=SECRET,
                                        timing=Timing.fast(), autoplay=False)
        self.addCleanup(self.pbx.stopService)

    @defer.inlineCallbacks
    def connect(self):
        port = self.pbx.port.getHost().port
        proto = yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), Recorder())
        self.addCleanup(lambda: proto.closed)
        self.addCleanup(proto.transport.loseConnection)
        yield proto.wait_for(lambda m: m[0][0] == "Banner")
        return proto

    @defer.inlineCallbacks
    def login_md5(self, proto):
        proto.send(("Action", "Challenge"), ("ActionID", "c"), ("AuthType", "MD5"))
        resp = yield proto.wait_for(lambda m: get(m, "ActionID") == "c")
        key = hashlib.md5((get(resp, "Challenge") + SECRET).encode()).hexdigest()
        proto.send(("Action", "Login"), ("ActionID", "l"), ("AuthType", "MD5"),
                   ("Username", "asttapi"), ("Key", key), ("Events", "on"))
        resp = yield proto.wait_for(lambda m: get(m, "ActionID") == "l")
        self.assertEqual(get(resp, "Message"), "Authentication accepted")

    @defer.inlineCallbacks
    def test_banner_login_and_a_whole_inbound_call(self):
        proto = yield self.connect()
        self.assertEqual(proto.messages[0], [("Banner", "Asterisk Call Manager/11.0.0")])
        yield self.login_md5(proto)
        flow = self.pbx.play("inbound")
        yield flow.done
        yield proto.wait_for(lambda m: get(m, "TAPIEVENT") == "LINE_CALLSTATE LINECALLSTATE_IDLE")
        texts = [get(m, "TAPIEVENT") for m in proto.messages if get(m, "TAPIEVENT")]
        self.assertEqual(texts[:2], ["LINE_NEWCALL line_1", "LINE_NEWCALL line_2"])
        self.assertEqual(len(texts), 9)

    @defer.inlineCallbacks
    def test_originate_from_a_client(self):
        proto = yield self.connect()
        yield self.login_md5(proto)
        proto.send(("Action", "Originate"), ("ActionID", "o1"), ("Channel", "Local/bob@phones"),
                   ("Context", "trunklocal"), ("Exten", "95551234"), ("Priority", "1"),
                   ("Async", "true"), ("ChannelId", "loop-1"))
        queued = yield proto.wait_for(lambda m: get(m, "ActionID") == "o1")
        self.assertEqual(get(queued, "Message"), "Originate successfully queued")
        resp = yield proto.wait_for(lambda m: get(m, "Event") == "OriginateResponse")
        self.assertEqual((get(resp, "Response"), get(resp, "Uniqueid")), ("Success", "loop-1"))
        idle = yield proto.wait_for(lambda m: get(m, "TAPIEVENT") == "LINE_CALLSTATE LINECALLSTATE_IDLE")
        self.assertEqual(get(idle, "Uniqueid"), "loop-1")

    @defer.inlineCallbacks
    def test_wrong_secret_closes_the_connection(self):
        proto = yield self.connect()
        proto.send(("Action", "Login"), ("ActionID", "l"), ("Username", "asttapi"),
                   ("Secret", "wrong"))
        resp = yield proto.wait_for(lambda m: get(m, "ActionID") == "l")
        self.assertEqual(get(resp, "Message"), "Authentication failed")
        yield proto.closed


class DemoServiceTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_autoplay_service_rings_line_1_soon(self):
        pbx = DemoPBX(reactor, secret="s", timing=Timing.fast())
        self.assertIs(pbx.listen(), pbx.listen())  # bind early, idempotent
        pbx.startService()
        self.addCleanup(pbx.stopService)
        self.assertEqual(pbx.listening_port(), pbx.port.getHost().port)
        proto = yield connectProtocol(
            TCP4ClientEndpoint(reactor, "127.0.0.1", pbx.listening_port()), Recorder())
        self.addCleanup(lambda: proto.closed)
        self.addCleanup(proto.transport.loseConnection)
        proto.send(("Action", "Login"), ("Username", "asttapi"), ("Secret", "s"),
                   ("Events", "user"))
        yield proto.wait_for(lambda m: get(m, "TAPIEVENT") == "LINE_NEWCALL line_1")
        offering = yield proto.wait_for(
            lambda m: get(m, "TAPIEVENT") == "LINE_CALLSTATE LINECALLSTATE_OFFERING")
        self.assertEqual(get(offering, "Context"), "inbound")
