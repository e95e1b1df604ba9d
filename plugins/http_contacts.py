"""Contacts from any CRM with a search endpoint over HTTP (HubSpot, Zammad, SuiteCRM, Odoo, your own).

Settings (``[plugins.http_contacts]``)::

    url = "https://crm.example.com/api/contacts?phone={number}"   # required
    token_file = "/etc/asttapi/crm.token"      # its content is {token} below
    headers = { Authorization = "Bearer {token}", Accept = "application/json" }
    name = "/results/0/name"                   # JSON pointers (RFC 6901) into the answer;
    company = "/results/0/company"             # name and company may be lists of pointers,
    link = "/results/0/url"                    # joined with a space
    id = "/results/0/id"
    link_format = "https://crm.example.com/contacts/{id}"   # when the answer has no link
    timeout = 1.5                              # seconds per request
    cache_ttl = 300                            # seconds an answer (found or not) is kept; 0: none
    cache_size = 10000                         # numbers kept at most
    max_bytes = 1048576                        # longest answer read
    region = "GB"                              # how national numbers are read
    ca_file = "office-ca.pem"                  # a private CA for https (default: the system's)
    startup_check = true                       # one test lookup at start-up, to say if the CRM answers

The URL's placeholders are the caller's number in three forms, URL-encoded:
``{number}`` E.164 (``+442079460958``), ``{national}`` (``02079460958``),
``{digits}`` (the digits as the PBX sent them); ``{token}`` is the token
file's content. Relative paths are relative to the config file.

What counts as an answer: a 2xx whose JSON has something at ``name`` is a
contact; a 404, a 204, an empty body or a JSON without a name is "not
known" (cached like a contact, so a caller the CRM does not know costs one
request per ``cache_ttl``). Anything else (5xx, another status, a timeout,
no connection, not JSON, more than ``max_bytes``) is a miss that is not
cached, counted in ``asttapi_http_contacts_requests`` and logged in one line
a minute per kind of failure: the call events never wait for the CRM (the
plugin host sends them at once and gives the CRM ``[plugins]
lookup_timeout``). Lookups of one number while its request is under way
share that request. A link that is not http(s) is dropped (the browser page
shows it to users). The caller's number and the URL's path are never
logged: a log line names the CRM by ``scheme://host:port``.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from asttapi_server.core import parties
from asttapi_server.hookspecs import hookimpl
from asttapi_server.errors import HttpError
from asttapi_server.http_client import HttpClient, HttpResponse, check_url, origin
from asttapi_server.jsonpointer import MISSING, Pointer
from asttapi_server.metrics import Histogram, family
from asttapi_server.numbers import DEFAULT_REGION, check_region, number_forms
from asttapi_server.plugin_host import Settings, resolve_path
from asttapi_server.throttle import LogThrottle

log = Logger(namespace="asttapi_plugins.http_contacts")

PLACEHOLDERS = ("number", "national", "digits", "token")
DEFAULT_TIMEOUT = 1.5
DEFAULT_CACHE_TTL = 300.0
DEFAULT_CACHE_SIZE = 10_000
DEFAULT_MAX_BYTES = 1 << 20
#: Longest name, company, link or id kept from an answer (characters).
MAX_FIELD = 256
RESULTS = ("found", "not_found", "error", "timeout", "unreachable", "bad_answer")
REQUEST_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0)


def configure(settings: Mapping[str, Any], config: Any) -> "HttpContacts":
    s = Settings(settings, config)
    url = s.str("url")
    token = s.secret_file("token_file")
    headers = s.table("headers")
    fields = {key: _pointers(s, key) for key in ("name", "company", "link", "id")}
    link_format = s.str("link_format")
    timeout = s.number("timeout", DEFAULT_TIMEOUT)
    cache_ttl = s.number("cache_ttl", DEFAULT_CACHE_TTL)
    cache_size = int(s.number("cache_size", DEFAULT_CACHE_SIZE))
    max_bytes = int(s.number("max_bytes", DEFAULT_MAX_BYTES))
    region = check_region(s.str("region", DEFAULT_REGION))
    ca_file = s.str("ca_file")
    startup_check = s.boolean("startup_check", True)
    s.done()
    if not url:
        raise ValueError("setting 'url': required, e.g. \"https://crm.example.com/api/contacts?phone={number}\"")
    if not fields["name"]:
        raise ValueError("setting 'name': required: a JSON pointer to the contact's name in the answer, "
                         "e.g. \"/results/0/name\"")
    if timeout <= 0 or cache_size < 1 or max_bytes < 1:
        raise ValueError("settings 'timeout', 'cache_size' and 'max_bytes' must be above 0")
    _check_placeholders("setting 'url'", url, PLACEHOLDERS, token is not None)
    for name, value in headers.items():
        if not isinstance(value, str):
            raise ValueError(f"setting 'headers': header {name!r}: expected a string, got {value!r}")
        _check_placeholders(f"setting 'headers': header {name!r}", value, ("token",), token is not None)
    check_url(_fill(url, {p: "1" for p in PLACEHOLDERS}), "url", holds_secret="{token}" in url)
    lookup_timeout = getattr(getattr(config, "plugins", None), "lookup_timeout", None)
    if lookup_timeout is not None and timeout > lookup_timeout:
        log.warn("http_contacts: timeout {timeout} s is longer than [plugins] lookup_timeout {lookup} s; "
                 "pops wait at most lookup_timeout, later answers only fill the cache",
                 timeout=timeout, lookup=lookup_timeout)
    return HttpContacts(
        url, headers={k: str(v) for k, v in headers.items()}, token=token, fields=fields,
        link_format=link_format, timeout=timeout, cache_ttl=cache_ttl, cache_size=cache_size,
        max_bytes=max_bytes, region=region,
        ca_file=resolve_path(ca_file, config) if ca_file else None, startup_check=startup_check,
    )


def _pointers(s: Settings, key: str) -> tuple[Pointer, ...]:
    value = s.strings(key, None) or ()
    try:
        return tuple(Pointer(v) for v in value)
    except ValueError as exc:
        raise ValueError(f"setting {key!r}: {exc}") from None


def _check_placeholders(where: str, template: str, known: tuple[str, ...], have_token: bool) -> None:
    import string

    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise ValueError(f"{where}: {exc} (write a literal brace as {{{{ or }}}})") from None
    for name in names:
        if name not in known:
            raise ValueError(f"{where}: unknown placeholder {{{name}}} (known: "
                             + ", ".join("{" + p + "}" for p in known) + ")")
        if name == "token" and not have_token:
            raise ValueError(f"{where}: uses {{token}} but token_file is not set")


def _fill(template: str, values: Mapping[str, str]) -> str:
    return template.format(**values)


def _text(value: Any) -> str | None:
    """A JSON scalar as text (None for null, objects, lists, booleans, empty strings), cut to MAX_FIELD."""
    if isinstance(value, bool) or value is None or value is MISSING:
        return None
    if isinstance(value, (int, float)):
        value = str(value)
    if not isinstance(value, str):
        return None
    value = " ".join(value.split())
    return value[:MAX_FIELD] or None


class _Shared:
    """One request under way for a URL and the lookups waiting for it."""

    __slots__ = ("waiters",)

    def __init__(self) -> None:
        self.waiters: list[Deferred] = []


class HttpContacts:
    """The configured plugin; see the module docstring."""

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        token: str | None = None,
        fields: Mapping[str, tuple[Pointer, ...]],
        link_format: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        cache_ttl: float = DEFAULT_CACHE_TTL,
        cache_size: int = DEFAULT_CACHE_SIZE,
        max_bytes: int = DEFAULT_MAX_BYTES,
        region: str = DEFAULT_REGION,
        ca_file: Path | None = None,
        startup_check: bool = True,
        reactor: Any = None,
        clock: Any = None,
    ) -> None:
        self.url = url
        self.token = token
        self.headers = {k: _fill(v, {"token": token or ""}) for k, v in (headers or {}).items()}
        self.headers.setdefault("Accept", "application/json")
        self.fields = fields
        self.link_format = link_format
        self.timeout = timeout
        self.cache_ttl = cache_ttl
        self.cache_size = cache_size
        self.max_bytes = max_bytes
        self.region = region
        self.ca_file = ca_file
        self.startup_check = startup_check
        self.origin = origin(_fill(url, {p: "x" for p in PLACEHOLDERS}))
        self._reactor = reactor
        self._clock = clock  # cache expiry and log throttling; the reactor unless a test gives one
        self._client: HttpClient | None = None
        self.cache: OrderedDict[str, tuple[float, dict | None]] = OrderedDict()
        self.shared: dict[str, _Shared] = {}
        self.requests = dict.fromkeys(RESULTS, 0)
        self.cache_counts = dict.fromkeys(("hit", "miss", "shared"), 0)
        self.request_seconds = Histogram(REQUEST_BUCKETS)
        self._log_throttle = LogThrottle()
        self._check_under_way: Deferred | None = None

    # -- plumbing --------------------------------------------------------------

    @property
    def reactor(self) -> Any:
        if self._reactor is None:
            from twisted.internet import reactor

            self._reactor = reactor
        return self._reactor

    def now(self) -> float:
        return (self._clock or self.reactor).seconds()

    @property
    def client(self) -> HttpClient:
        if self._client is None:
            self._client = HttpClient(reactor=self.reactor, timeout=self.timeout, max_bytes=self.max_bytes,
                                      ca_file=self.ca_file, persistent=True, max_per_host=4)
        return self._client

    def url_for(self, number: str) -> str | None:
        """The request URL for ``number``, or None when it is no phone number."""
        forms = number_forms(number, self.region)
        if forms is None:
            return None
        values = {"number": forms["e164"], "national": forms["national"], "digits": forms["digits"],
                  "token": self.token or ""}
        return _fill(self.url, {k: quote(v, safe="") for k, v in values.items()})

    # -- hooks -------------------------------------------------------------------

    @hookimpl
    def asttapi_startup(self) -> None:
        if self.startup_check:
            self._check()

    @hookimpl
    def asttapi_shutdown(self) -> Any:
        if self._check_under_way is not None:
            self._check_under_way.cancel()  # the start-up check says nothing more
        if self._client is not None:
            return self._client.close()
        return None

    @hookimpl
    def asttapi_lookup_contact(self, number: str, callinfo: Mapping[str, Any]) -> Deferred:
        if parties.HIDING.intersection(callinfo.get("calleridflags") or ()):
            return succeed(None)  # a withheld caller reaches no CRM, whatever number the PBX let slip
        url = self.url_for(number)
        if url is None:
            return succeed(None)
        now = self.now()
        cached = self.cache.get(url)
        if cached is not None:
            expires, contact = cached
            if expires > now:
                self.cache.move_to_end(url)
                self.cache_counts["hit"] += 1
                return succeed(dict(contact) if contact else None)
            del self.cache[url]
        waiter: Deferred = Deferred(lambda d: self._leave(url, d))
        shared = self.shared.get(url)
        if shared is not None:
            self.cache_counts["shared"] += 1
            shared.waiters.append(waiter)
            return waiter
        self.cache_counts["miss"] += 1
        shared = self.shared[url] = _Shared()
        shared.waiters.append(waiter)
        self._ask(url).addBoth(self._answered, url)
        return waiter

    @hookimpl
    def asttapi_metrics(self) -> list:
        return [
            family("asttapi_http_contacts_requests", {(k,): v for k, v in self.requests.items()}),
            family("asttapi_http_contacts_request_seconds", {(): self.request_seconds}),
            family("asttapi_http_contacts_cache", {(k,): v for k, v in self.cache_counts.items()}),
            family("asttapi_http_contacts_cached", {(): len(self.cache)}),
        ]

    # -- one request -------------------------------------------------------------

    def _ask(self, url: str) -> Deferred:
        """The CRM's answer for ``url`` as (result, contact or None, detail); never fails."""
        started = self.reactor.seconds()
        d = self.client.request("GET", url, headers=self.headers)

        def answered(answer: HttpResponse) -> tuple[str, dict | None, str]:
            self.request_seconds.observe(self.reactor.seconds() - started)
            return self._read(answer)

        d.addCallbacks(answered, self._failure)
        return d.addErrback(lambda _: ("error", None, "cancelled"))

    @staticmethod
    def _failure(failure: Failure) -> Any:
        """A request that got no answer, as (result, None, detail); a cancelled one stays a failure."""
        if failure.check(CancelledError):
            return failure
        if failure.check(HttpError):
            kind = failure.value.kind
            result = "unreachable" if kind in ("unreachable", "tls") else kind if kind == "timeout" else "bad_answer"
            return result, None, failure.value.reason
        return "error", None, failure.getErrorMessage()[:200]

    def _read(self, answer: HttpResponse) -> tuple[str, dict | None, str]:
        code = answer.code
        if code in (404, 204) or (200 <= code < 300 and not answer.body.strip()):
            return "not_found", None, f"HTTP {code}"
        if not 200 <= code < 300:
            return "error", None, f"HTTP {code}" + (" (check headers and token_file)" if code in (401, 403) else "")
        try:
            document = json.loads(answer.body)
        except (UnicodeDecodeError, ValueError, RecursionError):
            return "bad_answer", None, f"HTTP {code} but the answer is not JSON"
        contact = self.contact_of(document)
        return ("found", contact, "") if contact else ("not_found", None, f"HTTP {code}, no name in the answer")

    def contact_of(self, document: Any) -> dict | None:
        """The contact the pointers find in ``document``, or None without a name."""
        def joined(pointers: tuple[Pointer, ...]) -> str | None:
            parts = [_text(p.resolve(document)) for p in pointers]
            return " ".join(p for p in parts if p)[:MAX_FIELD] or None

        name = joined(self.fields["name"])
        if not name:
            return None
        contact: dict[str, Any] = {"name": name}
        company = joined(self.fields["company"])
        if company:
            contact["company"] = company
        raw_id = self.fields["id"][0].resolve(document) if self.fields["id"] else MISSING
        if isinstance(raw_id, (str, int)) and not isinstance(raw_id, bool) and _text(raw_id):
            contact["id"] = raw_id if isinstance(raw_id, int) else _text(raw_id)
        link = joined(self.fields["link"])
        if not link and self.link_format and "id" in contact:
            link = self.link_format.replace("{id}", quote(str(contact["id"]), safe=""))
        if link and urlsplit(link).scheme in ("http", "https"):
            contact["link"] = link
        return contact

    def _answered(self, outcome: tuple[str, dict | None, str], url: str) -> None:
        result, contact, detail = outcome
        self.requests[result] += 1
        if result in ("found", "not_found") and self.cache_ttl > 0:
            self.cache[url] = (self.now() + self.cache_ttl, contact)
            self.cache.move_to_end(url)
            while len(self.cache) > self.cache_size:
                self.cache.popitem(last=False)
        elif result not in ("found", "not_found"):
            self._complain(result, detail)
        shared = self.shared.pop(url, None)
        for waiter in shared.waiters if shared is not None else ():
            if not waiter.called:
                waiter.callback(dict(contact) if contact else None)

    def _leave(self, url: str, waiter: Deferred) -> None:
        """A lookup gave up (the host's timeout): the request goes on and fills the cache."""
        shared = self.shared.get(url)
        if shared is not None and waiter in shared.waiters:
            shared.waiters.remove(waiter)

    def _complain(self, result: str, detail: str) -> None:
        held = self._log_throttle.allow(result, self.now())
        if held is None:
            return
        log.warn("http_contacts: CRM at {origin}: {detail}; the lookup missed "
                 "({held} more like it since the last report)", origin=self.origin, detail=detail, held=held)

    # -- start-up ------------------------------------------------------------------

    def _check(self) -> None:
        """One lookup of an example number at start-up, reported in one line (start-up does not wait)."""
        import phonenumbers

        example = phonenumbers.example_number(self.region)
        number = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164) if example else "+15550100"
        url = self.url_for(number)
        if url is None:  # pragma: no cover - libphonenumber's own example always parses
            return

        def report(outcome: tuple[str, dict | None, str]) -> None:
            result, _contact, detail = outcome
            if result in ("found", "not_found"):
                log.info("http_contacts: CRM at {origin} answers ({detail} for a test lookup)",
                         origin=self.origin, detail=detail or "a contact")
            elif "401" in detail or "403" in detail:
                log.error("http_contacts: CRM at {origin} refuses our credentials ({detail}); "
                          "lookups miss until it accepts them", origin=self.origin, detail=detail)
            elif result in ("unreachable", "timeout"):
                log.error("http_contacts: cannot reach the CRM at {origin} ({detail}); "
                          "lookups miss until it answers", origin=self.origin, detail=detail)
            else:
                log.warn("http_contacts: CRM at {origin} answered a test lookup with {detail}; "
                         "check url and the JSON pointers", origin=self.origin, detail=detail)

        d = self._check_under_way = self.client.request("GET", url, headers=self.headers)
        d.addCallbacks(self._read, self._failure)

        def done(outcome: Any) -> None:
            self._check_under_way = None
            if isinstance(outcome, tuple):
                report(outcome)

        d.addBoth(done)
