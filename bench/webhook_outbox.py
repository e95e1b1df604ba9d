"""Webhook outbox benchmark: what keeping every call event in SQLite costs the reactor.

The call_webhooks plugin adds every webhook event to its SQLite outbox
(``plugins/call_webhooks/outbox.py``) on the reactor thread; a writer thread
of its own commits them, one transaction for everything queued. This runs
the real ``Outbox`` on the real reactor and a file in ``--dir`` (default a
temp dir: pass the disk the server will use, the commit's fsync is the
disk's):

* ``--events`` events arrive in bursts of ``--burst`` (a call's events come
  together), one burst per millisecond, and each burst is marked delivered
  with the next (receivers acknowledge as they go);
* a probe timer every 5 ms records how late the reactor runs it, first with
  no outbox at all (the reference, same process, same load), then with it.

It prints the reactor-thread cost of ``add`` per event, how many commits the
writer made (events per commit: the batching), what a commit took in the
writer thread, and the probe's worst and 99th-percentile lateness with and
without the outbox (their ratio). For comparison it also times the naive
design, a commit per event on the reactor thread (``synchronous=FULL``,
WAL), which is what the writer thread keeps off it.

    .venv/bin/python bench/webhook_outbox.py
    .venv/bin/python bench/webhook_outbox.py --events 20000 --dir /var/lib/asttapi

It runs the reactor, so ``python -m bench`` runs it in a process of its own.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for folder in (ROOT, ROOT / "plugins"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

try:
    from asttapi_plugins.call_webhooks.outbox import SENT, Outbox, Pending  # noqa: E402
except ImportError:  # a checkout without the editable install
    from call_webhooks.outbox import SENT, Outbox, Pending  # type: ignore[no-redef]  # noqa: E402

BODY = (b"event=hangup&from=49301234567&to=4930987650&direction=in&callId=1795674354.1&"
        b"user%5B%5D=Emma+Taylor&answeringNumber=emma%40example.com&cause=normalClearing") * 4


def _percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def naive_commit_us(directory: Path, events: int) -> float:
    """Microseconds per event of INSERT + COMMIT on the calling thread (the design not taken)."""
    db = sqlite3.connect(directory / "naive.sqlite", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE e (id TEXT, body BLOB)")
    started = time.perf_counter()
    for n in range(events):
        db.execute("BEGIN")
        db.execute("INSERT INTO e VALUES (?, ?)", (str(n), BODY))
        db.execute("COMMIT")
    elapsed = time.perf_counter() - started
    db.close()
    return elapsed / events * 1e6


def run(events: int = 10_000, burst: int = 7, directory: str | None = None) -> dict[str, Any]:
    """Both phases on one reactor run; returns the figures."""
    from twisted.internet import reactor, task

    own_dir = None
    if directory is None:
        own_dir = tempfile.TemporaryDirectory(prefix="asttapi-bench-outbox-")
        directory = own_dir.name
    folder = Path(directory)
    figures: dict[str, Any] = {"events": events, "burst": burst}
    lateness: dict[str, list[float]] = {"reference": [], "outbox": []}
    phase = {"name": "reference"}
    expected = {"at": None}

    def probe() -> None:
        now = time.perf_counter()
        if expected["at"] is not None:
            lateness[phase["name"]].append(max(0.0, now - expected["at"]))
        expected["at"] = now + 0.005

    probe_loop = task.LoopingCall(probe)
    path = folder / "outbox.sqlite"
    for suffix in ("", "-wal", "-shm"):
        try:
            os.unlink(str(path) + suffix)
        except FileNotFoundError:
            pass
    outbox = Outbox(str(path), reactor)
    outbox.open(time.time(), 86400.0)
    added: list[Pending] = []
    spent = {"add": 0.0}

    def feed(count: int, with_outbox: bool) -> Any:
        """``count`` events in bursts, one burst a millisecond; fires when all are in."""
        from twisted.internet.defer import Deferred

        done: Deferred = Deferred()
        state = {"n": 0}

        def step() -> None:
            for _ in range(burst):
                n = state["n"]
                if n >= count:
                    break
                state["n"] = n + 1
                if with_outbox:
                    pending = Pending("bench", f"e{n}", f"call{n // burst}", "hangup", time.time(),
                                      "application/x-www-form-urlencoded", BODY)
                    started = time.perf_counter()
                    outbox.add(pending)
                    spent["add"] += time.perf_counter() - started
                    added.append(pending)
            while with_outbox and len(added) > burst:  # the previous burst is acknowledged
                outbox.settled(added.pop(0), SENT)
            if state["n"] >= count:
                done.callback(None)
            else:
                reactor.callLater(0.001, step)

        reactor.callLater(0.001, step)
        return done

    def main() -> Any:
        from twisted.internet.defer import inlineCallbacks

        @inlineCallbacks
        def go():
            probe_loop.start(0.005)
            yield feed(events, with_outbox=False)  # the same schedule, nothing kept: the reference
            phase["name"] = "outbox"
            expected["at"] = None
            yield feed(events, with_outbox=True)
            for pending in added:
                outbox.settled(pending, SENT)
            yield outbox.flush()
            probe_loop.stop()
            yield outbox.close()

        d = go()
        d.addErrback(lambda f: (f.printTraceback(), None))
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(main)
    reactor.run()
    figures["add_us_per_event"] = round(spent["add"] / events * 1e6, 2)
    figures["commits"] = outbox.commits
    figures["events_per_commit"] = round(2 * events / max(1, outbox.commits), 1)  # adds and settles
    figures["commit_ms"] = round(outbox.commit_seconds / max(1, outbox.commits) * 1e3, 3)
    for name, values in lateness.items():
        figures[f"{name}_late_max_ms"] = round(max(values, default=0.0) * 1e3, 2)
        figures[f"{name}_late_p99_ms"] = round(_percentile(values, 0.99) * 1e3, 2)
        figures[f"{name}_late_median_ms"] = round(statistics.median(values) * 1e3, 3) if values else 0.0
    ref = figures["reference_late_p99_ms"] or 0.01
    figures["late_p99_ratio"] = round(figures["outbox_late_p99_ms"] / ref, 2)
    figures["naive_commit_us_per_event"] = round(naive_commit_us(folder, min(events, 2000)), 1)
    if own_dir is not None:
        own_dir.cleanup()
    return figures


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=10_000)
    ap.add_argument("--burst", type=int, default=7)
    ap.add_argument("--dir", default=None, help="where the SQLite files go (default: a temp dir)")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = ap.parse_args(argv)
    f = run(args.events, args.burst, args.dir)
    if args.json:
        import json

        print(json.dumps(f))
        return
    print(f"webhook outbox, {f['events']} events in bursts of {f['burst']} (1 burst/ms), then all marked sent")
    print(f"  reactor thread, Outbox.add          {f['add_us_per_event']:8.2f} us/event")
    print(f"  writer thread, commits              {f['commits']:8d}  ({f['events_per_commit']} changes/commit, "
          f"{f['commit_ms']} ms each)")
    print(f"  naive: commit per event on reactor  {f['naive_commit_us_per_event']:8.1f} us/event (not done)")
    print(f"  reactor lateness p99 / max          reference {f['reference_late_p99_ms']} / "
          f"{f['reference_late_max_ms']} ms, with outbox {f['outbox_late_p99_ms']} / {f['outbox_late_max_ms']} ms, "
          f"p99 ratio {f['late_p99_ratio']}")


if __name__ == "__main__":
    main()
