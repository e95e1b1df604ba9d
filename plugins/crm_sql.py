"""CRM lookup against a SQL database through the DB-API (SQLite by default).

Settings (``[plugins.crm_sql]``, all optional)::

    database = "crm.sqlite"     # SQLite file, opened read-only
    demo = true                 # instead: the bundled demo CRM (invented contacts)
    driver = "sqlite3"          # any DB-API module; with another driver use `connect`
    connect = { host = "db", dbname = "crm", user = "tapi" }   # keyword args of driver.connect()
    query = "SELECT id, first_name, last_name, company, phone, mobile FROM contacts"
    refresh = 300               # seconds between reloads of the index (0: load once)
    lookup_query = ""           # per-lookup mode instead of the index, see below
    link = "https://crm.example/contacts/{id}"   # a column-name template
    region = "GB"               # for national numbers without country code

With neither ``database`` nor ``connect`` the plugin runs on the bundled demo
CRM (``demo_crm.sql``, invented contacts), but only on the demo PBX or with
``demo = true``; on a real PBX it stops start-up with one line saying what to
set (``Settings.demo_data``).

Strategy: the plugin runs ``query`` at start-up and indexes every number it
returns by its E.164 key (:mod:`asttapi_server.numbers`), then answers each
lookup from memory in O(1) and reloads in the background of a lookup once the
index is ``refresh`` seconds old. A CRM stores numbers the way users typed
them (``+44 (0)20 7946 0100``, ``020-7946-0200 ext. 12``); SQL cannot compare
those with the caller's ``02079460100``, and no set of candidate strings
covers every way of writing a number, while normalising both sides in Python
always matches. 10,000 contacts index in well under a second (see
``bench/contact_lookup.py``); a contact added in the CRM pops after at most
``refresh`` seconds.

For a CRM too large to load, or one that keeps a normalised column, set
``lookup_query``: it runs on every lookup with named parameters ``:e164``
(``+442079460958``), ``:national`` (``02079460958``), ``:digits`` (the digits
as the PBX sent them) and ``:raw``; rows whose number columns do not match
the caller are discarded.

Result columns (by name, case-insensitive): ``name``, or ``first_name`` and
``last_name``; ``company``; ``id``; ``link`` (else the ``link`` template);
every column whose name contains ``phone``, ``mobile`` or ``number`` holds a
number to match.
"""

from __future__ import annotations

import importlib
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from twisted.logger import Logger

from asttapi_server.hookspecs import hookimpl
from asttapi_server.numbers import (
    DEFAULT_REGION,
    NumberIndex,
    base_key,
    check_region,
    number_forms,
    number_key,
)
from asttapi_server.plugin_host import Settings, blocking, resolve_path

log = Logger(namespace="asttapi_plugins.crm_sql")

DEFAULT_QUERY = "SELECT id, first_name, last_name, company, phone, mobile FROM contacts"
DEFAULT_REFRESH = 300.0
DEMO_SCRIPT = Path(__file__).with_name("demo_crm.sql")
DEMO_LINK = "https://crm.example/contacts/{id}"
SOURCE = "crm"

_NUMBER_COLUMN = re.compile(r"phone|mobile|number", re.IGNORECASE)


def configure(settings: Mapping[str, Any], config: Any) -> "CrmPlugin":
    s = Settings(settings, config)
    database = s.str("database")
    driver = s.str("driver", "sqlite3")
    connect_kwargs = s.table("connect")
    query = s.str("query", DEFAULT_QUERY)
    lookup_query = s.str("lookup_query") or None
    refresh = s.number("refresh", DEFAULT_REFRESH)
    link = s.str("link")
    region = check_region(s.str("region", DEFAULT_REGION))
    configured = database is not None or bool(connect_kwargs) or driver != "sqlite3"
    demo = s.demo_data("plugins.crm_sql", configured=configured,
                       needs="database (an SQLite file) or driver and connect")
    s.done()

    if demo:
        connect = _demo_connection()
        link = link or DEMO_LINK
        refresh = 0.0
        log.info("crm_sql uses the bundled demo CRM, invented contacts ({script})", script=str(DEMO_SCRIPT))
    elif driver == "sqlite3" and not connect_kwargs:
        path = resolve_path(database, config)
        if not path.is_file():
            raise ValueError(f"setting 'database': SQLite file {str(path)!r} does not exist")
        uri = path.resolve().as_uri() + "?mode=ro"
        connect = lambda: sqlite3.connect(uri, uri=True, check_same_thread=False)  # noqa: E731
    else:
        try:
            module = importlib.import_module(driver)
        except ImportError as exc:
            raise ValueError(f"setting 'driver': cannot import DB-API module {driver!r}: {exc}") from exc
        if database is not None:
            connect_kwargs.setdefault("database", database)
        connect = lambda: module.connect(**connect_kwargs)  # noqa: E731
    return CrmPlugin(connect, query=query, lookup_query=lookup_query, refresh=refresh, link=link, region=region)


def _demo_connection() -> Callable[[], Any]:
    """Connections to one in-memory database built from demo_crm.sql.

    A shared-cache memory database lives while one connection is open; the
    first one is kept for the life of the plugin.
    """
    uri = f"file:asttapi_demo_crm_{uuid.uuid4().hex}?mode=memory&cache=shared"
    keeper = sqlite3.connect(uri, uri=True, check_same_thread=False)
    keeper.executescript(DEMO_SCRIPT.read_text(encoding="utf-8"))

    def connect() -> sqlite3.Connection:
        return sqlite3.connect(uri, uri=True, check_same_thread=False)

    connect.keeper = keeper  # type: ignore[attr-defined]  # keeps the database alive
    return connect


class CrmPlugin:
    """The configured plugin: an index of the CRM's numbers (or a per-lookup query)."""

    def __init__(
        self,
        connect: Callable[[], Any],
        *,
        query: str = DEFAULT_QUERY,
        lookup_query: str | None = None,
        refresh: float = DEFAULT_REFRESH,
        link: str | None = None,
        region: str = DEFAULT_REGION,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._connect = connect
        self.query = query
        self.lookup_query = lookup_query
        self.refresh = refresh
        self.link = link
        self.region = check_region(region)
        self._monotonic = monotonic
        self._reload_lock = threading.Lock()
        self.index: NumberIndex[dict] = NumberIndex(self.region)
        self.loaded_at = monotonic()
        if lookup_query is None:
            self.index = self.load()  # errors here stop start-up, naming the plugin

    # -- loading -------------------------------------------------------

    def _rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict]:
        connection = self._connect()
        try:
            cursor = connection.cursor()
            try:
                if params is None:
                    cursor.execute(sql)
                else:
                    cursor.execute(sql, params)
                columns = [d[0].lower() for d in cursor.description or ()]
                return [dict(zip(columns, row)) for row in cursor.fetchall()]
            finally:
                cursor.close()
        finally:
            connection.close()

    def load(self) -> NumberIndex[dict]:
        """Run ``query`` and index every number of every row."""
        index: NumberIndex[dict] = NumberIndex(self.region)
        rows = self._rows(self.query)
        if rows and not any(_NUMBER_COLUMN.search(c) for c in rows[0]):
            raise ValueError(f"query returns no number column (phone/mobile/number): {list(rows[0])}")
        for row in rows:
            for column, value in row.items():
                if value and _NUMBER_COLUMN.search(column):
                    index.add(str(value), self._contact(row, str(value)))
        return index

    def _contact(self, row: Mapping[str, Any], number: str) -> dict:
        name = row.get("name")
        if not name:
            name = " ".join(str(row[k]) for k in ("first_name", "last_name") if row.get(k)) or None
        contact = {"name": name, "company": row.get("company"), "source": SOURCE, "number": number}
        if row.get("id") is not None:
            contact["id"] = row["id"]
        link = row.get("link")
        if not link and self.link:
            try:
                link = self.link.format(**row)
            except (KeyError, IndexError, ValueError):
                link = None
        if link:
            contact["link"] = str(link)
        return contact

    def _maybe_refresh(self) -> None:
        if not self.refresh or self._monotonic() - self.loaded_at < self.refresh:
            return
        if not self._reload_lock.acquire(blocking=False):
            return  # another lookup is reloading; answer from the current index
        try:
            started = self._monotonic()
            try:
                self.index = self.load()
            except Exception as exc:
                log.error("crm_sql could not reload the CRM, keeping the previous index: {error}", error=str(exc))
            self.loaded_at = started
        finally:
            self._reload_lock.release()

    # -- lookup --------------------------------------------------------

    def find(self, number: str) -> dict | None:
        """The contact for ``number``, blocking (call it in a thread)."""
        if self.lookup_query is not None:
            return self._query(number)
        self._maybe_refresh()
        found = self.index.lookup(number)
        return dict(found) if found is not None else None

    def _query(self, number: str) -> dict | None:
        forms = number_forms(number, self.region)
        if forms is None:
            return None
        for row in self._rows(self.lookup_query, forms):
            stored = [str(v) for c, v in row.items() if v and _NUMBER_COLUMN.search(c)]
            if not stored:
                return self._contact(row, number)  # the query matched; nothing to verify
            for value in stored:
                key = number_key(value, self.region)
                if key is not None and base_key(key) == forms["e164"]:
                    return self._contact(row, value)
        return None

    @hookimpl
    @blocking
    def asttapi_lookup_contact(self, number, callinfo):
        return self.find(number)
