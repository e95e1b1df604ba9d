"""http_contacts against real twisted.web CRMs on loopback: found, unknown, failing, slow, shared, cached."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from asttapi_server.config import load_config
from asttapi_server.demo.scenarios import Timing
from asttapi_server.plugin_host import PluginHost
from asttapi_server.service import make_service
from tests.ops.loopback import line_client, until
from tests.plugins.bundled import bundled
from tests.plugins.http_servers import Logged, Server, json_answer
from tests.plugins.servers import closed_port

http_contacts = bundled("http_contacts")

JANE = {"results": [{"id": 42, "name": {"first": "Jane", "last": "Doe"}, "org": "Northwind Traders",
                     "url": "https://crm.example.com/c/42"}]}
SETTINGS = {"name": ["/results/0/name/first", "/results/0/name/last"], "company": "/results/0/org",
            "link": "/results/0/url", "id": "/results/0/id", "startup_check": False}


def crm(directory: dict) -> callable:
    """A CRM search endpoint: ?phone=E164 -> the contact, 404 for numbers it does not know."""
    def answer(request):
        phone = request.args.get(b"phone", [b""])[0].decode()
        if phone in directory:
            return json_answer(json.dumps(directory[phone]).encode())
        return json_answer(b'{"error": "not found"}', 404)
    return answer




class HttpContactsTests(TestCase):
    timeout = 30

    def setUp(self):
        self.clock = Clock()
        self.folder = Path(tempfile.mkdtemp(prefix="asttapi-http-contacts-"))
        self.addCleanup(shutil.rmtree, self.folder, True)

    def server(self, answer) -> Server:
        server = Server(answer)
        self.addCleanup(server.stop)
        return server

    def plugin(self, url: str, **settings):
        plugin = http_contacts.configure({"url": url, **SETTINGS, **settings}, None)
        plugin._reactor = reactor
        plugin._clock = self.clock
        self.addCleanup(lambda: plugin.asttapi_shutdown())
        return plugin

    def lookup(self, plugin, number: str, **callinfo):
        return plugin.asttapi_lookup_contact(number, {"callerid": number, **callinfo})

    @defer.inlineCallbacks
    def test_a_known_caller_pops_with_name_company_link_and_id_and_the_answer_is_cached(self):
        token = self.folder / "crm.token"
        token.write_text("s3cret-token\n")
        server = self.server(crm({"+442079460958": JANE}))
        plugin = self.plugin(server.url("/api/search?phone={number}&nat={national}&raw={digits}"),
                             token_file=str(token), headers={"Authorization": "Bearer {token}"})
        contact = yield self.lookup(plugin, "02079460958")
        self.assertEqual(contact, {"name": "Jane Doe", "company": "Northwind Traders", "id": 42,
                                   "link": "https://crm.example.com/c/42"})
        (seen,) = server.seen
        self.assertEqual(seen.path, "/api/search?phone=%2B442079460958&nat=02079460958&raw=02079460958")
        self.assertEqual(seen.headers["authorization"], "Bearer s3cret-token")
        self.assertEqual(seen.headers["accept"], "application/json")
        # the same caller again: the cache answers (the cache is per request URL: with {digits}
        # in it, another way of writing the number is another request)
        again = yield self.lookup(plugin, "02079460958")
        self.assertEqual(again, contact)
        self.assertEqual(len(server.seen), 1)
        self.assertEqual((plugin.cache_counts["miss"], plugin.cache_counts["hit"]), (1, 1))
        self.assertEqual(plugin.requests["found"], 1)

    @defer.inlineCallbacks
    def test_an_unknown_caller_is_a_miss_cached_for_cache_ttl(self):
        server = self.server(crm({}))
        plugin = self.plugin(server.url("/s?phone={number}"), cache_ttl=60)
        self.assertIsNone((yield self.lookup(plugin, "02079460958")))
        self.assertIsNone((yield self.lookup(plugin, "02079460958")))
        self.assertEqual(len(server.seen), 1)  # negative answers are cached too
        self.clock.advance(61)
        self.assertIsNone((yield self.lookup(plugin, "02079460958")))
        self.assertEqual(len(server.seen), 2)
        self.assertEqual(plugin.requests["not_found"], 2)

    @defer.inlineCallbacks
    def test_an_answer_without_a_name_or_empty_is_not_found_and_a_foreign_link_is_dropped(self):
        answers = iter([json_answer(b'{"results": []}'), (200, {}, b""),
                        json_answer(b'{"results": [{"name": {"first": "X"}, "url": "javascript:alert(1)"}]}')])
        server = self.server(lambda r: next(answers))
        plugin = self.plugin(server.url("/s?phone={number}"), cache_ttl=0)
        self.assertIsNone((yield self.lookup(plugin, "02079460958")))
        self.assertIsNone((yield self.lookup(plugin, "02079460958")))
        self.assertEqual((yield self.lookup(plugin, "02079460958")), {"name": "X"})

    @defer.inlineCallbacks
    def test_a_failing_crm_is_a_miss_not_cached_and_one_log_line_a_minute(self):
        logged = Logged(self)
        server = self.server(lambda r: (503, {}, b"maintenance"))
        plugin = self.plugin(server.url("/s?phone={number}"))
        for _ in range(3):
            self.assertIsNone((yield self.lookup(plugin, "02079460958")))
        self.assertEqual(len(server.seen), 3)  # failures are not cached: the next call asks again
        self.assertEqual(plugin.requests["error"], 3)
        (line,) = logged.texts("http_contacts")
        self.assertIn(f"CRM at http://127.0.0.1:{server.port_number}: HTTP 503; the lookup missed", line)
        self.assertNotIn("2079460958", line)  # never the caller's number, never the URL's path
        self.clock.advance(61)
        yield self.lookup(plugin, "02079460958")
        self.assertIn("(2 more like it since the last report)", logged.texts("http_contacts")[-1])

    @defer.inlineCallbacks
    def test_bad_json_and_too_big_answers_are_bad_answers(self):
        answers = iter([json_answer(b"<html>login</html>"), json_answer(b"[" + b"1," * 600 + b"1]")])
        server = self.server(lambda r: next(answers))
        plugin = self.plugin(server.url("/s?phone={number}"), max_bytes=1000)
        self.assertIsNone((yield self.lookup(plugin, "02079460958")))
        self.assertIsNone((yield self.lookup(plugin, "02079460959")))
        self.assertEqual(plugin.requests["bad_answer"], 2)

    @defer.inlineCallbacks
    def test_a_slow_crm_times_out_and_nothing_listening_is_unreachable(self):
        slow = self.server(lambda r: None)
        plugin = self.plugin(slow.url("/s?phone={number}"), timeout=0.3)
        self.assertIsNone((yield self.lookup(plugin, "02079460958")))
        self.assertEqual(plugin.requests["timeout"], 1)
        gone = self.plugin(f"http://127.0.0.1:{closed_port()}/s?phone={{number}}")
        self.assertIsNone((yield self.lookup(gone, "02079460958")))
        self.assertEqual(gone.requests["unreachable"], 1)

    @defer.inlineCallbacks
    def test_lookups_of_one_number_share_one_request_and_a_late_answer_still_fills_the_cache(self):
        server = self.server(lambda r: None)  # the test answers by hand
        plugin = self.plugin(server.url("/s?phone={number}"), timeout=10)
        host = PluginHost(lookup_timeout=0.2)
        host.register(plugin, "http_contacts")
        first = host.lookup_contact("02079460958", {})
        second = host.lookup_contact("+442079460958", {})
        yield until(lambda: server.hanging)
        # both waits end at lookup_timeout, without the CRM: the call events never waited for it
        self.assertEqual([(yield first), (yield second)], [None, None])
        self.assertEqual(len(server.seen), 1)
        self.assertEqual(plugin.cache_counts["shared"], 1)
        (request,) = server.hanging
        request.setHeader("content-type", "application/json")
        request.write(json.dumps(JANE).encode())
        request.finish()
        yield until(lambda: plugin.requests["found"] == 1)
        contact = yield host.lookup_contact("02079460958", {})
        self.assertEqual(contact["name"], "Jane Doe")  # the late answer was kept
        self.assertEqual(len(server.seen), 1)

    @defer.inlineCallbacks
    def test_the_cache_is_bounded(self):
        server = self.server(crm({}))
        plugin = self.plugin(server.url("/s?phone={number}"), cache_size=2)
        for number in ("02079460951", "02079460952", "02079460953"):
            yield self.lookup(plugin, number)
        self.assertEqual(len(plugin.cache), 2)
        yield self.lookup(plugin, "02079460951")  # evicted: asked again
        self.assertEqual(len(server.seen), 4)

    @defer.inlineCallbacks
    def test_a_withheld_caller_and_a_non_number_reach_no_crm(self):
        server = self.server(crm({}))
        plugin = self.plugin(server.url("/s?phone={number}"))
        self.assertIsNone((yield self.lookup(plugin, "02079460958", calleridflags=["LINECALLPARTYID_BLOCKED"])))
        self.assertIsNone((yield self.lookup(plugin, "anonymous")))
        self.assertEqual(server.seen, [])

    @defer.inlineCallbacks
    def test_start_up_says_in_one_line_whether_the_crm_answers_and_accepts_the_login(self):
        logged = Logged(self)
        ok = self.server(crm({}))
        refusing = self.server(lambda r: (401, {}, b""))
        urls = (ok.url("/s?p={number}"), refusing.url("/s?p={number}"), f"http://127.0.0.1:{closed_port()}/s?p={{number}}")
        for i, url in enumerate(urls):
            plugin = self.plugin(url, startup_check=True)
            plugin.asttapi_startup()
            yield until(lambda: len(logged.texts("http_contacts")) == i + 1)
            self.assertEqual(sum(plugin.requests.values()), 0)  # a test lookup is no lookup
        lines = logged.texts("http_contacts")
        self.assertIn(f"CRM at http://127.0.0.1:{ok.port_number} answers (HTTP 404 for a test lookup)", lines[0])
        self.assertIn("refuses our credentials (HTTP 401 (check headers and token_file))", lines[1])
        self.assertIn("cannot reach the CRM at http://127.0.0.1:", lines[2])
        self.assertIn("lookups miss until it answers", lines[2])


class WholeServerTests(TestCase):
    """The demo PBX with http_contacts pointing at a CRM that never answers."""

    timeout = 60

    @defer.inlineCallbacks
    def test_a_crm_that_never_answers_never_delays_a_call_event(self):
        crm_server = Server(lambda r: None)
        self.addCleanup(crm_server.stop)
        overrides = {"server.listen": ["tcp:0:interface=127.0.0.1"], "web.listen": [],
                     "plugins.enabled": ["http_contacts"], "plugins.lookup_timeout": 0.5,
                     "plugins.http_contacts": {"url": crm_server.url("/s?phone={number}"), "name": "/name",
                                               "startup_check": False, "timeout": 5}}
        app = make_service(load_config(None, overrides), reactor,
                           demo_options={"timing": Timing.fast(), "autoplay": False})
        app.startService()
        self.addCleanup(app.stopService)
        port = (yield app.listeners[0].whenListening()).getHost().port
        yield until(lambda: app.bridge.link_up)
        client = yield line_client(port, case=self)
        yield client.call("lineOpen", line="line_1")
        app.demo.play("inbound", caller=("0301234567", "Ext Caller"), ring=50, talk=300)  # x0.01: 0.5 s, 3 s
        offering = yield client.wait_for(lambda m: m.get("params", {}).get("state") == "LINECALLSTATE_OFFERING")
        # the call rings on the client while the CRM holds the request and never answers
        yield until(lambda: crm_server.hanging)
        miss = yield client.wait_for(lambda m: "contact" in m.get("params", {}).get("callinfo", {}))
        self.assertIsNone(miss["params"]["callinfo"]["contact"])  # lookup_timeout: a miss, said once
        self.assertLess(client.messages.index(offering), client.messages.index(miss))
        self.assertEqual(len(crm_server.hanging), 1)  # still unanswered: nothing waited for it


@pytest.mark.parametrize("settings, message", [
    ({"name": "/n"}, "setting 'url': required"),
    ({"url": "http://crm/s?p={number}"}, "setting 'name': required"),
    ({"url": "http://crm/s?p={phone}", "name": "/n"}, "unknown placeholder {phone}"),
    ({"url": "https://crm/s?p={number}", "name": "/n", "headers": {"X-Key": "{token}"}},
     "header 'X-Key': uses {token} but token_file is not set"),
    ({"url": "https://crm/s?p={number}", "name": "/n", "headers": {"X-Num": "{number}"}},
     "header 'X-Num': unknown placeholder {number}"),
    ({"url": "ftp://crm/s?p={number}", "name": "/n"}, "expected an http:// or https:// URL"),
    ({"url": "http://crm/s?p={number}", "name": "n/"}, "setting 'name': a JSON pointer is"),
    ({"url": "http://crm/s?p={number}", "name": "/n", "colour": 1}, "unknown setting(s): colour"),
])
def test_a_wrong_setting_is_one_clear_error(settings, message):
    with pytest.raises(ValueError, match=None) as caught:
        http_contacts.configure(settings, None)
    assert message in str(caught.value)


def test_a_token_in_a_plain_http_url_is_refused(tmp_path):
    token = tmp_path / "t"
    token.write_text("abc")
    with pytest.raises(ValueError, match="readable"):
        http_contacts.configure({"url": "http://crm/s?p={number}&key={token}", "name": "/n",
                                 "token_file": str(token)}, None)


def test_the_documented_example_is_a_working_configuration(tmp_path):
    import re
    import tomllib

    doc = (Path(__file__).resolve().parents[2] / "docs" / "plugins.md").read_text()
    block = re.search(r"### http_contacts.*?```toml\n(.*?)```", doc, re.S).group(1)
    settings = tomllib.loads(block)["plugins"]["http_contacts"]
    token = tmp_path / "crm.token"
    token.write_text("t0ken")
    settings["token_file"] = str(token)
    plugin = http_contacts.configure(settings, None)
    assert plugin.headers["Authorization"] == "Bearer t0ken"
    assert plugin.url_for("02079460958") == "https://crm.example.com/api/contacts/search?phone=%2B442079460958"
    found = plugin.contact_of({"results": [{"first_name": "Jane", "last_name": "Doe", "company": "NW", "id": 7}]})
    assert found == {"name": "Jane Doe", "company": "NW", "id": 7, "link": "https://crm.example.com/contacts/7"}
