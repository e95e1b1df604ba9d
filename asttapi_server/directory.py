"""A contact directory (LDAP, CardDAV) read into memory and kept fresh in the background.

Directories keep numbers the way people typed them (``+49 30 1234567``,
``030-1234567``, ``(030) 123 45 67``): no query can match the caller's
``0301234567`` against those. So a directory plugin reads the whole
directory, every number is indexed by its E.164 key
(:mod:`asttapi_server.numbers`), and each lookup is answered from memory: one
parse and one dict access, the same at 100 or 100,000 entries, on the
reactor thread, never waiting for the directory (``bench/contact_directory.py``
measures it).

:class:`DirectoryIndex` is what every such plugin shares:

- it calls the plugin's *reader* (a function returning a Deferred that fires
  with the directory's :class:`Contact` records, or ``None`` for "nothing
  changed since the last read", or fails with
  :class:`~asttapi_server.errors.DirectoryError`) once at start and then
  ``refresh`` seconds after each read ended, so two reads never overlap;
- it builds the new index off the reactor thread and swaps it in whole: a
  lookup sees the old index or the new one, never half of one;
- a read that fails keeps the previous index (at start there is none:
  lookups miss until a read succeeds) and says so in one line naming the
  plugin, the directory and the reason; repeats of it at most once every
  :data:`FAILURE_LOG_INTERVAL` seconds, then one line when reading works again;
- :meth:`DirectoryIndex.stats` is what ``/metrics`` shows (:mod:`asttapi_server.metrics`).

Several directories: each plugin keeps its own index; which answer wins is
the plugin host's one rule (the first plugin in ``[plugins] enabled`` that
knows the number, docs/plugins.md "Contacts from several sources").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, maybeDeferred
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from asttapi_server.errors import DirectoryError
from asttapi_server.hookspecs import hookimpl
from asttapi_server.numbers import DEFAULT_REGION, NumberIndex, check_region
from asttapi_server.throttle import LogThrottle

__all__ = ["Contact", "DirectoryIndex", "DirectoryPlugin", "DirectoryStats", "FAILURE_LOG_INTERVAL", "found_in", "index_contacts"]

log = Logger(namespace="asttapi_server.directory")

#: Seconds between two log lines about a directory that still cannot be read.
FAILURE_LOG_INTERVAL = 300.0

#: run_in_thread(function) -> Deferred firing with function()'s result.
ThreadRunner = Callable[[Callable[[], Any]], Deferred]
#: The plugin's reader: Deferred[Iterable[Contact] | None].
Reader = Callable[[], Deferred]


@dataclass(frozen=True, slots=True)
class Contact:
    """One person (or company) of a directory, as a screen pop shows them.

    Slotted, and shared by every number it has: the index holds the record
    itself for its first number and a small tuple for each other one.
    """

    name: str | None
    company: str | None = None
    numbers: tuple[str, ...] = ()  # as the directory stores them
    email: str | None = None

    def answer(self, number: str, source: str) -> dict[str, Any]:
        """What a lookup returns (``hookspecs.asttapi_lookup_contact``) when the caller is ``number`` (as stored)."""
        found: dict[str, Any] = {"name": self.name, "company": self.company, "source": source, "number": number}
        if self.email:
            found["email"] = self.email
        return found


def index_contacts(contacts: Iterable[Contact], region: str = DEFAULT_REGION) -> NumberIndex[Any]:
    """Every number of every contact, by its key (NumberIndex's rule when two share a number).

    An entry is the contact itself for its first number (most numbers are
    someone's first), else ``(contact, the number as stored)``: a tuple fewer
    each; :func:`found_in` reads either.
    """
    index: NumberIndex[Any] = NumberIndex(region)
    for contact in contacts:
        numbers = contact.numbers
        if numbers:
            index.add(numbers[0], contact)
            for number in numbers[1:]:
                index.add(number, (contact, number))
    return index


def found_in(entry: Any) -> tuple[Contact, str]:
    """(contact, the number as stored) of an index entry."""
    if type(entry) is tuple:
        return entry
    return entry, entry.numbers[0]


@dataclass(frozen=True, slots=True)
class DirectoryStats:
    """A directory's state for /metrics and the tests."""

    contacts: int           # contacts in the index now
    numbers: int            # numbers (keys) in the index now
    reads_ok: int
    reads_failed: int
    age: float | None       # seconds since the last read that succeeded; None: none yet
    last_error: str | None  # why the last read failed, None once one succeeded again
    reading: bool


class DirectoryIndex:
    """The in-memory index of one directory and the loop that keeps it fresh (see the module doc).

    :param name: the plugin's name, for log lines.
    :param read: the reader (see the module doc).
    :param blocking: the reader is a plain blocking function returning the
        contacts (an LDAP client, say): it runs off the reactor thread,
        together with the index build.
    :param where: the directory as the admin knows it (a URL without secrets), for log lines.
    :param refresh: seconds from the end of one read to the start of the next.
    :param source: the contacts' ``source``.
    :param clock: ``IReactorTime`` (default: the reactor).
    :param run_in_thread: how the index is built off the reactor thread
        (default: the reactor's thread pool); tests pass a synchronous one.
    """

    def __init__(
        self,
        name: str,
        read: Reader,
        *,
        blocking: bool = False,
        where: str,
        refresh: float,
        region: str = DEFAULT_REGION,
        source: str | None = None,
        clock: Any = None,
        run_in_thread: ThreadRunner | None = None,
    ) -> None:
        self.name = name
        self.where = where
        self.refresh_interval = float(refresh)
        self.region = check_region(region)
        self.source = source or name
        self._read = read
        self._blocking = blocking
        self._clock = clock
        self._run_in_thread = run_in_thread
        self._index: NumberIndex[Any] = NumberIndex(self.region)
        self._contacts = 0
        self._reads_ok = 0
        self._reads_failed = 0
        self._failures_in_a_row = 0
        self._last_ok: float | None = None
        self._last_error: str | None = None
        self._running = False
        self._reading: Deferred | None = None
        self._waiters: list[Deferred] = []
        self._next: Any = None
        self._log_throttle = LogThrottle(FAILURE_LOG_INTERVAL)

    # -- life cycle ------------------------------------------------------

    def start(self) -> Deferred:
        """Read now and every ``refresh`` seconds after; fires with True/False when the first read ended."""
        self._running = True
        return self.refresh()

    def stop(self) -> None:
        """No more reads; one under way is cancelled (a thread's work is let run out and ignored)."""
        self._running = False
        if self._next is not None and self._next.active():
            self._next.cancel()
        self._next = None
        if self._reading is not None:
            self._reading.cancel()

    def refresh(self) -> Deferred:
        """Read the directory now (or join the read under way); fires with True if it succeeded, never fails."""
        waiter: Deferred = Deferred()
        self._waiters.append(waiter)
        if self._reading is None:
            if self._next is not None and self._next.active():
                self._next.cancel()
            self._next = None
            self._reading = self._read_once()
            self._reading.addBoth(self._read_ended)  # (at once when the read did not wait)
        return waiter

    # -- lookups -----------------------------------------------------------

    def lookup(self, number: str) -> dict[str, Any] | None:
        """The contact for ``number`` as the PBX sent it, from memory; None when unknown (or not read yet)."""
        entry = self._index.lookup(number)
        if entry is None:
            return None
        contact, stored = found_in(entry)
        return contact.answer(stored, self.source)

    def stats(self) -> DirectoryStats:
        now = self._get_clock().seconds()
        return DirectoryStats(
            contacts=self._contacts,
            numbers=len(self._index),
            reads_ok=self._reads_ok,
            reads_failed=self._reads_failed,
            age=None if self._last_ok is None else max(0.0, now - self._last_ok),
            last_error=self._last_error,
            reading=self._reading is not None,
        )

    # -- one read ----------------------------------------------------------

    def _get_clock(self) -> Any:
        if self._clock is None:
            from twisted.internet import reactor

            self._clock = reactor
        return self._clock

    def in_thread(self, function: Callable[[], Any]) -> Deferred:
        """Run ``function`` off the reactor thread (the pool this index builds in); for readers."""
        if self._run_in_thread is not None:
            return self._run_in_thread(function)
        from twisted.internet import reactor, threads

        return threads.deferToThreadPool(reactor, reactor.getThreadPool(), function)

    def _build(self, contacts: Iterable[Contact] | None) -> tuple[int, NumberIndex[Any]] | None:
        """The new index (off the reactor thread); None when nothing changed."""
        if contacts is None:
            return None
        records = list(contacts)
        return len(records), index_contacts(records, self.region)

    def _read_once(self) -> Deferred:
        started = self._get_clock().seconds()
        if self._blocking:
            d = self.in_thread(lambda: self._build(self._read()))
        else:
            d = maybeDeferred(self._read)
            d.addCallback(lambda contacts: None if contacts is None else self.in_thread(lambda: self._build(contacts)))
        d.addCallbacks(self._succeeded, self._failed, callbackArgs=(started,))
        return d

    def _succeeded(self, built: tuple[int, NumberIndex] | None, started: float) -> bool:
        now = self._get_clock().seconds()
        if built is not None:
            self._contacts, self._index = built
        first = self._reads_ok == 0
        failures, self._failures_in_a_row = self._failures_in_a_row, 0
        self._reads_ok += 1
        self._last_ok = now
        self._last_error = None
        if first or failures:
            again = f" (again, after {failures} failed read{'s' if failures != 1 else ''})" if failures else ""
            log.info("{plugin}: read {contacts} contacts with {numbers} numbers from {where} in {seconds:.1f}s{again}",
                     plugin=self.name, contacts=self._contacts, numbers=len(self._index), where=self.where,
                     seconds=now - started, again=again)
        return True

    def _failed(self, failure: Failure) -> bool:
        if failure.check(CancelledError) and not self._running:
            return False  # stopped while reading
        self._reads_failed += 1
        self._failures_in_a_row += 1
        known = failure.check(DirectoryError) is not None
        reason = failure.getErrorMessage() if known else f"{failure.type.__name__}: {failure.getErrorMessage()}"
        self._last_error = reason
        held = self._log_throttle.allow(self.name, self._get_clock().seconds())
        if held is None:
            return False
        if self._reads_ok:
            keeping = f"keeping the {self._contacts} contacts read {self._age_text()} ago"
        else:
            keeping = "its callers are not found until a read succeeds"
        repeats = f" ({held} more failed reads since the last report)" if held else ""
        text = ("{plugin}: cannot read {where}: {reason}; {keeping}, next try in {refresh:g}s{repeats}")
        fields = dict(plugin=self.name, where=self.where, reason=reason, keeping=keeping,
                      refresh=self.refresh_interval, repeats=repeats)
        if known:
            log.error(text, **fields)
        else:
            log.failure(text, failure, level=LogLevel.error, **fields)
        return False

    def _age_text(self) -> str:
        age = self._get_clock().seconds() - (self._last_ok or 0.0)
        return f"{age:.0f}s" if age < 120 else f"{age / 60:.0f} min"

    def _read_ended(self, ok: Any) -> None:
        if isinstance(ok, Failure):  # a bug of ours above; the loop goes on all the same
            log.failure("{plugin}: reading {where} went wrong", ok, plugin=self.name, where=self.where)
        ok = ok is True
        self._reading = None
        waiters, self._waiters = self._waiters, []
        if self._running:
            self._next = self._get_clock().callLater(self.refresh_interval, self.refresh)
        for waiter in waiters:
            waiter.callback(ok)


class DirectoryPlugin:
    """The hooks of a plugin that answers from its :class:`DirectoryIndex` (``self.directory``).

    ``asttapi_startup`` returns the first read's Deferred, which never fails:
    start-up does not wait for it (lookups miss meanwhile), and a reload
    swaps plugins once it fired, so the new index is there. Override
    :meth:`close` to release more on shutdown.
    """

    directory: DirectoryIndex

    @hookimpl
    def asttapi_startup(self) -> Deferred:
        return self.directory.start()

    @hookimpl
    def asttapi_shutdown(self) -> Deferred | None:
        self.directory.stop()
        return self.close()

    @hookimpl
    def asttapi_lookup_contact(self, number: str) -> dict[str, Any] | None:
        return self.directory.lookup(number)

    def close(self) -> Deferred | None:
        return None
