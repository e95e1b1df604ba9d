"""The web listener on a real reactor: HTTP headers and files, /ws through twisted.web, the whole server.

The page's own files belong to the page (tests/browser); the file-serving
rules here run on a temporary static directory.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, readBody
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from asttapi_server.clients.auth import Authenticator
from asttapi_server.clients.codec import Request
from asttapi_server.clients.hub import Hub
from asttapi_server.clients.protocol import ClientFactory
from asttapi_server.config import load_config
from asttapi_server.demo.scenarios import Timing
from asttapi_server.service import make_service
from asttapi_server.web.resource import make_site
from asttapi_server.web.ws import WebSocketEndpoint, WebSocketFactory
from tests.clients.fakes import FakeTelephony, event
from tests.watching import Watching

ROOT = Path(__file__).resolve().parents[2]


class WSClient(Watching, WebSocketClientProtocol):
    """Collects JSON messages; ``call`` and ``wait_for`` as the TCP end-to-end client has them."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list = []
        self.opened: defer.Deferred = defer.Deferred()
        self.closed: defer.Deferred = defer.Deferred()
        self._watchers: list = []
        self._next = 0

    def onOpen(self) -> None:
        self.opened.callback(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.received(json.loads(payload))

    def onClose(self, wasClean, code, reason) -> None:
        if not self.opened.called:
            self.opened.errback(Exception(reason))
        self.closed.callback((code, reason))

    def call(self, method: str, **params) -> defer.Deferred:
        self._next += 1
        rid = self._next
        d = self.wait_for(lambda m: isinstance(m, dict) and m.get("id") == rid and "method" not in m)
        self.sendMessage(json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params}).encode())
        return d


@defer.inlineCallbacks
def ws_connect(port: int, origin: str | None, host: str = "127.0.0.1"):
    factory = WebSocketClientFactory(f"ws://{host}:{port}/ws", origin=origin)
    factory.protocol = WSClient
    client = yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), factory.buildProtocol(None))
    yield client.opened
    return client


class RawHTTP(Protocol):
    def __init__(self, request: bytes) -> None:
        self.request = request
        self.data = b""
        self.done: defer.Deferred = defer.Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.request)

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason=None) -> None:
        self.done.callback(self.data)


@defer.inlineCallbacks
def raw_http(port: int, request: bytes):
    proto = RawHTTP(request)
    yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), proto)
    data = yield proto.done.addTimeout(10, reactor)
    return data


def upgrade_request(port: int, origin: str) -> bytes:
    return (
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: {origin}\r\n\r\n"
    ).encode()


@implementer(IPolicyForHTTPS)
class _TrustOne:
    """An Agent TLS policy that uses one client TLS options object."""

    def __init__(self, options) -> None:
        self.options = options

    def creatorForNetloc(self, hostname, port):
        return self.options


class SiteTests(TestCase):
    """make_site on a temporary static directory, around a ClientFactory with a fake bridge."""

    timeout = 20

    def setUp(self) -> None:
        top = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, top)
        static = top / "static"
        (static / "css").mkdir(parents=True)
        (static / "index.html").write_text("<!doctype html><title>page</title>")
        (static / "app.js").write_text("console.log(1)")
        (static / "css" / "app.css").write_text("body{}")
        (static / ".secret").write_text("DOTFILE-SECRET")
        (static.parent / "outside.txt").write_text("OUTSIDE-SECRET")
        self.clients = ClientFactory(Hub(), FakeTelephony(), Authenticator({}), clock=reactor)
        ws = WebSocketFactory(self.clients, allowed_origins=["https://crm.example.com"])
        self.site = make_site(WebSocketEndpoint(ws), static_dir=static, frame_ancestors=["https://crm.example.com"])
        self.port = reactor.listenTCP(0, self.site, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        self.base = f"http://127.0.0.1:{self.port.getHost().port}"
        self.agent = Agent(reactor)

    @defer.inlineCallbacks
    def get(self, path: str, method: bytes = b"GET"):
        response = yield self.agent.request(method, (self.base + path).encode())
        body = yield readBody(response)
        return response, body

    @defer.inlineCallbacks
    def test_index_and_files_with_security_headers(self):
        response, body = yield self.get("/")
        self.assertEqual(response.code, 200)
        self.assertIn(b"<title>page</title>", body)
        h = response.headers
        csp = h.getRawHeaders(b"content-security-policy")[0].decode()
        for directive in ("default-src 'self'", "script-src 'self'", "object-src 'none'", "base-uri 'none'",
                          f"connect-src 'self' ws://127.0.0.1:{self.port.getHost().port}",
                          "frame-ancestors https://crm.example.com"):
            self.assertIn(directive, csp)
        self.assertNotIn("unsafe-inline", csp)
        self.assertEqual(h.getRawHeaders(b"x-content-type-options"), [b"nosniff"])
        self.assertEqual(h.getRawHeaders(b"referrer-policy"), [b"no-referrer"])
        self.assertIsNone(h.getRawHeaders(b"x-frame-options"))  # the CRM may frame it
        for path, content_type in (("/app.js", b"javascript"), ("/static/app.js", b"javascript"),
                                   ("/static/css/app.css", b"text/css"), ("/css/app.css", b"text/css")):
            response, body = yield self.get(path)
            self.assertEqual(response.code, 200, path)
            self.assertIn(content_type, response.headers.getRawHeaders(b"content-type")[0], path)
            self.assertIsNotNone(response.headers.getRawHeaders(b"content-security-policy"), path)

    @defer.inlineCallbacks
    def test_no_listing_no_dotfiles_no_way_out(self):
        port = self.port.getHost().port
        for path in ("/static/", "/css/", "/static/css", "/.secret", "/static/.secret", "/nope.html"):
            response, _ = yield self.get(path)
            self.assertEqual(response.code, 404, path)
            self.assertIsNotNone(response.headers.getRawHeaders(b"content-security-policy"), path)
        for path in (b"/../outside.txt", b"/static/../../outside.txt", b"/%2e%2e/outside.txt",
                     b"/static/..%2foutside.txt", b"/static/%2e%2e%2foutside.txt"):
            data = yield raw_http(port, b"GET " + path + b" HTTP/1.0\r\nHost: x\r\n\r\n")
            self.assertNotIn(b"200 OK", data.split(b"\r\n", 1)[0], path)
            self.assertNotIn(b"SECRET", data.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in data else b"", path)
        response, _ = yield self.get("/", method=b"POST")
        self.assertEqual(response.code, 405)

    @defer.inlineCallbacks
    def test_framing_is_denied_by_default_and_a_missing_page_says_so(self):
        empty = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, empty)
        site = make_site(WebSocketEndpoint(WebSocketFactory(self.clients)), static_dir=empty)
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        response = yield self.agent.request(b"GET", f"http://127.0.0.1:{port.getHost().port}/".encode())
        body = yield readBody(response)
        self.assertEqual(response.code, 404)
        self.assertIn(b"index.html is missing", body)
        self.assertEqual(response.headers.getRawHeaders(b"x-frame-options"), [b"DENY"])
        self.assertIn(b"frame-ancestors 'none'", response.headers.getRawHeaders(b"content-security-policy")[0])

    @defer.inlineCallbacks
    def test_websocket_through_the_site_same_origin_crm_origin_and_refused(self):
        port = self.port.getHost().port
        seen: list = []
        globalLogPublisher.addObserver(seen.append)
        self.addCleanup(globalLogPublisher.removeObserver, seen.append)
        client = yield ws_connect(port, f"http://127.0.0.1:{port}")
        hello = yield client.wait_for(lambda m: m.get("method") == "hello")
        self.assertFalse(hello["params"]["login_required"])
        answer = yield client.call("ping")
        self.assertEqual(answer["result"], {"seq": 0})
        self.assertEqual(len(self.clients.connections), 1)
        crm = yield ws_connect(port, "https://crm.example.com")
        yield crm.wait_for(lambda m: m.get("method") == "hello")
        for c in (client, crm):
            c.sendClose(1000)
            yield c.closed
        for _ in range(50):
            if not self.clients.connections:
                break
            yield deferLater(reactor, 0.01, lambda: None)
        self.assertEqual(self.clients.connections, set())  # the sessions ended with their sockets
        data = yield raw_http(port, upgrade_request(port, "http://evil.example"))
        self.assertTrue(data.startswith(b"HTTP/1.1 403"), data[:80])
        self.assertIn(b"evil.example", data)
        lines = [formatEvent(e) for e in seen if "refused a WebSocket" in formatEvent(e)]
        self.assertEqual(len(lines), 1)

    @defer.inlineCallbacks
    def test_a_websocket_that_never_reads_is_cut_off_and_costs_bounded_memory(self):
        """Through twisted.web: the connection is the socket's producer, so a full kernel buffer
        queues lines here, and passing send_buffer_bytes cuts the client off."""
        self.clients.send_buffer_bytes = 64 * 1024
        port = self.port.getHost().port
        seen: list = []
        globalLogPublisher.addObserver(seen.append)
        self.addCleanup(globalLogPublisher.removeObserver, seen.append)

        class NeverReads(Protocol):
            def __init__(self) -> None:
                self.got = b""
                self.lost: defer.Deferred = defer.Deferred()

            def connectionMade(self) -> None:
                self.transport.write(upgrade_request(port, f"http://127.0.0.1:{port}"))

            def dataReceived(self, data: bytes) -> None:
                self.got += data
                if b"\r\n\r\n" in self.got:
                    self.transport.pauseProducing()  # stop reading for good

            def connectionLost(self, reason=None) -> None:
                self.lost.callback(None)

        slow = NeverReads()
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), slow)
        for _ in range(100):
            if self.clients.connections:
                break
            yield deferLater(reactor, 0.01, lambda: None)
        (conn,) = self.clients.connections
        conn.session.handle(Request("lineOpen", {"line": "flood"}, 1))
        big = event("LINE_CALLINFO", "flood", 1, "LINECALLINFOSTATE_OTHER").with_callinfo(pad="x" * 20000)
        most_queued = 0
        for _ in range(5000):  # up to 100 MB: far more than any kernel buffers
            if not self.clients.connections:
                break
            self.clients.hub.publish(big)
            most_queued = max(most_queued, conn.queued)
            yield deferLater(reactor, 0, lambda: None)
        self.assertEqual(self.clients.connections, set())
        self.assertLessEqual(most_queued, 64 * 1024 + 30000)
        socket = conn.transport._ws.transport  # the TCP connection under the WebSocket
        self.assertTrue(socket.disconnected)  # aborted, not waiting for a client that does not read
        slow.transport.abortConnection()
        yield slow.lost.addTimeout(10, reactor)
        (line,) = [formatEvent(e) for e in seen if "does not read" in formatEvent(e)]
        self.assertIn("65536", line)

    @defer.inlineCallbacks
    def test_wss_on_an_ssl_endpoint(self):
        """ssl: gives https and wss: the page's origin is then https://, and ws:// pages may not connect."""
        from twisted.internet.endpoints import SSL4ClientEndpoint, serverFromString
        from twisted.internet.ssl import Certificate, optionsForClientTLS

        from tests.security.tlsutil import make_cert

        top = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, top)
        key, cert = make_cert(top)
        listening = yield serverFromString(
            reactor, f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}").listen(self.site)
        self.addCleanup(listening.stopListening)
        port = listening.getHost().port
        tls = optionsForClientTLS("localhost", trustRoot=Certificate.loadPEM(cert.read_bytes()))

        @defer.inlineCallbacks
        def connect(origin):
            factory = WebSocketClientFactory(f"wss://localhost:{port}/ws", origin=origin)
            factory.protocol = WSClient
            client = yield connectProtocol(SSL4ClientEndpoint(reactor, "127.0.0.1", port, tls),
                                           factory.buildProtocol(None))
            return client

        ok = yield connect(f"https://localhost:{port}")
        yield ok.opened
        answer = yield ok.call("ping")
        self.assertEqual(answer["result"], {"seq": 0})
        ok.sendClose(1000)
        yield ok.closed
        plain = yield connect(f"http://localhost:{port}")  # an http:// page may not use this wss://
        code, reason = yield plain.closed
        self.assertIn("403", reason)
        yield self.assertFailure(plain.opened, Exception)
        agent = Agent(reactor, contextFactory=_TrustOne(tls))
        response = yield agent.request(b"GET", f"https://localhost:{port}/".encode())
        yield readBody(response)
        csp = response.headers.getRawHeaders(b"content-security-policy")[0]
        self.assertIn(f"connect-src 'self' wss://localhost:{port}".encode(), csp)

    @defer.inlineCallbacks
    def test_the_http_idle_timeout_does_not_cut_a_websocket(self):
        self.site.timeOut = 0.3
        port = self.port.getHost().port
        client = yield ws_connect(port, f"http://127.0.0.1:{port}")
        yield deferLater(reactor, 0.8, lambda: None)
        answer = yield client.call("ping")
        self.assertEqual(answer["result"], {"seq": 0})
        client.sendClose(1000)
        yield client.closed

    @defer.inlineCallbacks
    def test_a_query_string_never_reaches_the_log(self):
        from twisted.logger import LogLevel

        seen: list = []
        globalLogPublisher.addObserver(seen.append)
        self.addCleanup(globalLogPublisher.removeObserver, seen.append)
        response, _ = yield self.get("/app.js?token=s3cret-in-a-url")
        self.assertEqual(response.code, 200)
        text = "\n".join(formatEvent(e) + repr(e) for e in seen)
        self.assertIn("/app.js", text)  # the request is logged (debug)...
        self.assertNotIn("s3cret-in-a-url", text)  # ...without its query
        self.assertTrue(all(e.get("log_level") == LogLevel.debug for e in seen if "/app.js" in formatEvent(e)))


class ServiceTests(TestCase):
    """make_service with a web listener: the demo PBX's call pops over WebSocket."""

    timeout = 30

    @defer.inlineCallbacks
    def test_demo_call_pops_over_websocket_and_the_log_names_the_url(self):
        seen: list = []
        globalLogPublisher.addObserver(seen.append)
        self.addCleanup(globalLogPublisher.removeObserver, seen.append)
        config = load_config(None, {"server.listen": ["tcp:0:interface=127.0.0.1"],
                                    "web.listen": ["tcp:0:interface=127.0.0.1"]})
        app = make_service(config, reactor, demo_options={"timing": Timing.fast(), "autoplay": False})
        app.startService()
        self.addCleanup(app.stopService)
        port = yield app.web_listeners[0].whenListening()
        web_port = port.getHost().port
        (line,) = [formatEvent(e) for e in seen if "in a browser" in formatEvent(e)]
        self.assertIn(f"open http://127.0.0.1:{web_port}/#lines=line_1,line_2,line_3 in a browser", line)
        for _ in range(200):
            if app.bridge.link_up:
                break
            yield deferLater(reactor, 0.02, lambda: None)
        client = yield ws_connect(web_port, f"http://127.0.0.1:{web_port}")
        opened = yield client.call("lineOpen", line="line_1")
        self.assertEqual(opened["result"]["calls"], [])
        app.demo.play("inbound", caller=("0301234567", "Ext Caller"), ring=50.0)  # 0.5 s: the lookup ends while it rings
        yield client.wait_for(lambda m: m.get("params", {}).get("state") == "LINECALLSTATE_OFFERING")
        info = yield client.wait_for(lambda m: m.get("params", {}).get("infostate") == "LINECALLINFOSTATE_CALLERID")
        self.assertEqual(info["params"]["callinfo"]["callerid"], "0301234567")
        contact = yield client.wait_for(lambda m: m.get("method") == "LINE_CALLINFO"
                                        and "contact" in m["params"]["callinfo"])
        self.assertEqual(contact["params"]["callinfo"]["contact"]["source"], "crm")
        yield client.wait_for(lambda m: m.get("params", {}).get("state") == "LINECALLSTATE_IDLE")
        # the same server's TCP clients share the hub: a TCP listener is up next to it
        self.assertIs(app.web_listeners[0].factory.resource.websocket._factory.clients, app.client_factory)
        client.sendClose(1000)
        yield client.closed


def test_a_non_loopback_web_listener_without_users_refuses_to_start_with_one_line(tmp_path):
    config = tmp_path / "asttapi.toml"
    config.write_text('[web]\nlisten = ["tcp:18080"]\n')
    run = subprocess.run([sys.executable, "-m", "twisted", "asttapi", "--config", str(config)],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert run.stdout == ""
    (line,) = run.stderr.strip().splitlines()
    assert line.startswith("asttapi: web.listen: 'tcp:18080' accepts connections from other machines"), line
    flag = subprocess.run([sys.executable, "-m", "twisted", "asttapi", "--web-listen", "tcp:18080:interface=0.0.0.0"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert flag.returncode == 1 and "web.listen" in flag.stderr and len(flag.stderr.strip().splitlines()) == 1
    users = tmp_path / "users.toml"
    users.write_text('[web]\nlisten = ["tcp:18080"]\n[users.alice]\ntoken = "a-token-of-24-characters"\n')
    from asttapi_server.tap import Options

    options = Options()
    options.parseOptions(["--config", str(users)])  # with users it is accepted
    assert options.config.web.listen == ("tcp:18080",)
