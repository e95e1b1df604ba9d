"""Callers found in Active Directory or OpenLDAP: the company directory (Outlook's global address list).

Settings (``[plugins.ldap_contacts]``; ``url`` and ``base_dn`` are required)::

    url = "ldaps://dc1.example.com"        # ldap:// (port 389) or ldaps:// (636); a port may follow
    starttls = false                       # ldap:// only: StartTLS before the bind
    ca_file = "company-ca.pem"             # CA of the server's certificate (default: the system's CAs)
    base_dn = "dc=example,dc=com"
    bind_dn = "CN=asttapi,OU=Service,DC=example,DC=com"   # without it: an anonymous bind
    bind_password_file = "ldap-password"   # required with bind_dn
    filter = "(&(objectClass=person)(|(telephoneNumber=*)(mobile=*)))"   # default: people with a phone attribute
    phone_attributes = ["telephoneNumber", "mobile", "homePhone", "ipPhone", "otherTelephone"]
    name_attributes = ["displayName", "cn"]      # the first an entry has
    company_attributes = ["company", "o"]        # AD's company, else o
    refresh = 300                          # seconds between two reads, from 1 up
    region = "DE"                          # for numbers written without country code
    page_size = 500                        # entries per page (AD sends at most 1,000)
    timeout = 10                           # seconds to connect, and for each answer
    max_entries = 500000                   # a read with more entries fails (and keeps the index)

The plugin reads the whole directory with a paged search (RFC 2696) into
memory and refreshes it in the background (:mod:`asttapi_server.directory`):
directories store numbers in every format, which no per-call LDAP query
could match with the caller's. A lookup is answered from memory and never
waits for the server; an unreachable server, a refused bind, or a wrong
``base_dn`` is one clear log line at start-up and lookups miss until a read
succeeds; a read that fails later keeps the contacts read before.

The client library is ldap3, run off the reactor thread, rather than the
Twisted-native ldaptor (both evaluated for issue 24): ldap3 has RFC 2696
paged searches built in and widely used against Active Directory, StartTLS
and ldaps with certificate and host name checks, connect and receive
timeouts, and a maintained repository; ldaptor (no release since 2021)
needs the paged-results control BER-encoded by hand, its StartTLS checks
no certificate unless given a context and schedules on the global reactor,
and it validates answers with ``assert``. A blocking client costs one
pool thread during a read every ``refresh`` seconds, never a lookup.
"""

from __future__ import annotations

import ast
import re
import ssl
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import ldap3
from ldap3.core import exceptions as ldap_errors
from ldap3.operation.search import parse_filter

from asttapi_server.directory import Contact, DirectoryIndex, DirectoryPlugin, ThreadRunner
from asttapi_server.errors import DirectoryError
from asttapi_server.numbers import DEFAULT_REGION, check_region
from asttapi_server.plugin_host import Settings

NAME = "ldap_contacts"
SOURCE = "ldap"
PHONE_ATTRIBUTES = ("telephoneNumber", "mobile", "homePhone", "ipPhone", "otherTelephone")
NAME_ATTRIBUTES = ("displayName", "cn")
COMPANY_ATTRIBUTES = ("company", "o")
EMAIL_ATTRIBUTE = "mail"
#: RFC 2696's control, as ldap3 reports it on each page's result.
PAGED_RESULTS = "1.2.840.113556.1.4.319"


def default_filter(phone_attributes: Sequence[str]) -> str:
    """People with any of the phone attributes (AD's users and contacts, inetOrgPersons)."""
    return "(&(objectClass=person)(|" + "".join(f"({a}=*)" for a in phone_attributes) + "))"


@dataclass(frozen=True)
class LdapSettings:
    """What a read needs, checked at start-up."""

    url: str
    host: str
    port: int
    ldaps: bool
    starttls: bool
    ca_file: Path | None
    base_dn: str
    bind_dn: str | None
    password: str | None
    filter: str
    phone_attributes: tuple[str, ...]
    name_attributes: tuple[str, ...]
    company_attributes: tuple[str, ...]
    page_size: int
    timeout: int
    max_entries: int

    @property
    def where(self) -> str:
        return f"{self.url} (base {self.base_dn})"


def configure(settings: Mapping[str, Any], config: Any) -> "LdapContacts":
    s = Settings(settings, config)
    url = s.required("url", "the directory's address (ldap://host or ldaps://host)")
    parts = urlsplit(url)
    if parts.scheme not in ("ldap", "ldaps") or not parts.hostname:
        raise ValueError(f"setting 'url': expected ldap://host[:port] or ldaps://host[:port], got {url!r}")
    if parts.path not in ("", "/") or parts.query or parts.username:
        raise ValueError(f"setting 'url': only scheme, host and port, got {url!r} (the base DN goes in base_dn, "
                         "the account in bind_dn and bind_password_file)")
    try:
        port = parts.port or (636 if parts.scheme == "ldaps" else 389)
    except ValueError:
        raise ValueError(f"setting 'url': bad port in {url!r}") from None
    starttls = s.boolean("starttls", False)
    if starttls and parts.scheme == "ldaps":
        raise ValueError("setting 'starttls': ldaps:// is TLS from the start; use starttls with ldap:// only")
    ca_file = s.file("ca_file")
    base_dn = s.required("base_dn", "where the people are (e.g. \"dc=example,dc=com\")")
    bind_dn, password = s.login("bind_dn", "bind_password_file")  # neither: an anonymous bind
    phones = s.strings("phone_attributes", PHONE_ATTRIBUTES)
    search_filter = s.str("filter") or default_filter(phones)
    try:
        parse_filter(search_filter, None, True, True, None, False)
    except ldap_errors.LDAPException:
        raise ValueError(f"setting 'filter': not an LDAP search filter (RFC 4515): {search_filter!r}") from None
    names = s.strings("name_attributes", NAME_ATTRIBUTES)
    companies = s.strings("company_attributes", COMPANY_ATTRIBUTES)
    refresh = s.seconds("refresh", 300.0, minimum=1.0)
    region = check_region(s.str("region", DEFAULT_REGION))
    page_size = s.integer("page_size", 500, 1, 100_000)
    timeout = s.integer("timeout", 10, 1, 3600)  # whole seconds: ldap3 sets them as socket options
    max_entries = s.integer("max_entries", 500_000, 1)
    s.done()
    conf = LdapSettings(
        url=f"{parts.scheme}://{parts.netloc}", host=parts.hostname, port=port, ldaps=parts.scheme == "ldaps",
        starttls=starttls, ca_file=ca_file, base_dn=base_dn, bind_dn=bind_dn, password=password,
        filter=search_filter, phone_attributes=phones, name_attributes=names, company_attributes=companies,
        page_size=page_size, timeout=timeout, max_entries=max_entries,
    )
    return LdapContacts(conf, refresh=refresh, region=region)


# -- reading the directory (in a pool thread) ------------------------------


def _first(attributes: Mapping[str, Any], names: Sequence[str]) -> str | None:
    for name in names:
        for value in attributes.get(name) or ():
            text = _text(value).strip()
            if text:
                return text
    return None


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def contact_of(attributes: Mapping[str, Any], conf: LdapSettings) -> Contact | None:
    """An entry's contact, or None when it has no number."""
    numbers = tuple(dict.fromkeys(
        text for name in conf.phone_attributes for value in attributes.get(name) or ()
        if (text := _text(value).strip())
    ))
    if not numbers:
        return None
    company = _first(attributes, conf.company_attributes)
    return Contact(name=_first(attributes, conf.name_attributes), company=sys.intern(company) if company else None,
                   numbers=numbers, email=_first(attributes, (EMAIL_ATTRIBUTE,)))  # (many share a company)


def read_directory(conf: LdapSettings) -> list[Contact]:
    """Every contact the filter finds under ``base_dn``, page by page; DirectoryError says why not (blocking)."""
    tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(conf.ca_file) if conf.ca_file else None)
    server = ldap3.Server(conf.host, port=conf.port, use_ssl=conf.ldaps, tls=tls, get_info=ldap3.NONE,
                          connect_timeout=conf.timeout)
    connection = ldap3.Connection(
        server, user=conf.bind_dn, password=conf.password,
        authentication=ldap3.SIMPLE if conf.bind_dn else ldap3.ANONYMOUS,
        receive_timeout=conf.timeout, read_only=True, raise_exceptions=True, auto_referrals=False,
        check_names=False,
    )
    attributes = list(dict.fromkeys((*conf.phone_attributes, *conf.name_attributes, *conf.company_attributes,
                                     EMAIL_ATTRIBUTE)))
    contacts: list[Contact] = []
    step = "connect"
    try:
        connection.open()
        if conf.starttls:
            step = "starttls"
            connection.start_tls()
        step = "bind"
        connection.bind()
        step = "search"
        cookie: bytes | None = None
        entries = 0
        while True:
            connection.search(conf.base_dn, conf.filter, search_scope=ldap3.SUBTREE, attributes=attributes,
                              paged_size=conf.page_size, paged_cookie=cookie)
            for item in connection.response or ():
                if item.get("type") != "searchResEntry":
                    continue  # a referral to another domain: not followed
                entries += 1
                if entries > conf.max_entries:
                    raise DirectoryError(f"more than {conf.max_entries} entries match the filter: narrow "
                                         "base_dn or filter, or raise max_entries")
                contact = contact_of(item.get("attributes") or {}, conf)
                if contact is not None:
                    contacts.append(contact)
            outcome = connection.result.get("description")
            if outcome != "success":  # ldap3 raises for neither: an index of part of the directory is wrong
                raise DirectoryError(f"the server ended the search early ({outcome}) although it was paged: "
                                     "does it support RFC 2696 paged results, is a limit set for the bind_dn?")
            control = (connection.result.get("controls") or {}).get(PAGED_RESULTS)
            cookie = control["value"]["cookie"] if control else None
            if not cookie:
                break
    except ldap_errors.LDAPException as exc:
        raise DirectoryError(_why(exc, step, conf)) from None
    finally:
        try:
            connection.unbind()
        except Exception:  # already closed (the error above); nothing to release
            pass
    return contacts


def _why(exc: ldap_errors.LDAPException, step: str, conf: LdapSettings) -> str:
    """One line for the admin: what failed and what to check; never the password."""
    where = f"{conf.host}:{conf.port}"
    reason = _reason(exc)
    if "ssl" in reason.lower() or "certificate" in reason.lower():
        return f"TLS with {where} failed: {reason} (check the server's certificate, ca_file, and the host name in url)"
    if isinstance(exc, ldap_errors.LDAPSocketOpenError):
        return f"cannot connect to {where}: {reason}"
    if isinstance(exc, ldap_errors.LDAPSocketReceiveError) or "timed out" in str(exc):
        return f"no answer from {where} within {conf.timeout}s ({step})"
    if step == "starttls":
        return f"StartTLS with {where} failed: {reason}"
    if isinstance(exc, ldap_errors.LDAPInvalidCredentialsResult):
        return f"the server refused the bind as {conf.bind_dn!r}: invalid credentials (check bind_dn and " \
               "bind_password_file)"
    if step == "bind" and isinstance(exc, ldap_errors.LDAPOperationResult):
        who = f"as {conf.bind_dn!r}" if conf.bind_dn else "without bind_dn (anonymous)"
        return f"the server refused the bind {who}: {exc.description}" + (f" ({exc.message})" if exc.message else "")
    if isinstance(exc, ldap_errors.LDAPNoSuchObjectResult):
        return f"base_dn {conf.base_dn!r} does not exist on the server"
    if isinstance(exc, ldap_errors.LDAPOperationResult):
        return f"{step} failed: {exc.description}" + (f" ({exc.message})" if exc.message else "")
    return f"{step} failed: {reason}"


_PREFIXES = ("socket ssl wrapping error: ", "socket connection error while opening: ", "wrap socket error: ",
             "start_tls failed: ")


def _reason(exc: BaseException) -> str:
    """ldap3's message without its wrapping, e.g. "[Errno 111] Connection refused".

    ldap3 re-raises socket errors built from the repr of earlier ones:
    ``("('socket ssl wrapping error: [SSL: ...] ... (_ssl.c:1006)',)",)``.
    """
    text = str(exc)
    for _ in range(4):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            break
        if isinstance(value, tuple) and value:
            value = value[0]
        if not isinstance(value, str):
            break
        text = value
    for prefix in _PREFIXES:
        if text.startswith(prefix):
            text = text[len(prefix):]
    text = re.sub(r"\s*\(_ssl\.c:\d+\)", "", text)
    return text or type(exc).__name__


# -- the plugin --------------------------------------------------------------


class LdapContacts(DirectoryPlugin):
    """The configured plugin: the directory's index, and its hooks."""

    def __init__(self, conf: LdapSettings, *, refresh: float = 300.0, region: str = DEFAULT_REGION,
                 clock: Any = None, run_in_thread: ThreadRunner | None = None) -> None:
        self.conf = conf
        self.directory = DirectoryIndex(NAME, lambda: read_directory(conf), blocking=True, where=conf.where,
                                        refresh=refresh, region=region, source=SOURCE, clock=clock,
                                        run_in_thread=run_in_thread)
