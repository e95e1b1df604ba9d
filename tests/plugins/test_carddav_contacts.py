"""carddav_contacts against a real Radicale started by the test (Debian's radicale).

1,000 cards (vCard 3.0 and 4.0, numbers in mixed formats) are uploaded by
the test; the plugin reaches Radicale through a recording proxy (twisted.web
in the test) that counts what goes over the wire, so a sync's requests are
asserted, not inferred. The same proxy plays a server without sync support
by refusing ``sync-collection``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.internet import defer, reactor
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from asttapi_server.http_client import HttpClient
from tests.security.tlsutil import make_cert

from .bundled import bundled
from .servers import Radicale, closed_port, need_radicale

carddav_contacts = bundled("carddav_contacts")

CARDS = 1000


def vcard(i: int, name: str | None = None, number: str | None = None) -> str:
    n = f"{3000000 + i}"
    name = name or f"Card Person {i}"
    if i % 2:
        tel = f"TEL;VALUE=uri;TYPE=work:tel:{number or '+49-40-' + n}"
        return (f"BEGIN:VCARD\r\nVERSION:4.0\r\nUID:c{i}\r\nFN:{name}\r\nORG:Firm {i % 40}\r\n{tel}\r\n"
                "END:VCARD\r\n")
    written = number or ("+49 40 {n}", "040 {n}", "(040) {n}", "0049-40-{n}")[(i // 2) % 4].format(n=n)
    return (f"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:c{i}\r\nFN:{name}\r\nN:Person {i};Card;;;\r\n"
            f"ORG:Firm {i % 40};Sales\r\nTEL;TYPE=WORK:{written}\r\nTEL;TYPE=CELL:0172 4{i:06d}\r\nEND:VCARD\r\n")


def dialled(i: int) -> str:
    return f"040{3000000 + i}"


class RecordingProxy(Resource):
    """Forwards every request to Radicale (with our own HTTP client) and keeps (method, body) of each;
    ``refuse_sync`` plays a server without RFC 6578 (501 to sync-collection)."""

    isLeaf = True
    FORWARDED = ("authorization", "depth", "content-type")

    def __init__(self, upstream_port: int) -> None:
        super().__init__()
        self.upstream = f"http://127.0.0.1:{upstream_port}"
        self.client = HttpClient(timeout=30, max_bytes=64 << 20)
        self.requests: list[tuple[str, bytes]] = []
        self.refuse_sync = False

    def render(self, request):
        body = request.content.read()
        method = request.method.decode()
        self.requests.append((method, body))
        if self.refuse_sync and b"sync-collection" in body:
            request.setResponseCode(501)
            return b"sync-collection is not implemented here"
        headers = {name: request.getHeader(name) for name in self.FORWARDED if request.getHeader(name)}
        d = self.client.request(method, self.upstream + request.uri.decode(), headers=headers, body=body or None)

        def answer(response):
            request.setResponseCode(response.code)
            for name in ("content-type", "location", "etag"):
                if response.header(name):
                    request.setHeader(name, response.header(name))
            request.write(response.body)
            request.finish()

        def failed(failure):
            request.setResponseCode(502)
            request.write(failure.getErrorMessage().encode())
            request.finish()

        d.addCallbacks(answer, failed)
        return NOT_DONE_YET

    def take(self) -> list[tuple[str, bytes]]:
        taken, self.requests = self.requests, []
        return taken


def kinds(requests) -> list[str]:
    out = []
    for method, body in requests:
        if b"sync-collection" in body:
            out.append("sync-collection" + (" with token" if b"<d:sync-token>" in body else ""))
        elif b"addressbook-multiget" in body:
            out.append(f"multiget {body.count(b'<d:href>')}")
        else:
            out.append(method)
    return out


@pytest.fixture(scope="module")
def radicale_book(tmp_path_factory):
    need_radicale()
    server = Radicale(tmp_path_factory.mktemp("radicale")).start()
    server.create_book("".join(vcard(i) for i in range(CARDS)))
    yield server
    server.close()


class CardDavCase(TestCase):
    @pytest.fixture(autouse=True)
    def _fixtures(self, radicale_book, tmp_path):
        self.radicale = radicale_book
        self.tmp = tmp_path
        self.logged: list[dict] = []
        globalLogPublisher.addObserver(self.logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged.append)

    def proxy(self, radicale: Radicale | None = None) -> tuple[RecordingProxy, str]:
        radicale = radicale or self.radicale
        recorder = RecordingProxy(radicale.port)
        port = reactor.listenTCP(0, Site(recorder), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return recorder, f"http://127.0.0.1:{port.getHost().port}/{Radicale.USER}/{Radicale.BOOK}/"

    def password_file(self, password: str = Radicale.PASSWORD, name: str = "carddav-password") -> str:
        path = self.tmp / name
        path.write_text(password + "\n")
        return str(path)

    def plugin(self, url: str, **overrides):
        settings = {"url": url, "username": Radicale.USER, "password_file": self.password_file(), "region": "DE",
                    "refresh": 3600, "timeout": 30}
        settings.update(overrides)
        plugin = carddav_contacts.configure({k: v for k, v in settings.items() if v is not None}, None)
        self.addCleanup(plugin.asttapi_shutdown)
        return plugin

    def lines(self, text: str) -> list[str]:
        return [formatEvent(e) for e in self.logged if text in formatEvent(e)]


class SyncTests(CardDavCase):
    @defer.inlineCallbacks
    def test_1000_cards_then_one_added_and_one_deleted_fetches_only_the_new_card(self):
        recorder, url = self.proxy()
        plugin = self.plugin(url)
        ok = yield plugin.asttapi_startup()
        self.assertIs(ok, True, self.lines("cannot read"))
        self.assertEqual(plugin.directory.stats().contacts, CARDS)
        self.assertEqual(kinds(recorder.take()), ["sync-collection"] + ["multiget 50"] * (CARDS // 50))
        for i in range(CARDS):
            found = plugin.asttapi_lookup_contact(dialled(i))
            self.assertEqual((found["name"], found["company"], found["source"]),
                             (f"Card Person {i}", f"Firm {i % 40}", "carddav"), i)
        self.assertEqual(plugin.asttapi_lookup_contact("+491724000998")["name"], "Card Person 998")
        self.assertEqual(plugin.asttapi_lookup_contact("01724000997"), None)  # 997 is a 4.0 card: no mobile

        added = 5000
        self.radicale.put(f"c{added}.vcf", vcard(added, "Added Later", "+49 40 7777777"))
        self.radicale.delete("c10.vcf")
        self.assertIsNone(plugin.asttapi_lookup_contact("0407777777"))  # not before a sync
        ok = yield plugin.directory.refresh()
        self.assertIs(ok, True)
        self.assertEqual(kinds(recorder.take()), ["sync-collection with token", "multiget 1"])
        report = plugin.sync.last
        self.assertEqual((report.mode, report.fetched, report.removed), ("incremental", 1, 1))
        self.assertEqual(plugin.asttapi_lookup_contact("0407777777")["name"], "Added Later")
        self.assertIsNone(plugin.asttapi_lookup_contact(dialled(10)))
        self.assertEqual(plugin.directory.stats().contacts, CARDS)

        ok = yield plugin.directory.refresh()  # nothing changed: one request, the index kept
        self.assertIs(ok, True)
        self.assertEqual(kinds(recorder.take()), ["sync-collection with token"])
        self.assertEqual(plugin.asttapi_lookup_contact("0407777777")["name"], "Added Later")
        self.radicale.put("c10.vcf", vcard(10))  # (the module's address book as it was)
        self.radicale.delete(f"c{added}.vcf")

    @defer.inlineCallbacks
    def test_a_changed_card_is_fetched_again(self):
        recorder, url = self.proxy()
        plugin = self.plugin(url)
        yield plugin.asttapi_startup()
        self.radicale.put("c20.vcf", vcard(20, "Renamed Twenty", "040 8888888"))
        self.addCleanup(self.radicale.put, "c20.vcf", vcard(20))
        recorder.take()
        yield plugin.directory.refresh()
        self.assertEqual(kinds(recorder.take()), ["sync-collection with token", "multiget 1"])
        self.assertEqual(plugin.asttapi_lookup_contact("0408888888")["name"], "Renamed Twenty")
        self.assertIsNone(plugin.asttapi_lookup_contact(dialled(20)))

    @defer.inlineCallbacks
    def test_a_token_the_server_no_longer_knows_means_one_whole_listing(self):
        recorder, url = self.proxy()
        plugin = self.plugin(url)
        yield plugin.asttapi_startup()
        plugin.sync.token = "http://radicale.org/ns/sync/0000000000000000000000000000000000000000000000000000000000000000"
        recorder.take()
        ok = yield plugin.directory.refresh()
        self.assertIs(ok, True)
        # refused (403 DAV:valid-sync-token), then listed whole; every ETag known: nothing fetched again
        self.assertEqual(kinds(recorder.take()), ["sync-collection with token", "sync-collection"])
        self.assertEqual(len(self.lines("no longer knows the sync token")), 1)
        self.assertEqual((plugin.sync.last.mode, plugin.sync.last.fetched), ("initial", 0))
        self.assertEqual(plugin.asttapi_lookup_contact(dialled(7))["name"], "Card Person 7")

    @defer.inlineCallbacks
    def test_a_server_without_sync_is_listed_with_propfind(self):
        recorder, url = self.proxy()
        recorder.refuse_sync = True
        plugin = self.plugin(url)
        ok = yield plugin.asttapi_startup()
        self.assertIs(ok, True)
        self.assertEqual(kinds(recorder.take()), ["sync-collection", "PROPFIND"] + ["multiget 50"] * (CARDS // 50))
        self.assertEqual(len(self.lines("has no sync-collection (answered 501); syncing with PROPFIND")), 1)
        self.assertEqual(plugin.asttapi_lookup_contact(dialled(3))["name"], "Card Person 3")
        self.radicale.put("c7000.vcf", vcard(7000, "Added Later", "+49 40 6666666"))
        self.radicale.delete("c11.vcf")
        self.addCleanup(self.radicale.put, "c11.vcf", vcard(11))
        self.addCleanup(self.radicale.delete, "c7000.vcf")
        yield plugin.directory.refresh()
        self.assertEqual(kinds(recorder.take()), ["PROPFIND", "multiget 1"])
        self.assertEqual((plugin.sync.last.mode, plugin.sync.last.fetched, plugin.sync.last.removed), ("full", 1, 1))
        self.assertEqual(plugin.asttapi_lookup_contact("0406666666")["name"], "Added Later")
        self.assertIsNone(plugin.asttapi_lookup_contact(dialled(11)))


class FailureTests(CardDavCase):
    @defer.inlineCallbacks
    def test_wrong_password_is_one_clear_line_and_lookups_miss(self):
        plugin = self.plugin(self.radicale.book_url, password_file=self.password_file("wrong", "wrong"))
        ok = yield plugin.asttapi_startup()
        self.assertIs(ok, False)
        (line,) = self.lines("carddav_contacts: cannot read")
        self.assertIn("the server refused the login as 'alice' (401): check username and password_file", line)
        self.assertIn("its callers are not found until a read succeeds", line)
        self.assertNotIn("wrong", line.replace("wrong,", ""))
        self.assertIsNone(plugin.asttapi_lookup_contact(dialled(1)))

    @defer.inlineCallbacks
    def test_unreachable_server(self):
        plugin = self.plugin(f"http://127.0.0.1:{closed_port()}/alice/contacts/")
        ok = yield plugin.asttapi_startup()
        self.assertIs(ok, False)
        (line,) = self.lines("carddav_contacts: cannot read")
        self.assertRegex(line, r"REPORT http://127\.0\.0\.1:\d+/alice/contacts/: .*[Cc]onnection.*refused")

    @defer.inlineCallbacks
    def test_no_address_book_there(self):
        plugin = self.plugin(self.radicale.book_url.replace("/contacts/", "/nothing/"))
        ok = yield plugin.asttapi_startup()
        self.assertIs(ok, False)
        self.assertIn("no address book at this URL (404)", self.lines("cannot read")[0])


class ServerGoneTests(TestCase):
    """A Radicale of this test's own: it stops and comes back."""

    @pytest.fixture(autouse=True)
    def _fixtures(self, tmp_path):
        self.tmp = tmp_path
        self.radicale = Radicale(tmp_path / "radicale").start()
        self.addCleanup(lambda: self.radicale.close())
        self.radicale.create_book("".join(vcard(i) for i in range(10)))
        self.logged: list[dict] = []
        globalLogPublisher.addObserver(self.logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged.append)

    @defer.inlineCallbacks
    def test_a_failed_sync_keeps_the_cards_and_the_next_one_catches_up(self):
        (self.tmp / "pw").write_text(Radicale.PASSWORD)
        plugin = carddav_contacts.configure({"url": self.radicale.book_url, "username": Radicale.USER,
                                             "password_file": str(self.tmp / "pw"), "region": "DE",
                                             "refresh": 3600}, None)
        self.addCleanup(plugin.asttapi_shutdown)
        ok = yield plugin.asttapi_startup()
        self.assertIs(ok, True, [formatEvent(e) for e in self.logged])
        self.assertEqual(plugin.asttapi_lookup_contact(dialled(3))["name"], "Card Person 3")
        port = self.radicale.port
        self.radicale.stop()
        ok = yield plugin.directory.refresh()
        self.assertIs(ok, False)
        self.assertEqual(plugin.asttapi_lookup_contact(dialled(3))["name"], "Card Person 3")
        (line,) = [formatEvent(e) for e in self.logged if "cannot read" in formatEvent(e)]
        self.assertIn("keeping the 10 contacts read", line)
        self.radicale.start(port)
        self.radicale.delete("c3.vcf")
        ok = yield plugin.directory.refresh()
        self.assertIs(ok, True)
        self.assertIsNone(plugin.asttapi_lookup_contact(dialled(3)))
        self.assertEqual(plugin.sync.last.mode, "incremental")


class TlsTests(TestCase):
    @pytest.fixture(autouse=True)
    def _fixtures(self, tmp_path):
        self.tmp = tmp_path
        key, cert = make_cert(tmp_path)
        self.cert = cert
        self.radicale = Radicale(tmp_path / "radicale", tls=(key, cert)).start()
        self.addCleanup(lambda: self.radicale.close())
        self.radicale.create_book(vcard(1))
        (tmp_path / "pw").write_text(Radicale.PASSWORD)
        self.logged: list[dict] = []
        globalLogPublisher.addObserver(self.logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged.append)

    def plugin(self, **extra):
        plugin = carddav_contacts.configure({"url": self.radicale.book_url, "username": Radicale.USER,
                                             "password_file": str(self.tmp / "pw"), "region": "DE", **extra}, None)
        self.addCleanup(plugin.asttapi_shutdown)
        return plugin

    @defer.inlineCallbacks
    def test_https_with_the_servers_ca(self):
        plugin = self.plugin(ca_file=str(self.cert))
        ok = yield plugin.asttapi_startup()
        self.assertIs(ok, True, [formatEvent(e) for e in self.logged])
        self.assertEqual(plugin.asttapi_lookup_contact(dialled(1))["name"], "Card Person 1")

    @defer.inlineCallbacks
    def test_certificates_are_checked_by_default(self):
        plugin = self.plugin()
        ok = yield plugin.asttapi_startup()
        self.assertIs(ok, False)
        (line,) = [formatEvent(e) for e in self.logged if "cannot read" in formatEvent(e)]
        self.assertIn("TLS: the server's certificate is not trusted (check ca_file)", line)


@pytest.mark.parametrize("settings, message", [
    ({"url": None}, "setting 'url': the address book's URL is missing"),
    ({"url": "ftp://x/"}, "setting 'url': expected an http:// or https:// URL"),
    ({"url": "https://alice:pw@x/"}, "no user or password in the URL"),
    ({"password_file": None}, "setting 'password_file': needed with username"),
    ({"username": None}, "setting 'username': needed with password_file"),
    ({"password_file": "/nonexistent"}, "setting 'password_file': cannot read '/nonexistent'"),
    ({"refresh": 0}, "setting 'refresh': expected a number of seconds >= 1, got 0"),
    ({"ca_file": "/nonexistent.pem"}, "setting 'ca_file': file '/nonexistent.pem' does not exist"),
    ({"region": "XX"}, "unknown phone number region"),
    ({"sync": True}, "unknown setting\\(s\\): sync"),
])
def test_bad_settings_stop_start_up_with_one_line(tmp_path, settings, message):
    (tmp_path / "pw").write_text("secret")
    good = {"url": "https://cloud.example/dav/contacts/", "username": "u", "password_file": str(tmp_path / "pw")}
    good.update(settings)
    with pytest.raises(ValueError, match=message):
        carddav_contacts.configure({k: v for k, v in good.items() if v is not None}, None)


def test_a_ca_file_without_certificates_is_refused(tmp_path):
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    with pytest.raises(ValueError, match="setting 'ca_file': no PEM certificate in"):
        carddav_contacts.configure({"url": "https://cloud.example/dav/", "ca_file": str(tmp_path / "ca.pem")}, None)
