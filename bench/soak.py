"""Soak test (not part of CI): the whole server against the demo PBX at a high call rate.

The server (``make_service``, real AMI client, bridge, call model, hub, client
listener) and the demo PBX run in this process, as ``make run`` runs them, but
the demo plays ``--rate`` calls per second (inbound ring groups, outbound and
busy calls in turn) instead of one every few seconds. ``--clients`` JSON
clients in a separate process each open ``line_1`` or ``line_2`` and read
every event. Every ``--every`` seconds it prints tracked calls, open client
connections, server RSS and events published; at the end it stops the calls,
waits for the call records to be freed and says whether

* memory is flat: RSS at the end of the load is within 5 % of RSS after the
  warm-up (the first ``--warmup`` seconds of load), and
* tracked calls went back to zero after the calls stopped.

    .venv/bin/python bench/soak.py --minutes 10
    .venv/bin/python bench/soak.py --minutes 1 --rate 100 --clients 200

Exit status 0 when both hold, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import socket
import subprocess
import sys
import time
import weakref
from itertools import cycle
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _parse_cache_size() -> int | str:
    try:
        from asttapi_server.core import grammar

        return grammar._parse_cached.cache_info().currsize
    except AttributeError:  # no such cache any more
        return "?"


# -- clients (child process) ---------------------------------------------------------


def clients_main(port: int, n: int) -> None:
    """Open ``n`` connections, each with line_1 or line_2 open; read until stdin closes."""
    sel = selectors.DefaultSelector()
    socks = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        line = f"line_{1 + i % 2}"
        s.sendall(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "lineOpen", "params": {"line": line}}).encode() + b"\n")
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, [line, b"", 0, 0])  # line, buffer, events, bad
        socks.append(s)
    sel.register(sys.stdin, selectors.EVENT_READ, None)
    print("READY", flush=True)
    while True:
        for key, _ in sel.select(1.0):
            if key.data is None:
                if not sys.stdin.readline():
                    events = sum(k.data[2] for k in sel.get_map().values() if k.data)
                    bad = sum(k.data[3] for k in sel.get_map().values() if k.data)
                    closed = n - sum(1 for k in sel.get_map().values() if k.data)
                    print(json.dumps({"events": events, "bad": bad, "closed": closed}), flush=True)
                    return
                continue
            state = key.data
            try:
                data = key.fileobj.recv(262144)
            except BlockingIOError:
                continue
            if not data:
                sel.unregister(key.fileobj)
                continue
            *lines, state[1] = (state[1] + data).split(b"\n")
            for raw in lines:
                msg = json.loads(raw)
                if msg.get("method", "hello") != "hello":
                    state[2] += 1
                    if msg["params"].get("line") != state[0]:
                        state[3] += 1


# -- server (this process) -----------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="duration of the call load")
    ap.add_argument("--rate", type=float, default=50.0, help="calls started per second")
    ap.add_argument("--clients", type=int, default=100, help="client connections (separate process)")
    ap.add_argument("--every", type=float, default=10.0, help="seconds between reports")
    ap.add_argument("--warmup", type=float, default=180.0,
                    help="seconds of load before the memory baseline: long enough for the bounded structures "
                         "to fill (30 s call linger, 10,000-event replay ring, 8,192-entry TAPIEVENT parse cache, "
                         "which takes about 2 minutes at 50 calls/s)")
    ap.add_argument("--scale", type=float, default=0.05, help="demo timing scale (0.05: a call lasts ~0.2-0.5 s)")
    ap.add_argument("--clients-proc", nargs=2, type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.clients_proc:
        clients_main(*args.clients_proc)
        return 0

    from twisted.internet import reactor, task
    from twisted.logger import LogLevel, globalLogBeginner

    from asttapi_server.config import load_config
    from asttapi_server.demo.scenarios import Timing
    from asttapi_server.service import make_service

    # Count log events instead of buffering them (an unstarted log system keeps
    # a history, which would look like a leak); print warnings and errors, the
    # first five of each level.
    levels: dict[str, int] = {}

    def observe(event: dict) -> None:
        level = event.get("log_level")
        name = level.name if level is not None else "?"
        levels[name] = levels.get(name, 0) + 1
        if level in (LogLevel.warn, LogLevel.error, LogLevel.critical) and levels[name] <= 5:
            from twisted.logger import formatEvent

            print(f"  [{name}] {formatEvent(event)}", flush=True)

    globalLogBeginner.beginLoggingTo([observe], redirectStandardIO=False)

    # All soak clients come from 127.0.0.1: lift the per-address limit (docs/security.md).
    config = load_config(None, {"server.listen": ["tcp:0:interface=127.0.0.1:backlog=1024"], "web.listen": [],
                                "server.max_clients": 5_000, "server.max_clients_per_address": 5_000})
    timing = Timing(first_call=0.0, gap=1.0, scale=args.scale, auth_fail_delay=0.0)
    app = make_service(config, reactor, demo_options={"timing": timing, "autoplay": False})
    protos: weakref.WeakSet = weakref.WeakSet()
    build = app.client_factory.buildProtocol

    def tracking_build(addr):
        p = build(addr)
        if p is not None:
            protos.add(p)
        return p

    app.client_factory.buildProtocol = tracking_build
    app.tune_gc = True  # as tap.py does for the real server (docs/operations.md)
    app.startService()

    state = {"started": 0, "finished": 0, "t0": 0.0, "rows": [], "baseline": None, "end_rss": None, "ok": False}
    kinds = cycle(["inbound", "outbound", "busy"])
    clients: dict = {}

    def open_connections() -> int:
        return sum(1 for p in protos if getattr(p, "connected", 0))

    def report(phase: str) -> None:
        now = time.monotonic() - state["t0"]
        row = {
            "t": round(now), "phase": phase, "calls_started": state["started"], "calls_done": state["finished"],
            "tracked": app.model.tracked, "connections": open_connections(), "rss_mib": round(rss_kib() / 1024, 1),
            "published": app.hub.seq, "parse_cache": _parse_cache_size(),
        }
        state["rows"].append(row)
        print(f"t={row['t']:>5}s {phase:<6} calls {row['calls_started']:>7} started {row['calls_done']:>7} done | "
              f"tracked {row['tracked']:>4} | clients {row['connections']:>4} | RSS {row['rss_mib']:>6} MiB | "
              f"events published {row['published']} | parse cache {row['parse_cache']}", flush=True)

    def play() -> None:
        flow = app.demo.play(next(kinds))
        state["started"] += 1

        def done(result):
            state["finished"] += 1
            return None

        flow.done.addBoth(done)

    def start_load() -> None:
        if not app.bridge.link_up:
            reactor.callLater(0.1, start_load)
            return
        port = app.listeners[0].port.getHost().port
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        proc = subprocess.Popen([sys.executable, __file__, "--clients-proc", str(port), str(args.clients)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=ROOT)
        clients["proc"] = proc
        # wait (briefly blocking is fine: nothing else is running yet) for the clients
        reactor.callLater(0, wait_clients)

    def wait_clients() -> None:
        proc = clients["proc"]
        ready = proc.stdout.readline()  # the kernel backlog holds their connects meanwhile
        if ready.strip() != b"READY":
            print("clients did not start", ready, flush=True)
            reactor.stop()
            return
        reactor.callLater(0.5, begin)

    def begin() -> None:
        state["t0"] = time.monotonic()
        print(f"soak: {args.minutes:g} min at {args.rate:g} calls/s, {args.clients} clients, "
              f"warm-up {args.warmup:g} s, report every {args.every:g} s", flush=True)
        report("start")
        batch = max(1, int(args.rate / 100))
        state["loop"] = task.LoopingCall(lambda: [play() for _ in range(batch)])
        state["loop"].start(batch / args.rate)
        state["reporter"] = task.LoopingCall(tick_report)
        state["reporter"].start(args.every, now=False)
        reactor.callLater(args.warmup, take_baseline)
        reactor.callLater(args.minutes * 60, stop_load)

    def take_baseline() -> None:
        state["baseline"] = rss_kib()
        print(f"  memory baseline after {args.warmup:g} s warm-up: {state['baseline'] / 1024:.1f} MiB", flush=True)

    def tick_report() -> None:
        report("load" if "stopped" not in state else "drain")

    def stop_load() -> None:
        state["loop"].stop()
        state["end_rss"] = rss_kib()
        state["stopped"] = time.monotonic()
        print(f"  calls stopped; RSS at end of load {state['end_rss'] / 1024:.1f} MiB", flush=True)
        reactor.callLater(1.0, drain)

    def drain() -> None:
        linger = config.calls.linger + config.calls.hangup_grace + 15
        if (app.model.tracked == 0 and state["finished"] == state["started"]) or \
                time.monotonic() - state["stopped"] > linger:
            finish()
        else:
            reactor.callLater(1.0, drain)

    def finish() -> None:
        state["reporter"].stop()
        report("end")
        proc = clients["proc"]
        proc.stdin.close()
        summary = json.loads(proc.stdout.readline() or b"{}")
        proc.wait(10)
        base, end = state["baseline"], state["end_rss"]
        growth = (end - base) / base * 100 if base else float("nan")
        flat = base is not None and abs(growth) <= 5.0
        zero = app.model.tracked == 0
        print(f"\nresult: {state['started']} calls in {args.minutes:g} min ({args.rate:g}/s), "
              f"{app.hub.seq} events published, clients received {summary.get('events')} "
              f"(wrong line: {summary.get('bad')}, closed: {summary.get('closed')})")
        print(f"memory: {base / 1024:.1f} MiB after warm-up, {end / 1024:.1f} MiB at end of load "
              f"({growth:+.2f} %), {rss_kib() / 1024:.1f} MiB after drain -> {'FLAT' if flat else 'NOT FLAT'} (5 % limit)")
        print(f"tracked calls after the calls stopped: {app.model.tracked} -> {'ZERO' if zero else 'NOT ZERO'}; "
              f"model stats {dict(app.model.stats)}")
        print(f"log events by level: {levels}", flush=True)
        state["ok"] = flat and zero and not summary.get("bad")
        d = app.stopService()
        if d is not None:
            d.addBoth(lambda _: reactor.stop())
        else:
            reactor.stop()

    reactor.callLater(0.1, start_load)
    reactor.run()
    return 0 if state["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
