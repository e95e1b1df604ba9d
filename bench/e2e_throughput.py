"""End-to-end throughput: the whole server against a naive full-parse AMI consumer.

One scripted Asterisk stream, read twice over loopback in the same run:

* **The server** (a child process: ``service.make_service`` with a real AMI
  login, the parser with its event filter, the built-in TAPI UserEvent
  mapping, the call model, the hub and the client listener, exactly as
  ``bench/e2e_latency.py`` starts it).  One client in this process has every
  line open and counts the JSON lines it gets: 5 TAPI events per call
  (NEWCALL, OFFERING, CALLINFO, CONNECTED, IDLE).
* **A naive consumer** (another child): a minimal Twisted protocol that
  splits on the blank line and turns *every* message into a dict of its
  headers, with no filter: what a first AMI client written in an afternoon
  does.

The stream is every event of the real inbound-call capture
``tests/data/ami/05_inbound_call.monitor.raw`` (135 events, 7 TAPI UserEvents:
about 19 other events per UserEvent), call after call with fresh Uniqueids,
on ``line_0`` ... ``line_63``, until at least ``--events`` AMI events; it is
written with ``sendall`` as fast as the reader takes it.

Rate = AMI events / (first byte written -> last JSON line read by the
client, or the consumer's last message parsed).  The server's CPU seconds
come from ``/proc/<pid>/stat`` before and after the stream.  Best of
``--repeats`` for each side, the ratio from the best of each.

    .venv/bin/python bench/e2e_throughput.py
    .venv/bin/python bench/e2e_throughput.py --events 400000 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.ami_ingest import capture_events  # noqa: E402
from bench.e2e_latency import CAPTURE_ID, ScriptedAsterisk, stop_server  # noqa: E402

LINES = 64
TAPI_EVENTS_PER_CALL = 5
BASE = 1_800_000_000


def build_stream(min_events: int, base: int = BASE) -> tuple[bytes, int, int]:
    """``(stream, AMI events, calls)``: the capture's events, one call after
    another, Uniqueids from ``base`` on."""
    template = b"".join(capture_events())
    per_call = len(capture_events())
    calls = -(-min_events // per_call)
    parts = []
    for k in range(calls):
        parts.append(template.replace(CAPTURE_ID, b"%d." % (base + k)).replace(b"line_1", b"line_%d" % (k % LINES)))
    return b"".join(parts), per_call * calls, calls


# -- the naive consumer (child process) --------------------------------------------------


def consume(port: int, total: int) -> None:
    """Read ``total`` AMI events from ``port``, a dict per message; print the seconds."""
    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ClientEndpoint
    from twisted.internet.protocol import Factory, Protocol

    class FullParse(Protocol):
        def __init__(self) -> None:
            self.buf = b""
            self.events = 0
            self.t0 = 0.0

        def dataReceived(self, data: bytes) -> None:
            if not self.t0:
                self.t0 = time.perf_counter()
            *blocks, self.buf = (self.buf + data).split(b"\r\n\r\n")
            for block in blocks:
                headers: dict[str, str] = {}
                for line in block.decode("utf-8", "replace").split("\r\n"):
                    key, sep, value = line.partition(":")
                    if sep:
                        headers.setdefault(key.strip().lower(), value.strip())
                if "event" in headers:
                    self.events += 1
            if self.events >= total:
                print(json.dumps({"seconds": time.perf_counter() - self.t0, "events": self.events}), flush=True)
                self.transport.loseConnection()
                reactor.stop()

    TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(Factory.forProtocol(FullParse))
    reactor.run()


# -- driver (this process) ----------------------------------------------------------------


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _naive_once(stream: bytes, total: int) -> float:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    child = subprocess.Popen([sys.executable, __file__, "--consume", str(port), "--total", str(total)],
                             stdout=subprocess.PIPE, text=True, cwd=ROOT)
    listener.settimeout(30)
    conn, _ = listener.accept()
    conn.sendall(stream)
    out, _ = child.communicate(timeout=600)
    conn.close()
    listener.close()
    result = json.loads(out.strip().splitlines()[-1])
    if result["events"] != total:
        raise RuntimeError(f"naive consumer read {result['events']} events, expected {total}")
    return result["seconds"]


class Server:
    """The real server in a child, its scripted Asterisk and one all-lines client."""

    def __init__(self, metrics: bool = True) -> None:
        self.ami = ScriptedAsterisk()
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "e2e_latency.py"), "--serve", str(self.ami.port)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT,
                                     env=dict(os.environ, PYTHONPATH=str(ROOT),
                                              ASTTAPI_BENCH_METRICS="1" if metrics else "0"))
        self.ami.listener.settimeout(30)
        conn = self.ami.accept()
        sel = selectors.DefaultSelector()
        sel.register(conn, selectors.EVENT_READ, "ami")
        sel.register(self.proc.stdout, selectors.EVENT_READ, "ctl")
        ctl = b""
        deadline = time.monotonic() + 60
        while b"PORT " not in ctl:
            if time.monotonic() > deadline:
                raise TimeoutError("the server did not come up")
            for key, _ in sel.select(0.1):
                if key.data == "ami":
                    self.ami.readable()
                else:
                    chunk = os.read(self.proc.stdout.fileno(), 65536)
                    if not chunk:
                        raise RuntimeError("the server process exited")
                    ctl += chunk
        sel.close()
        port = int(ctl.split(b"PORT ", 1)[1].split()[0])
        self.client = socket.create_connection(("127.0.0.1", port))
        self.client.settimeout(30)
        self.buf = b""
        for i in range(LINES):
            req = {"jsonrpc": "2.0", "id": i + 1, "method": "lineOpen", "params": {"line": f"line_{i}"}}
            self.client.sendall(json.dumps(req).encode() + b"\n")
        self.read_lines(lambda text: text.count('"result"') >= LINES)

    def read_lines(self, done: Any) -> int:
        """Read client lines until ``done(text so far)``; returns how many."""
        text = b""
        while not done(text.decode(errors="replace")):
            chunk = self.client.recv(262144)
            if not chunk:
                raise RuntimeError("the server closed the client connection")
            text += chunk
        return text.count(b"\n")

    def run_once(self, stream: bytes, calls: int) -> tuple[float, float, int]:
        """``(seconds, server CPU seconds, TAPI events)`` for one pass of the stream."""
        expected = calls * TAPI_EVENTS_PER_CALL
        cpu0 = _cpu_seconds(self.proc.pid)
        got = 0
        sender = threading.Thread(target=self.ami.conn.sendall, args=(stream,), daemon=True)
        t0 = time.perf_counter()
        sender.start()
        while got < expected:
            chunk = self.client.recv(1 << 20)
            if not chunk:
                raise RuntimeError("the server closed the client connection")
            got += chunk.count(b"\n")
        elapsed = time.perf_counter() - t0
        sender.join()
        if got != expected:
            raise RuntimeError(f"the client got {got} JSON lines, expected {expected}")
        return elapsed, _cpu_seconds(self.proc.pid) - cpu0, got

    def close(self) -> None:
        stop_server(self.proc)
        self.client.close()
        if self.ami.conn is not None:
            self.ami.conn.close()
        self.ami.listener.close()


def run(events: int = 200_000, repeats: int = 3) -> dict[str, Any]:
    """The figures of both readers on the same stream, best of ``repeats`` each."""
    server_runs, cpu_runs, naive_runs = [], [], []
    server = Server()
    try:
        for r in range(repeats):
            # Fresh Uniqueids each pass: a call the model still lingers on is
            # never met again.
            stream, total, calls = build_stream(events, BASE + 10_000_000 * r)
            seconds, cpu, _ = server.run_once(stream, calls)
            server_runs.append(seconds)
            cpu_runs.append(cpu)
            naive_runs.append(_naive_once(stream, total))
    finally:
        server.close()
    best_server, best_naive = min(server_runs), min(naive_runs)
    return {
        "benchmark": "e2e_throughput",
        "ami_events": total,
        "calls": calls,
        "lines": LINES,
        "tapi_events": calls * TAPI_EVENTS_PER_CALL,
        "server_events_per_s": round(total / best_server),
        "naive_events_per_s": round(total / best_naive),
        "ratio": round(best_naive / best_server, 3),
        "server_cpu_s": round(cpu_runs[server_runs.index(best_server)], 2),
        "all_server_runs_s": [round(s, 3) for s in server_runs],
        "all_naive_runs_s": [round(s, 3) for s in naive_runs],
        "all_server_cpu_s": [round(s, 2) for s in cpu_runs],
        "target_ratio": 0.8,
    }


def run_metrics_compare(events: int = 200_000, repeats: int = 5) -> dict[str, Any]:
    """The whole server with ``[metrics] enabled`` on and off, two children, passes interleaved
    (on, off, off, on, ...) so load drift on a shared machine hits both alike; best of each."""
    servers = {True: Server(metrics=True), False: Server(metrics=False)}
    runs: dict[bool, list[float]] = {True: [], False: []}
    try:
        for r in range(repeats):
            stream, total, calls = build_stream(events, BASE + 10_000_000 * r)
            for on in ((True, False) if r % 2 == 0 else (False, True)):
                runs[on].append(servers[on].run_once(stream, calls)[0])
    finally:
        for server in servers.values():
            server.close()
    on_rate, off_rate = total / min(runs[True]), total / min(runs[False])
    return {
        "benchmark": "e2e_throughput_metrics",
        "ami_events": total,
        "metrics_on_events_per_s": round(on_rate),
        "metrics_off_events_per_s": round(off_rate),
        "on_over_off": round(on_rate / off_rate, 3),
        "runs_on_s": [round(x, 3) for x in runs[True]],
        "runs_off_s": [round(x, 3) for x in runs[False]],
        "target": ">= 0.95",
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--consume", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--total", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--metrics-compare", action="store_true",
                    help="whole server with [metrics] on vs off (two children, interleaved passes)")
    args = ap.parse_args(argv)
    if args.consume:
        consume(args.consume, args.total)
        return 0
    if args.metrics_compare:
        f = run_metrics_compare(args.events, args.repeats)
        if args.json:
            print(json.dumps(f))
            return 0
        print(f"End-to-end throughput with and without metrics, {f['ami_events']:,} AMI events, best of "
              f"{len(f['runs_on_s'])}:")
        print(f"  metrics on : {f['metrics_on_events_per_s']:>10,} AMI events/s   runs (s) {f['runs_on_s']}")
        print(f"  metrics off: {f['metrics_off_events_per_s']:>10,} AMI events/s   runs (s) {f['runs_off_s']}")
        print(f"  on / off: {f['on_over_off']:.3f}   (target >= 0.95)")
        return 0
    f = run(args.events, args.repeats)
    if args.json:
        print(json.dumps(f))
        return 0
    print(f"End-to-end throughput, {f['ami_events']:,} AMI events ({f['calls']:,} calls on {f['lines']} lines, "
          f"the real inbound capture's mix), best of {len(f['all_server_runs_s'])}:")
    print(f"  whole server (filter, mapping, call model, JSON to one client): {f['server_events_per_s']:>10,} AMI events/s,"
          f" {f['tapi_events']:,} TAPI events delivered, server CPU {f['server_cpu_s']} s")
    print(f"  naive consumer (a dict per message, no filter):                 {f['naive_events_per_s']:>10,} AMI events/s")
    print(f"  ratio server / naive: {f['ratio']:.2f}   (target >= {f['target_ratio']})")
    print(f"  runs (s): server {f['all_server_runs_s']}, naive {f['all_naive_runs_s']}, server CPU {f['all_server_cpu_s']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
