"""Callers found in a shared CardDAV address book (Nextcloud, Radicale, iCloud, SOGo, Baïkal ...).

Settings (``[plugins.carddav_contacts]``; ``url`` is required)::

    url = "https://cloud.example.com/remote.php/dav/addressbooks/users/tapi/contacts/"   # the address book
    username = "tapi"                 # basic authentication; without it: none
    password_file = "carddav-password"   # required with username (an app password, for Nextcloud)
    refresh = 300                     # seconds between two syncs, from 1 up
    region = "DE"                     # for numbers written without country code
    ca_file = "company-ca.pem"        # CA of the server's certificate (default: the system's CAs)
    timeout = 30                      # seconds one request may take, answer included

The plugin keeps the address book's cards in memory and syncs them in the
background (:mod:`asttapi_server.directory`), incrementally: a sync asks for
the changes since the last one (RFC 6578 ``sync-collection`` with the sync
token) and fetches only the cards added or changed (``addressbook-multiget``);
a server without sync support, or one that no longer knows the token
(``DAV:valid-sync-token``), is read whole with ``PROPFIND`` and only cards
whose ETag changed are fetched (:mod:`asttapi_server.carddav`). vCards 3 and
4 (and 2.1) are read by :mod:`asttapi_server.vcard`. HTTP is Twisted's Agent
(:mod:`asttapi_server.http_client`): certificates checked, a timeout per
request, answers at most :data:`MAX_RESPONSE_BYTES`, no redirects followed.
Lookups are answered from memory and never wait for the server; an
unreachable server or a refused login is one clear log line, and lookups
miss (at start) or use the cards of the last sync that worked.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import Logger

from asttapi_server.carddav import (
    CardDavError,
    Member,
    addressbook_multiget,
    href_key,
    is_invalid_sync_token,
    parse_multistatus,
    propfind_members,
    sync_collection,
)
from asttapi_server.directory import Contact, DirectoryIndex, DirectoryPlugin, ThreadRunner
from asttapi_server.errors import DirectoryError, HttpError
from asttapi_server.http_client import HttpClient, HttpResponse, basic_auth, check_url
from asttapi_server.numbers import DEFAULT_REGION, check_region
from asttapi_server.plugin_host import Settings
from asttapi_server.vcard import VCardError, read_vcard

log = Logger(namespace="asttapi_plugins.carddav_contacts")

NAME = "carddav_contacts"
SOURCE = "carddav"
#: The largest answer accepted (a member list of ~200,000 cards, a batch of cards with photos).
MAX_RESPONSE_BYTES = 64 << 20
#: Cards fetched per addressbook-multiget.
BATCH = 50
#: sync-collection answers that mean "this server has no sync" (a 403 or 409 with
#: DAV:valid-sync-token means "that token is no longer valid" instead).
NO_SYNC = (400, 403, 405, 409, 415, 422, 501)
#: Rounds of a truncated sync-collection (status 507: "more to come") followed in one sync.
MAX_ROUNDS = 100

XML = {"Content-Type": "application/xml; charset=utf-8"}


def configure(settings: Mapping[str, Any], config: Any) -> "CardDavContacts":
    s = Settings(settings, config)
    url = check_url(s.required("url", "the address book's URL"))
    if urlsplit(url).query:
        raise ValueError(f"setting 'url': expected the address book's URL without a query, got {url!r}")
    if not url.endswith("/"):
        url += "/"  # a collection's URL; relative hrefs resolve against it
    username, password = s.login("username", "password_file")
    refresh = s.seconds("refresh", 300.0, minimum=1.0)
    region = check_region(s.str("region", DEFAULT_REGION))
    ca_file = s.file("ca_file")
    timeout = s.seconds("timeout", 30.0, minimum=1.0)
    s.done()
    headers = {"User-Agent": "asttapi-server carddav_contacts"}
    if username:
        headers["Authorization"] = basic_auth(username, password or "")
    client = HttpClient(ca_file=ca_file, timeout=timeout, max_bytes=MAX_RESPONSE_BYTES, headers=headers)
    return CardDavContacts(url, client, username=username, refresh=refresh, region=region)


@dataclass(frozen=True)
class Card:
    href: str
    etag: str | None
    contact: Contact | None  # None: the card could not be read (kept, so it is not fetched again unchanged)


@dataclass(frozen=True)
class SyncReport:
    """What the last sync did (for the tests and the debug log)."""

    mode: str        # "initial" (sync-collection without token), "incremental" (with one), "full" (PROPFIND)
    listed: int      # members the server named
    fetched: int     # cards fetched
    removed: int     # cards gone
    requests: int


class AddressBookSync:
    """The address book's cards as last synced, and how to sync them (one sync at a time: DirectoryIndex's rule)."""

    def __init__(self, url: str, client: HttpClient, *, username: str | None,
                 in_thread: Callable[[Callable[[], Any]], Deferred]) -> None:
        self.url = url
        self.client = client
        self.username = username
        self.in_thread = in_thread
        self.key = href_key(url, url)
        self.token: str | None = None
        self.sync_supported: bool | None = None  # None: not asked yet
        self.cards: dict[str, Card] = {}
        self.synced = False
        self.last: SyncReport | None = None
        self._requests = 0

    @inlineCallbacks
    def sync(self) -> Any:
        """Deferred: the contacts after this sync, or None if nothing changed; fails with DirectoryError."""
        self._requests = 0
        mode, members, token = yield self._changes()
        seen: set[str] = set()
        wanted: dict[str, str] = {}
        removed = 0
        for member in members:
            key = href_key(member.href, self.url)
            if key == self.key or member.collection:
                continue
            if member.status == 404:
                removed += self.cards.pop(key, None) is not None
                continue
            if member.status != 200:
                continue
            seen.add(key)
            known = self.cards.get(key)
            if known is None or member.etag is None or known.etag != member.etag:
                wanted[key] = member.href
        if mode != "incremental":  # a whole listing: what it does not name is gone
            for key in [k for k in self.cards if k not in seen]:
                del self.cards[key]
                removed += 1
        yield self._fetch(wanted)
        self.token = token
        changed = bool(wanted or removed) or not self.synced
        self.synced = True
        self.last = SyncReport(mode=mode, listed=len(members), fetched=len(wanted), removed=removed,
                               requests=self._requests)
        log.debug("{plugin}: {mode} sync of {url}: {listed} listed, {fetched} fetched, {removed} removed, "
                  "{requests} requests", plugin=NAME, url=self.url, **self.last.__dict__)
        if not changed:
            return None
        return [card.contact for card in self.cards.values() if card.contact is not None]

    @inlineCallbacks
    def _changes(self) -> Any:
        """(mode, members, new token): the changes since the last sync, or the whole listing."""
        if self.sync_supported is not False:
            members: list[Member] = []
            token = self.token
            for _round in range(MAX_ROUNDS):
                response = yield self._request("REPORT", sync_collection(token), {"Depth": "0", **XML})
                if response.code != 207:
                    break
                answer = self._multistatus("REPORT sync-collection", response)
                if answer.sync_token is None:
                    break  # not an answer to sync-collection: treat as no sync support
                self.sync_supported = True
                truncated = any(m.status == 507 and href_key(m.href, self.url) == self.key for m in answer.members)
                members += answer.members
                token = answer.sync_token
                if not truncated:
                    return ("incremental" if self.token else "initial"), members, token
            else:
                raise DirectoryError(f"the server's sync answers were still truncated after {MAX_ROUNDS} rounds")
            if self.token and response.code in (403, 409) and is_invalid_sync_token(response.body):
                log.info("{plugin}: {url} no longer knows the sync token; reading the whole address book",
                         plugin=NAME, url=self.url)
                self.token = None
                return (yield self._changes())
            if self.sync_supported or (response.code != 207 and response.code not in NO_SYNC):
                raise self._refused("REPORT sync-collection", response)  # (it did sync before: not "no sync")
            log.info("{plugin}: {url} has no sync-collection (answered {code}); syncing with PROPFIND",
                     plugin=NAME, url=self.url, code=response.code)
            self.sync_supported = False
        response = yield self._request("PROPFIND", propfind_members(), {"Depth": "1", **XML})
        if response.code != 207:
            raise self._refused("PROPFIND", response)
        return "full", list(self._multistatus("PROPFIND", response).members), None

    @inlineCallbacks
    def _fetch(self, wanted: dict[str, str]) -> Any:
        """The cards at these hrefs, BATCH at a time; vCards are read off the reactor thread."""
        keys = list(wanted)
        unreadable: list[str] = []
        for start in range(0, len(keys), BATCH):
            hrefs = [wanted[k] for k in keys[start:start + BATCH]]
            response = yield self._request("REPORT", addressbook_multiget(hrefs), XML)
            if response.code != 207:
                raise self._refused("REPORT addressbook-multiget", response)
            members = self._multistatus("REPORT addressbook-multiget", response).members
            cards = yield self.in_thread(lambda members=members: [_card(m) for m in members])
            for member, (card, problem) in zip(members, cards):
                key = href_key(member.href, self.url)
                if member.status == 404:
                    self.cards.pop(key, None)
                elif card is not None:
                    self.cards[key] = card
                    if problem:
                        unreadable.append(f"{member.href}: {problem}")
        if unreadable:
            log.warn("{plugin}: {count} card(s) could not be read and are left out, e.g. {problem}",
                     plugin=NAME, count=len(unreadable), problem=unreadable[0])

    def _request(self, method: str, body: bytes, headers: dict[str, str]) -> Deferred:
        self._requests += 1
        d = self.client.request(method, self.url, headers=headers, body=body)

        def failed(failure: Any) -> Any:
            failure.trap(HttpError)
            raise DirectoryError(failure.getErrorMessage())

        return d.addErrback(failed)

    def _multistatus(self, what: str, response: HttpResponse) -> Any:
        try:
            return parse_multistatus(response.body)
        except CardDavError as exc:
            raise DirectoryError(f"{what}: {exc}") from None

    def _refused(self, what: str, response: HttpResponse) -> DirectoryError:
        code = response.code
        if code == 401:
            if self.username:
                return DirectoryError(f"the server refused the login as {self.username!r} (401): check username "
                                      "and password_file")
            return DirectoryError("the server wants a login (401): set username and password_file")
        if code == 403:
            return DirectoryError(f"the server refused {what} (403): may {self.username or 'this client'!r} read "
                                  "this address book?")
        if code == 404:
            return DirectoryError("no address book at this URL (404)")
        if 300 <= code < 400:
            return DirectoryError(f"the server redirects ({code}) to {response.header('Location') or '?'}: set url to "
                                  "the address book's own URL")
        return DirectoryError(f"the server answered {what} with {code}")


def _card(member: Member) -> tuple[Card | None, str | None]:
    """A multiget member's card (contact None if unreadable) and the problem, off the reactor thread."""
    if member.status != 200:
        return None, None
    if member.address_data is None:
        return Card(member.href, member.etag, None), "no address-data in the answer"
    try:
        return Card(member.href, member.etag, read_vcard(member.address_data)), None
    except VCardError as exc:
        return Card(member.href, member.etag, None), str(exc)


class CardDavContacts(DirectoryPlugin):
    """The configured plugin: the address book's index, and its hooks."""

    def __init__(self, url: str, client: HttpClient, *, username: str | None = None, refresh: float = 300.0,
                 region: str = DEFAULT_REGION, clock: Any = None, run_in_thread: ThreadRunner | None = None) -> None:
        self.client = client
        self.sync = AddressBookSync(url, client, username=username,
                                    in_thread=lambda function: self.directory.in_thread(function))
        self.directory = DirectoryIndex(NAME, self.sync.sync, where=url, refresh=refresh, region=region,
                                        source=SOURCE, clock=clock, run_in_thread=run_in_thread)

    def close(self) -> Deferred:
        return self.client.close()
