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
from asttapi_server.http_client import HttpClient, basic_auth, check_url
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
