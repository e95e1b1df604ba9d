"""asttapi_server.httpclient against real twisted.web servers on loopback: deadlines, bounds, TLS, the pool."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase

from asttapi_server.httpclient import HttpClient, HttpError, check_url, origin
from tests.ops.loopback import until
from tests.plugins.http_servers import Server, free_port, json_answer


class HttpClientTests(TestCase):
    timeout = 30

    def client(self, **kw) -> HttpClient:
        kw.setdefault("timeout", 2.0)
        kw.setdefault("max_bytes", 1000)
        client = HttpClient(reactor, **kw)
        self.addCleanup(client.close)
        return client

    def server(self, answer, **kw) -> Server:
        server = Server(answer, **kw)
        self.addCleanup(server.stop)
        return server

    @defer.inlineCallbacks
    def test_an_answer_with_its_status_headers_and_body_and_the_request_as_sent(self):
        server = self.server(lambda r: json_answer(b'{"ok": true}', 201))
        answer = yield self.client().request("POST", server.url("/x?a=1"), [("X-Key", "k")], b"a=1&b=2")
        self.assertEqual((answer.code, answer.body), (201, b'{"ok": true}'))
        self.assertEqual(answer.headers["content-type"], "application/json")
        (seen,) = server.seen
        self.assertEqual((seen.method, seen.path, seen.body), ("POST", "/x?a=1", b"a=1&b=2"))
        self.assertEqual(seen.headers["x-key"], "k")
        self.assertEqual(seen.headers["content-length"], "7")
        self.assertTrue(seen.headers["user-agent"].startswith("asttapi-server/"))

    @defer.inlineCallbacks
    def test_a_slow_server_costs_one_timeout_and_the_request_is_abandoned(self):
        server = self.server(lambda r: None)  # never answers
        started = time.monotonic()
        with self.assertRaises(HttpError) as caught:
            yield self.client(timeout=0.3).request("GET", server.url())
        self.assertEqual(caught.exception.kind, "timeout")
        self.assertIn("no answer within 0.3 s", str(caught.exception))
        self.assertLess(time.monotonic() - started, 2.0)
        yield until(lambda: not server.site.open)  # the connection was dropped, not left hanging

    @defer.inlineCallbacks
    def test_too_big_answers_are_abandoned_by_length_or_as_they_stream(self):
        declared = self.server(lambda r: (200, {}, b"x" * 5000))
        with self.assertRaises(HttpError) as caught:
            yield self.client().request("GET", declared.url())
        self.assertEqual(caught.exception.kind, "too_big")
        self.assertIn("5000 bytes, more than 1000", str(caught.exception))

        server = self.server(_stream)
        with self.assertRaises(HttpError) as caught:
            yield self.client().request("GET", server.url())
        self.assertEqual(caught.exception.kind, "too_big")
        self.assertIn("longer than 1000 bytes", str(caught.exception))
        yield until(lambda: not declared.site.open and not server.site.open)  # both connections dropped

    @defer.inlineCallbacks
    def test_nobody_listening_is_unreachable(self):
        with self.assertRaises(HttpError) as caught:
            yield self.client().request("GET", f"http://127.0.0.1:{free_port()}/")
        self.assertEqual(caught.exception.kind, "unreachable")
        self.assertIn("cannot connect", str(caught.exception))

    @defer.inlineCallbacks
    def test_cancelling_abandons_the_request(self):
        server = self.server(lambda r: None)
        d = self.client().request("GET", server.url())
        yield until(lambda: server.seen)
        d.cancel()
        with self.assertRaises(defer.CancelledError):
            yield d
        yield until(lambda: not server.site.open)

    @defer.inlineCallbacks
    def test_the_pool_keeps_connections_for_the_next_request(self):
        server = self.server(lambda r: json_answer(b"{}"))
        client = self.client()
        for _ in range(5):
            yield client.request("GET", server.url())
        self.assertEqual(len({s.headers.get("host") for s in server.seen}), 1)
        self.assertEqual(len(server.site.open), 1)  # five requests, one connection

    @defer.inlineCallbacks
    def test_a_private_ca_is_trusted_and_nothing_else_is(self):
        from twisted.internet.ssl import PrivateCertificate

        from tests.security.tlsutil import make_cert

        folder = Path(tempfile.mkdtemp(prefix="asttapi-http-"))
        self.addCleanup(shutil.rmtree, folder, True)
        key, cert = make_cert(folder, ec=True)
        context = PrivateCertificate.loadPEM(key.read_text() + cert.read_text()).options()
        server = self.server(lambda r: json_answer(b'{"tls": 1}'), context_factory=context)
        answer = yield self.client(ca_file=cert).request("GET", server.url())
        self.assertEqual(answer.body, b'{"tls": 1}')
        with self.assertRaises(HttpError) as caught:
            yield self.client().request("GET", server.url())  # the system's trust store does not know it
        self.assertEqual(caught.exception.kind, "tls")


def _stream(request):
    """800 bytes twice, chunked: no Content-Length warns the client."""
    request.write(b"y" * 800)
    request.write(b"y" * 800)
    request.finish()
    return None


def test_origin_shows_no_path_query_or_credentials():
    assert origin("https://crm.example.com/api/v1/cti/SECRET?key=abc") == "https://crm.example.com:443"
    assert origin("http://10.0.0.5:8080/x") == "http://10.0.0.5:8080"


def test_check_url():
    assert check_url("https://crm.example.com/search?q={number}") is None
    assert "http:// or https://" in check_url("ftp://crm.example.com/")
    assert "http:// or https://" in check_url("crm.example.com/x")
    assert "without user:password@" in check_url("https://u:p@crm.example.com/")
    assert "not a URL" in check_url("http://crm.example.com:99999/")
