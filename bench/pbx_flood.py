"""A flood on one PBX against the latency of another PBX's calls (issue 25 item 6).

Target: a flood must not slow another PBX's events by more than 2x.

Two scripted Asterisks (``bench/e2e_latency.py``'s ``ScriptedAsterisk``:
they answer the login, CoreShowChannels, Ping and each call's Getvar) and
the real server in a child process (``service.make_service``), one client in
this process with the measured lines open:

* **the measured PBX** (``b``) sends one call every ``--interval`` seconds:
  the TAPI-dense call of ``bench/e2e_throughput.py`` (7 UserEvents and 21
  other events of the real inbound capture), written at once, on
  ``line_0`` ... ``line_7``. Latency: from the write of the call's events to
  the client reading each of its 5 JSON lines (both stamps in this process).
* **the flooding PBX** (``a``) writes, in the flood phases only, whole calls
  of the real capture (135 events each, every one of them: the Newexten and
  VarSet noise, Hangups, UserEvents and each call's Getvar answered) on lines
  nobody has open, as fast as the server reads them (``--flood-rate 0``, the
  default with two links) or at a set rate in AMI events per second;
  ``--flood noise`` sends only those calls' events the server drops unread
  (Newexten, VarSet, ...: a chatty dialplan).

A pass is a quiet phase then a flood phase of ``--seconds`` each; the ratio
is the flood phase's latency over the quiet one's (p50 and p99), the median
over ``--repeats`` passes is reported with the load average. Every client
event of every measured call must arrive, and nothing else.

**Links.** With ``--links 2`` (the default: the server takes ``[pbx.NAME]``
tables, issue 25 items 1-2) the two PBXs are two AMI links of one server
(``pbx.a`` and ``pbx.b``). ``--links 1`` (chosen by itself on a server
without ``[pbx.NAME]``, and said in the output): the flood and the measured
calls share the one link, so the flood cannot go as fast as the server reads
(the measured calls would queue behind it in the one TCP stream): it is sent
at ``--flood-rate`` (default 120,000 AMI events/s, twice what a real
Asterisk 22 sends at most), and what is measured is how much that load slows
the calls' own events.

    .venv/bin/python bench/pbx_flood.py
    .venv/bin/python bench/pbx_flood.py --links 1 --flood-rate 120000 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.ami_ingest import capture_events  # noqa: E402
from bench.e2e_latency import CAPTURE_ID, ScriptedAsterisk, stop_server  # noqa: E402
from bench.e2e_throughput import dense_events  # noqa: E402

MEASURED_LINES = 8
EVENTS_PER_CALL = 5  # NEWCALL, OFFERING, CALLINFO, CONNECTED, IDLE
BASE_B = 1_700_000_000
BASE_A = 1_600_000_000
TARGET = 2.0
# Events the server reads (the rest of a call is dropped unread by the parser).
_KEPT = {b"UserEvent", b"Hangup", b"Newchannel", b"OriginateResponse"}


def two_links_supported() -> bool:
    """Does this server's configuration take ``[pbx.NAME]`` tables (several PBXs)?"""
    from asttapi_server.config import load_config

    try:
        load_config(None, {"pbx.a.host": "127.0.0.1", "pbx.b.host": "127.0.0.1"})
    except Exception:
        return False
    return True


# -- the server (child process) -------------------------------------------------------


def gc_pauses(observe: bool = True) -> dict[str, list[float]]:
    """The collector's runs from now on, per generation: how many, the longest and the
    total pause in ms (wall clock: what a client waits), filled in as they happen
    (``observe`` False: only the empty counts)."""
    import gc

    pauses: dict[str, list[float]] = {"collections": [0, 0, 0], "max_ms": [0.0] * 3, "total_ms": [0.0] * 3}
    if not observe:
        return pauses
    started = [0.0]

    def observe(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        ms = (time.perf_counter() - started[0]) * 1e3
        g = info["generation"]
        pauses["collections"][g] += 1
        pauses["max_ms"][g] = round(max(pauses["max_ms"][g], ms), 2)
        pauses["total_ms"][g] = round(pauses["total_ms"][g] + ms, 1)

    gc.callbacks.append(observe)
    return pauses


def serve(ports: list[int]) -> None:
    """The server child: one AMI link per port (``[ami]`` for one, ``[pbx.a]``, ``[pbx.b]`` for two)."""
    from twisted.internet import reactor, stdio, task
    from twisted.logger import globalLogBeginner
    from twisted.protocols.basic import LineReceiver

    from asttapi_server.config import load_config
    from asttapi_server.service import make_service

    globalLogBeginner.beginLoggingTo([lambda event: None], redirectStandardIO=False)
    link = {"auth": "plain", "secret": "bench", "keepalive": 3600}
    if len(ports) == 1:
        pbxs = {f"ami.{k}": v for k, v in {"host": "127.0.0.1", "port": ports[0], **link}.items()}
    else:
        pbxs = {f"pbx.{name}.{k}": v for name, port in zip("ab", ports)
                for k, v in {"host": "127.0.0.1", "port": port, **link}.items()}
    config = load_config(None, {
        **pbxs, "server.listen": ["tcp:0:interface=127.0.0.1"], "web.listen": [], "calls.state_file": "",
        "server.send_buffer_bytes": 1 << 28,
    })
    app = make_service(config, reactor)
    app.tune_gc = True  # as tap.py does for the real server (docs/operations.md)
    app.startService()

    pauses = gc_pauses()

    class Control(LineReceiver):
        delimiter = b"\n"

        def lineReceived(self, line: bytes) -> None:
            if line.strip() == b"gc":  # the collections so far; counting starts again
                self.sendLine(b"GC " + json.dumps(pauses).encode())
                pauses.update(gc_pauses(observe=False))
            elif line.strip() == b"quit":
                app.stopService()
                reactor.stop()

    def in_service() -> bool:
        board = getattr(app, "switchboard", None)  # several PBXs: every one in service
        return bool(board.link_up if board is not None else app.bridge.link_up)

    def ready() -> None:
        if in_service() and app.listeners[0].port is not None:
            loop.stop()
            stdio.StandardIO(Control())
            sys.stdout.write(f"PORT {app.listeners[0].port.getHost().port}\n")
            sys.stdout.flush()

    loop = task.LoopingCall(ready)
    loop.start(0.01)
    reactor.run()


# -- this process: two Asterisks, one client ----------------------------------------------


def _call(template: bytes, base: int, k: int, line: bytes) -> bytes:
    return template.replace(CAPTURE_ID, b"%d." % (base + k)).replace(b"line_1", line)


class Flood:
    def __init__(self, links: int, interval: float, flood_rate: float, kind: str = "calls") -> None:
        self.links = links
        self.interval = interval
        self.flood_rate = flood_rate
        self.b = ScriptedAsterisk()
        self.a = ScriptedAsterisk() if links == 2 else self.b
        ports = [self.a.port, self.b.port] if links == 2 else [self.b.port]
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve", *map(str, ports)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT,
                                     env=dict(os.environ, PYTHONPATH=str(ROOT)))
        self.sel = selectors.DefaultSelector()
        # What this process writes to each link (events, answers), in order: one
        # queue per connection keeps the stream framed when the flood and the
        # measured calls share a link; written as the server reads.
        self.out: dict[int, bytearray] = {}
        for pbx in self.pbxs():
            pbx.listener.settimeout(30)
            pbx.accept()
            pbx.conn.setblocking(False)
            queue = self.out[id(pbx)] = bytearray()
            pbx.send = queue.extend  # type: ignore[method-assign]  # ScriptedAsterisk's answers too
            self.sel.register(pbx.conn, selectors.EVENT_READ, pbx)
        self.sel.register(self.proc.stdout, selectors.EVENT_READ, "ctl")
        self.ctl = b""
        self.until(lambda: b"PORT " in self.ctl, 60)
        port = int(self.ctl.split(b"PORT ", 1)[1].split()[0])
        self.client = socket.create_connection(("127.0.0.1", port))
        self.client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.client.setblocking(False)
        self.sel.register(self.client, selectors.EVENT_READ, "client")
        self.buf = b""
        self.opened = 0
        self.sent: dict[str, int] = {}  # measured call's Uniqueid -> monotonic_ns of its write
        self.got: dict[str, int] = {}
        self.latencies: list[int] = []
        self.bad: list[str] = []
        for i in range(MEASURED_LINES):
            self.client.sendall(json.dumps({"jsonrpc": "2.0", "id": i + 1, "method": "lineOpen",
                                            "params": {"line": f"line_{i}"}}).encode() + b"\n")
        self.until(lambda: self.opened == MEASURED_LINES, 30)
        self.measured = b"".join(dense_events())
        flood = capture_events()
        if kind == "noise":
            flood = [e for e in flood if e.split(b"\r\n", 1)[0][7:] not in _KEPT]
        self.flood_call = b"".join(flood)
        self.flood_events = len(flood)
        self.k = 0
        self.fk = 0

    def pbxs(self) -> list[ScriptedAsterisk]:
        return [self.a, self.b] if self.a is not self.b else [self.b]

    def flush(self) -> bool:
        """Write what the links take now; True if something is still waiting."""
        waiting = False
        for pbx in self.pbxs():
            queue = self.out[id(pbx)]
            if queue:
                try:
                    del queue[: pbx.conn.send(queue)]
                except BlockingIOError:
                    pass
                waiting = waiting or bool(queue)
        return waiting

    def pump(self, timeout: float) -> None:
        if self.flush():
            timeout = min(timeout, 0.0005)
        for key, _ in self.sel.select(timeout):
            if key.data == "ctl":
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    raise RuntimeError("the server process exited")
                self.ctl += chunk
            elif key.data == "client":
                self.read()
            else:
                key.data.readable()  # the server's actions (Getvar, Ping): answered at once

    def until(self, done: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError("benchmark step timed out")
            self.pump(0.02)

    def read(self) -> None:
        try:
            data = self.client.recv(262144)
        except BlockingIOError:
            return
        now = time.monotonic_ns()
        if not data:
            raise RuntimeError("the server closed the client connection")
        *lines, self.buf = (self.buf + data).split(b"\n")
        for ln in lines:
            msg = json.loads(ln)
            if "id" in msg:
                self.opened += "result" in msg
                continue
            if msg.get("method") == "hello":
                continue
            uid = msg["params"].get("callinfo", {}).get("uniqueid")
            t = self.sent.get(uid)
            if t is None:
                self.bad.append(f"unexpected {msg.get('method')} on {msg['params'].get('line')}")
                continue
            self.got[uid] = self.got.get(uid, 0) + 1
            self.latencies.append(now - t)

    def phase(self, seconds: float, flood: bool) -> tuple[list[int], int]:
        """Measured calls every ``interval`` for ``seconds``, with or without the flood; (latencies, flood events)."""
        self.latencies = []
        flooded = 0
        start = time.monotonic()
        next_call = start
        flood_queue = self.out[id(self.a)]
        while time.monotonic() - start < seconds:
            now = time.monotonic()
            if now >= next_call:
                uid = f"{BASE_B + self.k}.1"
                data = _call(self.measured, BASE_B, self.k, b"line_%d" % (self.k % MEASURED_LINES))
                self.sent[uid] = time.monotonic_ns()
                self.b.send(data)
                self.k += 1
                next_call += self.interval
            if flood and len(flood_queue) < (1 << 18) and (
                    not self.flood_rate or flooded < (now - start) * self.flood_rate):
                # One call of the flood (about 60 KiB) on a line nobody has open; its Getvar answered by pump.
                self.a.send(_call(self.flood_call, BASE_A, self.fk, b"flood_%d" % (self.fk % 64)))
                self.fk += 1
                flooded += self.flood_events
                self.pump(0)
            else:
                self.pump(max(0.0, min(next_call - time.monotonic(), 0.005)))
        calls = list(self.sent)
        self.until(lambda: all(self.got.get(uid, 0) >= EVENTS_PER_CALL for uid in calls), 60)
        return self.latencies, flooded

    def gc_pauses(self) -> dict[str, Any]:
        """The server child's garbage collections since the last ask (:func:`gc_pauses`)."""
        self.ctl = b""
        self.proc.stdin.write(b"gc\n")
        self.proc.stdin.flush()
        self.until(lambda: self.ctl.endswith(b"\n") and b"GC " in self.ctl, 30)
        return json.loads(self.ctl.split(b"GC ", 1)[1])

    def close(self) -> None:
        stop_server(self.proc)
        self.client.close()
        for pbx in self.pbxs():
            if pbx.conn is not None:
                pbx.conn.close()
            pbx.listener.close()
        self.sel.close()


def _pct(values: list[int], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(p / 100 * len(s)))] / 1e6


def run(links: int | None = None, seconds: float = 3.0, repeats: int = 5, interval: float = 0.02,
        flood_rate: float | None = None, kind: str = "calls") -> dict[str, Any]:
    if links is None:
        links = 2 if two_links_supported() else 1
    if flood_rate is None:
        flood_rate = 0.0 if links == 2 else 120_000.0
    load_before = os.getloadavg()[0]
    bench = Flood(links, interval, flood_rate, kind)
    passes = []
    try:
        bench.phase(1.0, False)  # warm-up: caches, first calls
        bench.gc_pauses()  # the collections of the start and the warm-up are not the flood's
        for _ in range(repeats):
            quiet, _ = bench.phase(seconds, False)
            loud, flooded = bench.phase(seconds, True)
            passes.append({"quiet_p50_ms": _pct(quiet, 50), "quiet_p99_ms": _pct(quiet, 99),
                           "flood_p50_ms": _pct(loud, 50), "flood_p99_ms": _pct(loud, 99),
                           "flood_events_per_s": round(flooded / seconds)})
        if bench.bad or any(n != EVENTS_PER_CALL for n in bench.got.values()):
            raise AssertionError(f"delivery broken: {bench.bad[:5]}")
        gc_runs = bench.gc_pauses()
    finally:
        bench.close()
    for p in passes:
        p["ratio_p50"] = round(p["flood_p50_ms"] / p["quiet_p50_ms"], 2)
        p["ratio_p99"] = round(p["flood_p99_ms"] / p["quiet_p99_ms"], 2)
    return {
        "benchmark": "pbx_flood", "links": links, "flood": kind, "flood_rate": flood_rate or "as fast as the server reads",
        "interval_s": interval, "seconds": seconds, "passes": passes,
        "ratio_p50": statistics.median(p["ratio_p50"] for p in passes),
        "ratio_p99": statistics.median(p["ratio_p99"] for p in passes),
        "target": TARGET, "load": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "gc": gc_runs,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--serve", type=int, nargs="+", help=argparse.SUPPRESS)
    ap.add_argument("--links", type=int, choices=(1, 2), help="default: 2 if [pbx.NAME] is supported, else 1")
    ap.add_argument("--seconds", type=float, default=3.0, help="length of each quiet and each flood phase")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--interval", type=float, default=0.02, help="seconds between the measured PBX's calls")
    ap.add_argument("--flood-rate", type=float, help="AMI events/s of the flood; 0: as fast as the server reads")
    ap.add_argument("--flood", choices=("calls", "noise"), default="calls",
                    help="whole calls of the real capture, or only their events the server drops")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return 0
    f = run(args.links, args.seconds, args.repeats, args.interval, args.flood_rate, args.flood)
    if args.json:
        print(json.dumps(f))
        return 0
    how = ("two PBXs, two AMI links" if f["links"] == 2 else
           "one AMI link (this server takes no [pbx.NAME] yet): flood and measured calls share it")
    print(f"PBX flood, {how}; flood of {f['flood']} at {f['flood_rate']} AMI events/s; load average {f['load'][0]} before,"
          f" {f['load'][1]} after")
    for i, p in enumerate(f["passes"], 1):
        print(f"  pass {i}: quiet p50 {p['quiet_p50_ms']:.2f} ms p99 {p['quiet_p99_ms']:.2f} ms | flood"
              f" ({p['flood_events_per_s']:,} events/s) p50 {p['flood_p50_ms']:.2f} ms p99 {p['flood_p99_ms']:.2f} ms"
              f" | x{p['ratio_p50']} / x{p['ratio_p99']}")
    print(f"median slowdown of the measured calls' events: p50 x{f['ratio_p50']}, p99 x{f['ratio_p99']}"
          f" (target <= {TARGET:g})")
    g = f["gc"]
    print("the server's garbage collections, generations 0/1/2: " + ", ".join(
        f"{n} (longest {m} ms, {t} ms in all)" for n, m, t in zip(g["collections"], g["max_ms"], g["total_ms"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
