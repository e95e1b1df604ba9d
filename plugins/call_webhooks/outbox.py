"""The durable outbox: every webhook event in SQLite until its receiver has acknowledged it.

Why SQLite here, when the call store is one JSON file: the call store holds
the live calls, always written whole; the outbox is a log that grows by one
row per event and shrinks by one per acknowledgement, may hold a day of
events while a receiver is down, and must come back in order after a crash.
SQLite appends and marks rows in place, atomically, and WAL mode lets one
commit be one sequential write.

* **Writes never run on the reactor thread.** :meth:`Outbox.add` and
  :meth:`Outbox.settled` only queue the change; a single writer thread (its
  own one-thread pool, so one connection is used by one thread at a time)
  commits everything queued in one transaction, at once when idle and
  together while a commit is under way. So a burst of events is one commit,
  and the reactor pays a list append per event (``bench/webhook_outbox.py``
  measures both). ``synchronous=FULL``: a commit is on disk when it returns.
* **What survives**: a crash loses only events of the commit under way and
  of the reactor turn before it (milliseconds); a restart loads every
  pending event, in the order they were added. An acknowledgement recorded
  after a crash's last commit is lost: that event is sent again, with the
  same event id (receivers dedupe by it; see the plugin's docs).
* **Each event once**: ``(target, event_id)`` is unique. The ids of events
  already added (pending, sent or dropped) within ``keep`` seconds are
  remembered in memory, so an event made again after a restart (Zammad's
  ``callId:newCall`` of a call that was ringing) is not sent twice.
  Settled rows lose their body at once and are deleted after ``keep``.
* The file is created ``0600`` (bodies hold caller ids) in a folder created
  ``0700``. A file that cannot be opened stops start-up with one line; a
  write that fails later is logged (once a minute) and retried, the events
  staying in memory meanwhile.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.logger import Logger

from asttapi_server.throttle import LogThrottle

log = Logger(namespace="asttapi_plugins.call_webhooks")

PENDING, SENT, DROPPED = 0, 1, 2
SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    target TEXT NOT NULL,
    event_id TEXT NOT NULL,
    call TEXT NOT NULL,
    kind TEXT NOT NULL,
    created REAL NOT NULL,
    content_type TEXT NOT NULL,
    body BLOB,
    state INTEGER NOT NULL DEFAULT 0,
    UNIQUE (target, event_id)
);
CREATE INDEX IF NOT EXISTS events_pending ON events (state, seq);
"""
#: Seconds between tries after a failed write.
RETRY_WRITE = 1.0
#: Seconds a change waits before its commit starts: none (the next reactor turn), so a crash loses the
#: least; changes that come while a commit runs share the next one anyway. bench/webhook_outbox.py
#: measured 10 and 20 ms too: ten times fewer commits, no difference on the reactor it could see.
BATCH_DELAY = 0.0


@dataclass(slots=True, eq=False)
class Pending:
    """One event on its way to one target; the delivery keeps its retry state here."""

    target: str
    event_id: str
    call: str
    kind: str
    created: float
    content_type: str
    body: bytes
    attempts: int = 0
    not_before: float = 0.0
    last_error: str = ""
    unanswered: bool = False  # an attempt may have reached the receiver without its answer reaching us


#: runner(function) -> Deferred of function(), run in the writer thread.
Runner = Callable[[Callable[[], Any]], Deferred]


class Outbox:
    """The SQLite file at ``path``; see the module docstring. ``runner=None``: a writer thread of its own."""

    def __init__(self, path: str, clock: Any, *, runner: Runner | None = None) -> None:
        self.path = path
        self.clock = clock
        self._runner = runner
        self._pool: Any = None
        self._db: sqlite3.Connection | None = None
        self._queue: list[tuple] = []
        self._writing: Deferred | None = None
        self._scheduled: Any = None
        self._known: dict[tuple[str, str], float] = {}
        self._log_throttle = LogThrottle()
        #: Commits made, and the seconds they took in the writer thread (bench, tests).
        self.commits = 0
        self.commit_seconds = 0.0

    # -- start -----------------------------------------------------------------------

    def open(self, now: float, keep: float) -> list[Pending]:
        """Open (or create) the file; the pending events, oldest first. Blocking: at start-up only.

        Raises ValueError with a one-line reason when the file cannot be used.
        """
        directory = os.path.dirname(os.path.abspath(self.path))
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise ValueError(f"cannot use {self.path!r} as the outbox: it is outbox version {version}; "
                                 f"this server reads version {SCHEMA_VERSION}")
            db.executescript(SCHEMA)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            db.execute("DELETE FROM events WHERE state != ? AND created < ?", (PENDING, now - keep))
            rows = db.execute("SELECT target, event_id, call, kind, created, content_type, body FROM events "
                              "WHERE state = ? ORDER BY seq", (PENDING,)).fetchall()
            known = db.execute("SELECT target, event_id, created FROM events").fetchall()
        except sqlite3.Error as exc:
            raise ValueError(f"cannot use {self.path!r} as the outbox: {exc}") from None
        except OSError as exc:
            raise ValueError(f"cannot use {self.path!r} as the outbox: {exc.strerror or exc}") from None
        self._db = db
        self._known = {(t, e): c for t, e, c in known}
        return [Pending(*row) for row in rows]

    # -- the reactor's side: queue changes ------------------------------------------------

    def known(self, target: str, event_id: str) -> bool:
        """Was this event added already (within ``keep``)?"""
        return (target, event_id) in self._known

    def add(self, pending: Pending) -> bool:
        """Record a new event (written soon); False if its id is known, and then nothing is done."""
        key = (pending.target, pending.event_id)
        if key in self._known:
            return False
        self._known[key] = pending.created
        self._queue.append(("add", (pending.target, pending.event_id, pending.call, pending.kind,
                                    pending.created, pending.content_type, pending.body)))
        self._soon()
        return True

    def settled(self, pending: Pending, state: int) -> None:
        """The event was delivered (SENT) or given up (DROPPED): its body goes, its id stays for ``keep``."""
        self._queue.append(("settle", (state, pending.target, pending.event_id)))
        self._soon()

    def forget_before(self, cutoff: float) -> None:
        """Forget settled events added before ``cutoff`` (their ids too)."""
        self._known = {k: c for k, c in self._known.items() if c >= cutoff}
        self._queue.append(("purge", (cutoff,)))
        self._soon()

    def _soon(self) -> None:
        if self._writing is None and self._scheduled is None and self._db is not None:
            self._scheduled = self.clock.callLater(BATCH_DELAY, self._write)

    # -- the writer thread -------------------------------------------------------------------

    def _write(self) -> Deferred:
        self._scheduled = None
        batch, self._queue = self._queue, []
        if not batch or self._db is None:
            return succeed(None)
        self._writing = d = self._run(lambda: self._commit(batch))
        d.addCallbacks(self._written, self._failed, errbackArgs=(batch,))
        return d

    def _commit(self, batch: list[tuple]) -> None:
        """One transaction for everything queued (in the writer thread)."""
        started = time.perf_counter()
        db = self._db
        assert db is not None
        adds = [args for op, args in batch if op == "add"]
        with db:
            db.execute("BEGIN")
            if adds:
                db.executemany("INSERT OR IGNORE INTO events (target, event_id, call, kind, created, "
                               "content_type, body) VALUES (?, ?, ?, ?, ?, ?, ?)", adds)
            settles = [args for op, args in batch if op == "settle"]
            if settles:
                db.executemany("UPDATE events SET state = ?, body = NULL WHERE target = ? AND event_id = ?",
                               settles)
            for op, args in batch:
                if op == "purge":
                    db.execute("DELETE FROM events WHERE state != ? AND created < ?", (PENDING, args[0]))
        self.commits += 1
        self.commit_seconds += time.perf_counter() - started

    def _written(self, _: Any) -> None:
        self._writing = None
        if self._queue:
            self._soon()

    def _failed(self, failure: Any, batch: list[tuple]) -> None:
        self._writing = None
        self._queue[:0] = batch  # in front of what came meanwhile: order is kept
        held = self._log_throttle.allow("write", self.clock.seconds())
        if held is not None:
            log.error("call_webhooks: cannot write the outbox {path} ({why}); events stay in memory and "
                      "are written when it works ({held} more failures since the last report)",
                      path=self.path, why=failure.getErrorMessage(), held=held)
        if self._scheduled is None:
            self._scheduled = self.clock.callLater(RETRY_WRITE, self._write)

    def _run(self, job: Callable[[], Any]) -> Deferred:
        if self._runner is not None:
            return self._runner(job)
        from twisted.internet import reactor
        from twisted.internet.threads import deferToThreadPool
        from twisted.python.threadpool import ThreadPool

        if self._pool is None:
            self._pool = ThreadPool(minthreads=1, maxthreads=1, name="asttapi-outbox")
            self._pool.start()
        return deferToThreadPool(reactor, self._pool, job)

    # -- stop --------------------------------------------------------------------------------

    def flush(self) -> Deferred:
        """Fires once what was queued before the call is committed (or its one try failed)."""
        if self._writing is not None:
            waiting: Deferred = Deferred()
            self._writing.addBoth(lambda result: (waiting.callback(None), result)[1])
            return waiting.addCallback(lambda _: self._write_now())
        return self._write_now()

    def _write_now(self) -> Deferred:
        if self._scheduled is not None and self._scheduled.active():
            self._scheduled.cancel()
        self._scheduled = None
        return self._write() if self._queue else succeed(None)

    def close(self) -> Deferred:
        """Commit what is queued, close the file, stop the writer thread."""

        def shut(_: Any) -> None:
            if self._scheduled is not None and self._scheduled.active():
                self._scheduled.cancel()
            self._scheduled = None
            db, self._db = self._db, None
            if db is not None:
                db.close()
            pool, self._pool = self._pool, None
            if pool is not None:
                pool.stop()

        return maybeDeferred(self.flush).addBoth(shut)
