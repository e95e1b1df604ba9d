"""Contacts from several sources: a real slapd and a real Radicale that both know one number.

The rule (docs/plugins.md, "Contacts from several sources"): the first plugin
in ``[plugins] enabled`` that knows the number wins. Here it is checked with
the plugin host the server uses, both ways round, and on a whole server on
the demo PBX, where a call's pop comes from the source that knows the caller.
"""

from __future__ import annotations

import json

import pytest
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.trial.unittest import TestCase

from asttapi_server.config import load_config
from asttapi_server.demo.scenarios import Timing
from asttapi_server.plugin_host import build_plugin_manager, bundled_plugin_dir
from asttapi_server.service import make_service
from tests.integration.test_end_to_end import JsonClient

from .conftest import FakePluginsConfig
from .servers import Radicale, Slapd, need_radicale, need_slapd

SHARED = "+49 30 1234567"      # the demo PBX's caller 0301234567, in both sources
LDAP_ONLY = "030 5550101"
CARDDAV_ONLY = "(030) 555 0202"


def ldap_person(uid: str, name: str, company: str, number: str) -> str:
    return (f"dn: uid={uid},{Slapd.PEOPLE}\nobjectClass: inetOrgPerson\nobjectClass: adLikePerson\nuid: {uid}\n"
            f"cn: {name}\nsn: {name.split()[-1]}\ncompany: {company}\ntelephoneNumber: {number}\n\n")


def card(uid: str, name: str, company: str, number: str) -> str:
    return f"BEGIN:VCARD\r\nVERSION:4.0\r\nUID:{uid}\r\nFN:{name}\r\nORG:{company}\r\nTEL:{number}\r\nEND:VCARD\r\n"


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    need_slapd()
    need_radicale()
    folder = tmp_path_factory.mktemp("sources")
    slapd = Slapd(folder / "slapd")
    slapd.load(ldap_person("shared", "Directory Person", "LDAP Corp", SHARED)
               + ldap_person("only", "Only In Directory", "LDAP Corp", LDAP_ONLY))
    slapd.start()
    radicale = Radicale(folder / "radicale").start()
    radicale.create_book(card("shared", "Address Book Person", "CardDAV GmbH", SHARED)
                         + card("only", "Only In Address Book", "CardDAV GmbH", CARDDAV_ONLY))
    (folder / "ldap-password").write_text(Slapd.READER_PASSWORD)
    (folder / "dav-password").write_text(Radicale.PASSWORD)
    settings = {
        "ldap_contacts": {"url": slapd.url, "base_dn": Slapd.PEOPLE, "bind_dn": Slapd.READER_DN,
                          "bind_password_file": str(folder / "ldap-password"), "region": "DE", "refresh": 3600},
        "carddav_contacts": {"url": radicale.book_url, "username": Radicale.USER,
                             "password_file": str(folder / "dav-password"), "region": "DE", "refresh": 3600},
    }
    yield settings
    slapd.stop()
    radicale.close()


class PrecedenceTests(TestCase):
    @pytest.fixture(autouse=True)
    def _sources(self, sources):
        self.settings = sources

    @defer.inlineCallbacks
    def host(self, enabled):
        host = build_plugin_manager(FakePluginsConfig(enabled, self.settings), entry_points=[],
                                    search_paths=[bundled_plugin_dir()])
        self.addCleanup(host.shutdown)
        yield host.startup(None, None)  # the directory plugins' first reads
        return host

    @defer.inlineCallbacks
    def test_the_first_source_in_enabled_that_knows_the_number_wins(self):
        for enabled, winner in ((("ldap_contacts", "carddav_contacts"), ("Directory Person", "LDAP Corp", "ldap")),
                                (("carddav_contacts", "ldap_contacts"),
                                 ("Address Book Person", "CardDAV GmbH", "carddav"))):
            host = yield self.host(enabled)
            found = yield host.lookup_contact("0301234567", {})
            self.assertEqual((found["name"], found["company"], found["source"]), winner, enabled)
            only_ldap = yield host.lookup_contact("+49305550101", {})
            only_dav = yield host.lookup_contact("0305550202", {})
            nobody = yield host.lookup_contact("0305550303", {})
            self.assertEqual((only_ldap["name"], only_ldap["source"]), ("Only In Directory", "ldap"))
            self.assertEqual((only_dav["name"], only_dav["source"]), ("Only In Address Book", "carddav"))
            self.assertIsNone(nobody)


class WholeServerTests(TestCase):
    timeout = 60

    @pytest.fixture(autouse=True)
    def _sources(self, sources, tmp_path):
        self.settings = sources
        self.tmp = tmp_path

    @defer.inlineCallbacks
    def test_a_demo_call_pops_the_contact_of_the_first_source_that_knows_the_caller(self):
        config_file = self.tmp / "asttapi.toml"
        config_file.write_text(
            '[plugins]\nenabled = ["ldap_contacts", "carddav_contacts"]\nlookup_timeout = 20.0\n'
            + "".join(f"[plugins.{name}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in table.items())
                      for name, table in self.settings.items()))
        config = load_config(str(config_file), {"server.listen": ["tcp:0:interface=127.0.0.1"], "web.listen": []})
        app = make_service(config, reactor, demo_options={"timing": Timing.fast(), "autoplay": False})
        app.startService()
        self.addCleanup(app.stopService)
        port = (yield app.listeners[0].whenListening()).getHost().port
        # Start-up does not wait for the directories; the test does (joining their first reads).
        ok = yield defer.gatherResults([d.refresh() for d in app.plugins.directories().values()])
        self.assertEqual(ok, [True, True])
        client = JsonClient()
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
        self.addCleanup(client.transport.loseConnection)
        yield client.wait_for(lambda m: m.get("method") == "hello")
        yield client.call("lineOpen", line="line_1")
        for caller, expected in (("0301234567", ("Directory Person", "LDAP Corp", "ldap")),
                                 ("0305550202", ("Only In Address Book", "CardDAV GmbH", "carddav"))):
            app.demo.play("inbound", caller=(caller, "Caller"), ring=5.0, talk=0.1)
            popped = yield client.wait_for(lambda m, caller=caller: m.get("method") == "LINE_CALLINFO"
                                           and m["params"]["callinfo"].get("callerid") == caller
                                           and m["params"]["callinfo"].get("contact"), timeout=30.0)
            contact = popped["params"]["callinfo"]["contact"]
            self.assertEqual((contact["name"], contact["company"], contact["source"]), expected)
            yield client.wait_for(lambda m, handle=popped["params"]["call"]: m.get("method") == "LINE_CALLSTATE"
                                  and m["params"]["call"] == handle
                                  and m["params"]["state"] == "LINECALLSTATE_IDLE", timeout=30.0)
