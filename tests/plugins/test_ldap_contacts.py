"""ldap_contacts against a real OpenLDAP slapd started by the test (Debian's slapd).

The directory: 5,000 generated people with numbers written every way people
write them, read by a bind account whose password is in a file, on a server
whose size limit (1,000, as Active Directory's page size) makes an unpaged
read fail.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import ldap3
import pytest
from twisted.internet import defer
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase

from tests.security.tlsutil import make_cert

from .bundled import bundled
from .servers import Slapd, closed_port, need_slapd

ldap_contacts = bundled("ldap_contacts")

PEOPLE = 5000
FORMATS = ("+49 30 {n}", "030-{n}", "({area}) {a} {b} {c}", "0049 30 {n}", "+49 (0)30 {n}", "030/{n}",
           "+49-30-{a}{b}{c}")


def person(i: int) -> dict:
    """Person ``i``: their attributes and what a lookup must answer."""
    n = f"{2000000 + i}"
    written = FORMATS[i % len(FORMATS)].format(n=n, area="030", a=n[:3], b=n[3:5], c=n[5:])
    attrs: dict[str, list[str]] = {"telephoneNumber": [written]}
    if i % 3 == 0:
        attrs["mobile"] = [f"0171 3{i:06d}"]
    if i % 5 == 0:
        attrs["ipPhone"] = [f"{10000 + i}"]
    if i % 7 == 0:
        attrs["otherTelephone"] = [f"+49 89 5{i:06d}"]
    if i % 11 == 0:
        attrs["homePhone"] = [f"089 6{i:06d}"]
    name = f"Person {i}"
    if i % 2 == 0:
        attrs["displayName"] = [f"{name} (Display)"]
    if i % 4 == 0:
        attrs["company"] = [f"Company {i % 50}"]
    elif i % 4 == 1:
        attrs["o"] = [f"Org {i % 30}"]
    return {
        "uid": f"p{i}", "cn": name, "attrs": attrs, "dialled": f"030{n}", "written": written,
        "name": attrs.get("displayName", [name])[0],
        "company": (attrs.get("company") or attrs.get("o") or [None])[0],
    }


def entry_ldif(p: dict, base: str) -> str:
    lines = [f"dn: uid={p['uid']},{base}", "objectClass: inetOrgPerson", "objectClass: adLikePerson",
             f"uid: {p['uid']}", f"cn: {p['cn']}", f"sn: {p['cn'].split()[-1]}"]
    for attr, values in p["attrs"].items():
        lines += [f"{attr}: {v}" for v in values]
    return "\n".join(lines) + "\n\n"


def people_ldif(count: int = PEOPLE, base: str = Slapd.PEOPLE) -> str:
    return "".join(entry_ldif(person(i), base) for i in range(count)) + (
        # no number: not read
        f"dn: uid=nophone,{base}\nobjectClass: inetOrgPerson\nuid: nophone\ncn: No Phone\nsn: Phone\n\n"
    )


def password_file(folder: Path, password: str, name: str = "ldap-password") -> str:
    path = folder / name
    path.write_text(password + "\n")
    return str(path)


@pytest.fixture(scope="module")
def people_slapd(tmp_path_factory):
    need_slapd()
    folder = tmp_path_factory.mktemp("slapd")
    tls = make_cert(folder)
    server = Slapd(folder, size_limit=1000, tls=tls)
    server.load(people_ldif())
    server.start()
    server.cert = tls[1]
    yield server
    server.stop()


class LdapCase(TestCase):
    """A trial case (the plugin reads in the reactor's thread pool) with the module's slapd and the log."""

    @pytest.fixture(autouse=True)
    def _fixtures(self, people_slapd, tmp_path):
        self.slapd = people_slapd
        self.tmp = tmp_path
        self.logged: list[dict] = []
        globalLogPublisher.addObserver(self.logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged.append)

    def plugin(self, **overrides):
        settings = {
            "url": self.slapd.url, "base_dn": Slapd.PEOPLE, "bind_dn": Slapd.READER_DN,
            "bind_password_file": password_file(self.tmp, Slapd.READER_PASSWORD), "region": "DE",
            "refresh": 3600,
        }
        settings.update(overrides)
        settings = {k: v for k, v in settings.items() if v is not None}
        plugin = ldap_contacts.configure(settings, None)
        self.addCleanup(plugin.asttapi_shutdown)
        return plugin

    def lines(self, text: str) -> list[str]:
        return [formatEvent(e) for e in self.logged if text in formatEvent(e)]


class ReadTests(LdapCase):
    @defer.inlineCallbacks
    def test_5000_people_read_page_by_page_and_found_in_every_format(self):
        plugin = self.plugin(page_size=400)
        ok = yield plugin.asttapi_startup()
        self.assertIs(ok, True)
        stats = plugin.directory.stats()
        self.assertEqual(stats.contacts, PEOPLE)  # not the OU with a number, not the person without one
        for i in range(PEOPLE):
            p = person(i)
            found = plugin.asttapi_lookup_contact(p["dialled"])
            self.assertEqual(found, {"name": p["name"], "company": p["company"], "source": "ldap",
                                     "number": p["written"]}, p)
        # 924: display name, company, mobile, other and home phone
        for number in ("+49302000924", "0049 30 2000924", "01713000924", "+491713000924", "0895000924",
                       "089 6000924"):
            found = plugin.asttapi_lookup_contact(number)
            self.assertEqual((found["name"], found["company"]), ("Person 924 (Display)", "Company 24"), number)
        self.assertEqual(plugin.asttapi_lookup_contact("10005")["name"], "Person 5")  # ipPhone: an extension
        self.assertEqual(plugin.asttapi_lookup_contact("0301234"), None)
        self.assertEqual(plugin.asttapi_lookup_contact("03099999999"), None)
        self.assertEqual(plugin.asttapi_lookup_contact("+49309999999"), None)  # the OU's number: not a person
        self.assertEqual(len(self.lines("ldap_contacts: read 5000 contacts")), 1)

    def test_the_server_refuses_an_unpaged_read(self):
        """What makes paging necessary here (and on AD): the size limit is below the directory's size."""
        connection = ldap3.Connection(ldap3.Server("127.0.0.1", port=self.slapd.port, get_info=ldap3.NONE),
                                      Slapd.READER_DN, Slapd.READER_PASSWORD, auto_bind=True, raise_exceptions=True)
        connection.search(Slapd.PEOPLE, "(telephoneNumber=*)", attributes=["cn"])
        self.assertEqual(connection.result["description"], "sizeLimitExceeded")  # (ldap3 does not raise it)
        self.assertEqual(len(connection.response), 1000)
        connection.unbind()

    @defer.inlineCallbacks
    def test_anonymous_bind(self):
        plugin = self.plugin(bind_dn=None, bind_password_file=None)
        ok = yield plugin.asttapi_startup()
        self.assertIs(ok, True)
        self.assertEqual(plugin.asttapi_lookup_contact("0302000007")["name"], "Person 7")

    @defer.inlineCallbacks
    def test_wrong_password_is_one_clear_line_and_lookups_miss(self):
        plugin = self.plugin(bind_password_file=password_file(self.tmp, "not the password", "wrong-password"))
        ok = yield plugin.asttapi_startup()
        self.assertIs(ok, False)
        (line,) = self.lines("ldap_contacts: cannot read")
        self.assertIn(f"the server refused the bind as '{Slapd.READER_DN}': invalid credentials", line)
        self.assertIn("its callers are not found until a read succeeds", line)
        self.assertNotIn("not the password", " ".join(formatEvent(e) for e in self.logged))
        self.assertIsNone(plugin.asttapi_lookup_contact("0302000007"))
        self.assertEqual(plugin.directory.stats().reads_failed, 1)

    @defer.inlineCallbacks
    def test_unreachable_server(self):
        plugin = self.plugin(url=f"ldap://127.0.0.1:{closed_port()}", timeout=5)
        ok = yield plugin.asttapi_startup()
        self.assertIs(ok, False)
        (line,) = self.lines("ldap_contacts: cannot read")
        self.assertRegex(line, r"cannot connect to 127\.0\.0\.1:\d+: .*[Cc]onnection refused")
        self.assertIsNone(plugin.asttapi_lookup_contact("0302000007"))

    @defer.inlineCallbacks
    def test_a_server_that_never_answers_costs_the_timeout_not_a_hung_read(self):
        from twisted.internet import reactor
        from twisted.internet.protocol import Factory, Protocol

        silent = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
        self.addCleanup(silent.stopListening)
        plugin = self.plugin(url=f"ldap://127.0.0.1:{silent.getHost().port}", timeout=1)
        ok = yield plugin.asttapi_startup()
        self.assertIs(ok, False)
        (line,) = self.lines("ldap_contacts: cannot read")
        self.assertIn(f"no answer from 127.0.0.1:{silent.getHost().port} within 1s (bind)", line)

    @defer.inlineCallbacks
    def test_wrong_base_dn(self):
        plugin = self.plugin(base_dn="ou=nobody,dc=example,dc=org")
        ok = yield plugin.asttapi_startup()
        self.assertIs(ok, False)
        self.assertIn("base_dn 'ou=nobody,dc=example,dc=org' does not exist on the server",
                      self.lines("ldap_contacts: cannot read")[0])


class TlsTests(LdapCase):
    @defer.inlineCallbacks
    def test_ldaps_with_the_servers_ca(self):
        plugin = self.plugin(url=self.slapd.ldaps_url, ca_file=str(self.slapd.cert))
        ok = yield plugin.asttapi_startup()
        self.assertIs(ok, True, self.lines("cannot read"))
        self.assertEqual(plugin.asttapi_lookup_contact("0302000003")["name"], "Person 3")

    @defer.inlineCallbacks
    def test_starttls_with_the_servers_ca(self):
        plugin = self.plugin(starttls=True, ca_file=str(self.slapd.cert))
        ok = yield plugin.asttapi_startup()
        self.assertIs(ok, True, self.lines("cannot read"))
        self.assertEqual(plugin.asttapi_lookup_contact("0302000003")["name"], "Person 3")

    @defer.inlineCallbacks
    def test_a_certificate_no_trusted_ca_signed_is_refused(self):
        other = self.tmp / "other"
        other.mkdir()
        _key, other_ca = make_cert(other, ec=True)
        for overrides in ({"url": self.slapd.ldaps_url}, {"starttls": True}):
            self.logged.clear()
            plugin = self.plugin(ca_file=str(other_ca), **overrides)
            ok = yield plugin.asttapi_startup()
            self.assertIs(ok, False)
            (line,) = self.lines("ldap_contacts: cannot read")
            self.assertIn("TLS with 127.0.0.1", line)
            self.assertIn("certificate", line.lower())


class HostNameTests(TestCase):
    @pytest.fixture(autouse=True)
    def _folder(self, tmp_path):
        self.tmp = tmp_path

    @defer.inlineCallbacks
    def test_a_certificate_for_another_host_is_refused(self):
        need_slapd()
        folder = self.tmp
        key, cert = make_cert(folder, names=("ldap.example.com",))
        slapd = Slapd(folder / "slapd", tls=(key, cert)).start()
        self.addCleanup(slapd.stop)
        logged: list[dict] = []
        globalLogPublisher.addObserver(logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)
        plugin = ldap_contacts.configure({"url": slapd.ldaps_url, "base_dn": Slapd.PEOPLE, "ca_file": str(cert)},
                                         None)
        self.addCleanup(plugin.asttapi_shutdown)
        ok = yield plugin.asttapi_startup()
        self.assertIs(ok, False)
        (line,) = [formatEvent(e) for e in logged if "cannot read" in formatEvent(e)]
        self.assertIn("TLS with 127.0.0.1", line)


class StockSchemaTests(TestCase):
    """OpenLDAP with its own schemas only: the default filter names AD attributes it does not know."""

    @pytest.fixture(autouse=True)
    def _folder(self, tmp_path):
        self.tmp = tmp_path

    @defer.inlineCallbacks
    def test_the_defaults_read_a_stock_openldap(self):
        slapd = Slapd(self.tmp / "slapd", ad_like=False)
        slapd.load("".join(
            f"dn: uid=s{i},{Slapd.PEOPLE}\nobjectClass: inetOrgPerson\nuid: s{i}\ncn: Stock {i}\nsn: {i}\n"
            f"o: Stock Org\ntelephoneNumber: 030 555{i:04d}\n\n" for i in range(3)))
        slapd.start()
        self.addCleanup(slapd.stop)
        plugin = ldap_contacts.configure({"url": slapd.url, "base_dn": Slapd.SUFFIX, "region": "DE"}, None)
        self.addCleanup(plugin.asttapi_shutdown)
        ok = yield plugin.asttapi_startup()
        self.assertIs(ok, True)
        self.assertEqual(plugin.directory.stats().contacts, 3)  # not the reader account, not the OU
        self.assertEqual(plugin.asttapi_lookup_contact("+49305550002"),
                         {"name": "Stock 2", "company": "Stock Org", "source": "ldap", "number": "030 5550002"})


class RefreshTests(TestCase):
    """A slapd of this test's own: it is changed and stopped."""

    @pytest.fixture(autouse=True)
    def _fixtures(self, tmp_path):
        self.tmp = tmp_path
        self.slapd = Slapd(tmp_path / "slapd")
        self.slapd.load(people_ldif(20))
        self.slapd.start()
        self.addCleanup(self.slapd.stop)
        self.logged: list[dict] = []
        globalLogPublisher.addObserver(self.logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged.append)

    def plugin(self):
        plugin = ldap_contacts.configure({
            "url": self.slapd.url, "base_dn": Slapd.PEOPLE, "bind_dn": Slapd.READER_DN,
            "bind_password_file": password_file(self.tmp, Slapd.READER_PASSWORD), "region": "DE",
            "refresh": 3600,
        }, None)
        self.addCleanup(plugin.asttapi_shutdown)
        return plugin

    @defer.inlineCallbacks
    def test_a_changed_entry_shows_after_one_refresh(self):
        plugin = self.plugin()
        yield plugin.asttapi_startup()
        self.assertEqual(plugin.asttapi_lookup_contact("0302000003")["name"], "Person 3")
        self.slapd.modify(f"dn: uid=p3,{Slapd.PEOPLE}\nchangetype: modify\nreplace: telephoneNumber\n"
                          "telephoneNumber: +49 40 7654321\n-\nreplace: displayName\ndisplayName: Person Three\n")
        self.assertEqual(plugin.asttapi_lookup_contact("0302000003")["name"], "Person 3")  # not before a read
        ok = yield plugin.directory.refresh()
        self.assertIs(ok, True)
        self.assertIsNone(plugin.asttapi_lookup_contact("0302000003"))
        self.assertEqual(plugin.asttapi_lookup_contact("0407654321"),
                         {"name": "Person Three", "company": None, "source": "ldap", "number": "+49 40 7654321"})

    @defer.inlineCallbacks
    def test_a_failed_refresh_keeps_the_index_and_says_so_once(self):
        plugin = self.plugin()
        yield plugin.asttapi_startup()
        self.slapd.stop()
        for _ in range(3):
            ok = yield plugin.directory.refresh()
            self.assertIs(ok, False)
            self.assertEqual(plugin.asttapi_lookup_contact("0302000003")["name"], "Person 3")
        (line,) = [formatEvent(e) for e in self.logged if "cannot read" in formatEvent(e)]
        self.assertIn("keeping the 20 contacts read", line)
        self.assertEqual(plugin.directory.stats().reads_failed, 3)


@pytest.mark.parametrize("settings, message", [
    ({"url": None}, "setting 'url': the directory's address .* is missing"),
    ({"url": "http://dc1"}, "setting 'url': expected ldap://host\\[:port\\] or ldaps://host\\[:port\\]"),
    ({"url": "ldap://dc1/dc=example,dc=com"}, "the base DN goes in base_dn"),
    ({"url": "ldap://dc1:99999"}, "setting 'url': bad port"),
    ({"url": "ldaps://dc1", "starttls": True}, "setting 'starttls': ldaps:// is TLS from the start"),
    ({"base_dn": ""}, "setting 'base_dn': where the people are .* is missing"),
    ({"bind_password_file": None}, "setting 'bind_password_file': needed with bind_dn"),
    ({"bind_dn": None}, "setting 'bind_dn': needed with bind_password_file"),
    ({"bind_password_file": "/nonexistent/pw"}, "setting 'bind_password_file': cannot read '/nonexistent/pw'"),
    ({"filter": "(cn=x"}, "setting 'filter': not an LDAP search filter"),
    ({"refresh": 0.5}, "setting 'refresh': expected a number of seconds >= 1, got 0.5"),
    ({"phone_attributes": []}, "setting 'phone_attributes': expected a string or a list"),
    ({"ca_file": "/nonexistent.pem"}, "setting 'ca_file': file '/nonexistent.pem' does not exist"),
    ({"page_size": 0}, "setting 'page_size': expected an integer 1-100000"),
    ({"region": "Narnia"}, "unknown phone number region"),
    ({"bind_pasword_file": "x"}, "unknown setting\\(s\\): bind_pasword_file"),
])
def test_bad_settings_stop_start_up_with_one_line(tmp_path, settings, message):
    good = {"url": "ldap://dc1.example.com", "base_dn": "dc=example,dc=com", "bind_dn": "cn=asttapi",
            "bind_password_file": password_file(tmp_path, "secret")}
    good.update(settings)
    with pytest.raises(ValueError, match=message):
        ldap_contacts.configure({k: v for k, v in good.items() if v is not None}, None)


def test_an_empty_password_file_is_an_error_that_shows_no_secret(tmp_path):
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ValueError, match="setting 'bind_password_file': '.*empty' is empty"):
        ldap_contacts.configure({"url": "ldap://dc1", "base_dn": "dc=x", "bind_dn": "cn=a",
                                 "bind_password_file": str(empty)}, None)
