"""asttapi_server.http_client against real HTTP(S) servers in the test (twisted.web on loopback):
a deadline, a bounded body, no redirects followed, certificates checked."""

from __future__ import annotations

import pytest
from twisted.internet import defer, reactor, ssl
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from asttapi_server.errors import HttpError
from asttapi_server.http_client import HttpClient, basic_auth, check_url, origin
from tests.ops.loopback import until
from tests.plugins.http_servers import Server as Served
from tests.plugins.http_servers import json_answer
from tests.security.tlsutil import make_cert

from .servers import closed_port


class Server(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.held: list = []
        self.seen: list = []
        self.arrived: defer.Deferred = defer.Deferred()  # fires when a request to /hold is in

    def render(self, request):
        path = request.path.decode()
        self.seen.append((request.method, path, request.getHeader("authorization"), request.content.read()))
        if path == "/hold":
            self.held.append(request)
            request.notifyFinish().addErrback(lambda _: None)
            self.arrived.callback(request)
            return NOT_DONE_YET
        if path == "/big":
            return b"x" * 5000
        if path == "/stream":  # no Content-Length: chunked, longer than allowed
            for _ in range(10):
                request.write(b"y" * 1000)
            request.finish()
            return NOT_DONE_YET
        if path == "/moved":
            request.setResponseCode(302)
            request.setHeader("location", "http://elsewhere.example/")
            return b""
        if path == "/missing":
            request.setResponseCode(404)
            return b"no such thing"
        return b"hello"


class HttpClientTests(TestCase):
    @pytest.fixture(autouse=True)
    def _folder(self, tmp_path):
        self.tmp = tmp_path

    def serve(self, tls=None) -> tuple[Server, str]:
        server = Server()
        if tls is None:
            port = reactor.listenTCP(0, Site(server), interface="127.0.0.1")
            scheme = "http"
        else:
            key, cert = tls
            options = ssl.PrivateCertificate.loadPEM(cert.read_text() + key.read_text()).options()
            port = reactor.listenSSL(0, Site(server), options, interface="127.0.0.1")
            scheme = "https"
        self.addCleanup(port.stopListening)
        return server, f"{scheme}://127.0.0.1:{port.getHost().port}"

    def client(self, **kwargs) -> HttpClient:
        client = HttpClient(**{"timeout": 10, "max_bytes": 4096, **kwargs})
        self.addCleanup(client.close)
        return client

    @defer.inlineCallbacks
    def test_answers_of_any_status_with_headers_and_credentials_sent(self):
        server, url = self.serve()
        client = self.client(headers={"Authorization": basic_auth("alice", "pässword")})
        answer = yield client.request("REPORT", url + "/x", body=b"<x/>", headers={"Depth": "0"})
        self.assertEqual((answer.code, answer.body), (200, b"hello"))
        self.assertEqual(server.seen[-1], (b"REPORT", "/x", "Basic YWxpY2U6cMOkc3N3b3Jk", b"<x/>"))
        answer = yield client.request("GET", url + "/missing")
        self.assertEqual((answer.code, answer.body), (404, b"no such thing"))

    @defer.inlineCallbacks
    def test_a_url_with_non_ascii_characters_is_sent_percent_encoded(self):
        server, url = self.serve()
        answer = yield self.client().request("PROPFIND", url + "/dav/Büro%20Kontakte/")
        self.assertEqual(answer.code, 200)
        self.assertEqual(server.seen[-1][1], "/dav/B%C3%BCro%20Kontakte/")

    @defer.inlineCallbacks
    def test_redirects_are_not_followed(self):
        server, url = self.serve()
        answer = yield self.client().request("GET", url + "/moved")
        self.assertEqual((answer.code, answer.header("Location")), (302, "http://elsewhere.example/"))
        self.assertEqual(len(server.seen), 1)

    @defer.inlineCallbacks
    def test_a_body_over_the_limit_fails_whether_announced_or_not(self):
        server, url = self.serve()
        for path in ("/big", "/stream"):
            with self.assertRaises(HttpError) as caught:
                yield self.client().request("GET", url + path)
            self.assertEqual(str(caught.exception), f"GET {url}{path}: the answer is larger than 4096 bytes")

    @defer.inlineCallbacks
    def test_no_answer_by_the_deadline(self):
        server, url = self.serve()
        clock = Clock()
        d = self.client(timeout=5, clock=clock).request("GET", url + "/hold?token=secret")
        yield server.arrived
        clock.advance(5)
        with self.assertRaises(HttpError) as caught:
            yield d
        self.assertEqual(str(caught.exception), f"GET {url}/hold: no complete answer within 5s")  # no query shown

    @defer.inlineCallbacks
    def test_connection_refused(self):
        url = f"http://127.0.0.1:{closed_port()}/x"
        with self.assertRaises(HttpError) as caught:
            yield self.client().request("GET", url)
        self.assertIn(f"GET {url}: ", str(caught.exception))
        self.assertIn("refused", str(caught.exception))

    @defer.inlineCallbacks
    def test_certificates_are_checked(self):
        key, cert = make_cert(self.tmp)
        server, url = self.serve(tls=(key, cert))
        answer = yield self.client(ca_file=cert).request("GET", url + "/x")
        self.assertEqual(answer.body, b"hello")
        with self.assertRaises(HttpError) as caught:
            yield self.client().request("GET", url + "/x")  # the system's CAs do not know it
        self.assertIn("the server's certificate is not trusted", str(caught.exception))
        other = self.tmp / "other"
        other.mkdir()
        key2, cert2 = make_cert(other, ec=True, names=("dav.example.com",))
        server, url = self.serve(tls=(key2, cert2))
        with self.assertRaises(HttpError) as caught:
            yield self.client(ca_file=cert2).request("GET", url + "/x")
        self.assertIn("certificate is for another host name", str(caught.exception))


@pytest.mark.parametrize("url, message", [
    ("ftp://x/", "expected an http:// or https:// URL"),
    ("https://u:p@x/", "no user or password in the URL"),
    ("http://x:99999/", "bad port"),
    ("http:///nohost", "expected an http:// or https:// URL"),
])
def test_check_url(url, message):
    with pytest.raises(ValueError, match=message):
        check_url(url)


class KeptConnectionsAndKindsTests(TestCase):
    """What the per-call HTTP plugins (http_contacts, call_webhooks) rely on: kept connections,
    cancelling, and an error that says what failed without the URL."""

    timeout = 30

    def client(self, **kwargs) -> HttpClient:
        client = HttpClient(reactor=reactor, **{"timeout": 2.0, "max_bytes": 1000, "persistent": True, **kwargs})
        self.addCleanup(client.close)
        return client

    def server(self, answer) -> Served:
        server = Served(answer)
        self.addCleanup(server.stop)
        return server

    @defer.inlineCallbacks
    def test_kept_connections_serve_the_next_requests(self):
        server = self.server(lambda r: json_answer(b"{}"))
        client = self.client()
        for _ in range(5):
            yield client.request("POST", server.url("/hook"), headers={"X-Key": "k"}, body=b"a=1")
        self.assertEqual(len(server.site.open), 1)  # five requests, one connection
        self.assertEqual(server.seen[-1].headers["content-length"], "3")

    @defer.inlineCallbacks
    def test_a_slow_server_costs_one_timeout_and_its_connection_is_dropped(self):
        server = self.server(lambda r: None)  # never answers
        with self.assertRaises(HttpError) as caught:
            yield self.client(timeout=0.3).request("GET", server.url("/x?token=s3cret"))
        error = caught.exception
        self.assertEqual((error.kind, error.reason, error.sent), ("timeout", "no complete answer within 0.3s", True))
        yield until(lambda: not server.site.open)

    @defer.inlineCallbacks
    def test_cancelling_abandons_the_request(self):
        server = self.server(lambda r: None)
        d = self.client().request("GET", server.url("/x"))
        yield until(lambda: server.seen)
        d.cancel()
        with self.assertRaises(defer.CancelledError):
            yield d
        yield until(lambda: not server.site.open)

    @defer.inlineCallbacks
    def test_the_kind_of_each_failure_and_whether_the_request_may_have_arrived(self):
        with self.assertRaises(HttpError) as caught:
            yield self.client().request("POST", f"http://127.0.0.1:{closed_port()}/hook", body=b"x")
        self.assertEqual((caught.exception.kind, caught.exception.sent), ("unreachable", False))
        self.assertIn("refused", caught.exception.reason)
        big = self.server(lambda r: json_answer(b"[" + b"1," * 600 + b"1]"))
        with self.assertRaises(HttpError) as caught:
            yield self.client().request("GET", big.url("/"))
        self.assertEqual((caught.exception.kind, caught.exception.reason),
                         ("too_big", "the answer is larger than 1000 bytes"))
        yield until(lambda: not big.site.open)


def test_origin_shows_no_path_query_or_credentials():
    assert origin("https://zammad.example.com/api/v1/cti/SECRET?key=abc") == "https://zammad.example.com:443"
    assert origin("http://10.0.0.5:8080/x") == "http://10.0.0.5:8080"


def test_a_token_in_a_plain_http_url_is_refused():
    with pytest.raises(ValueError, match="would cross the network readable"):
        check_url("http://crm/search?key=abc", holds_secret=True)
    assert check_url("https://crm/search?key=abc", holds_secret=True)
