"""Fan-out benchmark: N clients over real loopback TCP, each with its own line.

The server (hub + client protocol + a do-nothing bridge) runs in a child
process with its own reactor; the clients run in this process on plain
non-blocking sockets with ``selectors``, so client work never delays the
server's reactor and the measured latency is honest. Events are published
into the hub at a fixed call rate (6 events per call, the size of a real
inbound call: NEWCALL, OFFERING, CALLINFO, CONNECTED, DISCONNECTED, IDLE),
call k on line k % N. Each event carries the ``time.monotonic_ns()`` of its
``Hub.publish`` call (CLOCK_MONOTONIC is system-wide on Linux), and a client
records when the complete line has arrived at its socket: that difference is
the latency reported (publish → line out of the client's socket). The
AMI-to-model part of the path belongs to the core's benchmark.

Every client must get every event of its line, in seq order, and none of
another line's: the run fails loudly otherwise.

Then a burst phase publishes events as fast as the server can and reports the
delivered throughput.

    .venv/bin/python bench/clients_fanout.py                 # 10, 100, 1000 clients
    .venv/bin/python bench/clients_fanout.py --clients 1000 --rate 100 --duration 10

``run()`` returns the figures as a list of dicts.
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
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EVENTS = (
    ("LINE_NEWCALL", None, None),
    ("LINE_CALLSTATE", "LINECALLSTATE_OFFERING", None),
    ("LINE_CALLINFO", "LINECALLINFOSTATE_CALLERID", None),
    ("LINE_CALLSTATE", "LINECALLSTATE_CONNECTED", "LINECONNECTEDMODE_ACTIVE"),
    ("LINE_CALLSTATE", "LINECALLSTATE_DISCONNECTED", "LINEDISCONNECTMODE_NORMAL"),
    ("LINE_CALLSTATE", "LINECALLSTATE_IDLE", None),
)


# -- server (child process) --------------------------------------------------------


def _rss_kib() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1])
    return out


def serve() -> None:
    sys.path.insert(0, str(ROOT))
    from twisted.internet import reactor, stdio, task
    from twisted.internet.defer import fail
    from twisted.internet.endpoints import TCP4ServerEndpoint
    from twisted.protocols.basic import LineReceiver

    from asttapi_server.clients.hub import Hub
    from asttapi_server.clients.protocol import ClientFactory
    from asttapi_server.core.events import TapiEvent
    from asttapi_server.errors import TelephonyError

    class NoModel:
        def get(self, handle: int) -> None:
            return None

        def calls_on_line(self, line: str) -> list:
            return []

        def snapshot(self, call: Any, line: str) -> dict:
            return {}

    class NoTelephony:
        link_up = True
        model = NoModel()

        def make_call(self, line: str, number: str, owner: Any) -> Any:
            return fail(TelephonyError("LINEERR_OPERATIONUNAVAIL", "benchmark"))

        drop = blind_transfer = make_call

    hub = Hub(ring_size=10000)
    # Every benchmark client comes from 127.0.0.1: lift the per-address limit (docs/security.md).
    from asttapi_server.clients.limits import ConnectionLimits

    limits = ConnectionLimits(max_clients=100_000, max_clients_per_address=100_000)
    factory = ClientFactory(hub, NoTelephony(), users={}, clock=reactor, limits=limits)
    baseline = _rss_kib()

    def callinfo(k: int) -> dict:
        return {
            "callerid": f"0301234{k % 1000:03d}", "calleridname": "Alice Example", "calledid": "200",
            "calledidname": "Sales", "connectedid": "", "connectedidname": "",
            "origin": "LINECALLORIGIN_EXTERNAL", "uniqueid": f"1700000000.{k}",
        }

    def publish(k: int, i: int, n: int) -> None:
        msg, param, mode = EVENTS[i]
        info = callinfo(k)
        info["t"] = time.monotonic_ns()
        hub.publish(TapiEvent(msg, f"bench_{k % n}", k + 1, param, mode, info))

    class Control(LineReceiver):
        delimiter = b"\n"

        def reply(self, obj: dict) -> None:
            obj.update(rss=_rss_kib(), baseline=baseline, connections=len(factory.connections))
            self.sendLine(b"DONE " + json.dumps(obj).encode())

        def lineReceived(self, line: bytes) -> None:
            cmd, *args = line.decode().split()
            if cmd == "stat":
                self.reply({})
            elif cmd == "go":
                self.go(int(args[0]), float(args[1]), float(args[2]))
            elif cmd == "burst":
                self.burst(int(args[0]), int(args[1]))
            elif cmd == "quit":
                reactor.stop()

        def go(self, n: int, cps: float, duration: float) -> None:
            rate = cps * len(EVENTS)  # events per second
            total = int(rate * duration)
            start = time.monotonic()
            state = {"done": 0}

            def tick() -> None:
                due = min(total, int((time.monotonic() - start) * rate))
                while state["done"] < due:
                    j = state["done"]
                    publish(j // len(EVENTS), j % len(EVENTS), n)
                    state["done"] += 1
                if state["done"] >= total:
                    loop.stop()
                    self.reply({"published": total, "seq": hub.seq})

            loop = task.LoopingCall(tick)
            loop.start(0.001)

        def burst(self, n: int, total: int) -> None:
            state = {"done": 0, "t0": time.monotonic()}
            chunk = 200

            def step() -> None:
                end = min(total, state["done"] + chunk)
                for j in range(state["done"], end):
                    publish(j // len(EVENTS), j % len(EVENTS), n)
                state["done"] = end
                if end < total:
                    reactor.callLater(0, step)
                else:
                    self.reply({"published": total, "seq": hub.seq, "publish_s": time.monotonic() - state["t0"]})

            step()

    def listening(port: Any) -> None:
        stdio.StandardIO(Control())
        sys.stdout.write(f"PORT {port.getHost().port}\n")
        sys.stdout.flush()

    TCP4ServerEndpoint(reactor, 0, backlog=1024, interface="127.0.0.1").listen(factory).addCallback(listening)
    reactor.run()


# -- clients (this process) ---------------------------------------------------------


class BenchClient:
    __slots__ = ("sock", "line", "buf", "got", "last_seq", "bad", "open")

    def __init__(self, port: int, line: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.line = line
        self.buf = b""
        self.got = 0
        self.last_seq = 0
        self.bad: list[str] = []
        self.open = False
        self.sock.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "lineOpen", "params": {"line": line}}).encode() + b"\n")


class Bench:
    def __init__(self, n: int) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=ROOT
        )
        line = self.proc.stdout.readline().decode()
        assert line.startswith("PORT "), line
        self.port = int(line.split()[1])
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.proc.stdout, selectors.EVENT_READ, None)
        self.ctl_buf = b""
        self.latencies: list[int] = []
        self.clients: list[BenchClient] = []
        for i in range(n):
            c = BenchClient(self.port, f"bench_{i}")
            self.clients.append(c)
            self.sel.register(c.sock, selectors.EVENT_READ, c)
            if i % 50 == 49:
                self.pump_until(lambda: all(x.open for x in self.clients), 30)
        self.pump_until(lambda: all(x.open for x in self.clients), 30)

    def command(self, text: str, timeout: float) -> dict:
        self.proc.stdin.write(text.encode() + b"\n")
        self.proc.stdin.flush()
        result: list[dict] = []
        self.pump_until(lambda: bool(result), timeout, result)
        return result[0]

    def pump_until(self, done: Any, timeout: float, result: list | None = None) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError("benchmark step timed out")
            for key, _ in self.sel.select(0.05):
                if key.data is None:
                    data = os.read(self.proc.stdout.fileno(), 65536)
                    self.ctl_buf += data
                    while b"\n" in self.ctl_buf:
                        ln, self.ctl_buf = self.ctl_buf.split(b"\n", 1)
                        if ln.startswith(b"DONE ") and result is not None:
                            result.append(json.loads(ln[5:]))
                else:
                    self.read(key.data)

    def read(self, c: BenchClient) -> None:
        try:
            data = c.sock.recv(262144)
        except BlockingIOError:
            return
        now = time.monotonic_ns()
        if not data:
            c.bad.append("connection closed")
            self.sel.unregister(c.sock)
            return
        buf = c.buf + data
        *lines, c.buf = buf.split(b"\n")
        for ln in lines:
            msg = json.loads(ln)
            if "method" not in msg:
                if msg.get("id") == 1 and "result" in msg:
                    c.open = True
                elif msg.get("method") != "hello":
                    c.bad.append(f"unexpected {msg}")
                continue
            if msg["method"] == "hello":
                continue
            p = msg["params"]
            if p["line"] != c.line:
                c.bad.append(f"event of {p['line']} on {c.line}")
            if p["seq"] <= c.last_seq:
                c.bad.append("seq out of order")
            c.last_seq = p["seq"]
            c.got += 1
            self.latencies.append(now - p["callinfo"]["t"])

    def close(self) -> None:
        try:
            self.proc.stdin.write(b"quit\n")
            self.proc.stdin.flush()
        except OSError:
            pass
        self.proc.wait(10)
        for c in self.clients:
            c.sock.close()
        self.sel.close()


def _pct(values: list[int], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(p / 100 * len(s)))] / 1e6


def _expected(n: int, total_events: int) -> list[int]:
    per = [0] * n
    for j in range(total_events):
        per[(j // len(EVENTS)) % n] += 1
    return per


def run_one(n: int, cps: float = 100.0, duration: float = 10.0, burst: int = 30000) -> dict:
    b = Bench(n)
    try:
        connected = b.command("stat", 10)
        t0 = time.monotonic()
        done = b.command(f"go {n} {cps} {duration}", duration + 60)
        expected = _expected(n, done["published"])
        b.pump_until(lambda: all(c.got >= e for c, e in zip(b.clients, expected)), 10)
        elapsed = time.monotonic() - t0
        bad = [(c.line, c.bad[:3]) for c in b.clients if c.bad]
        wrong = [(c.line, c.got, e) for c, e in zip(b.clients, expected) if c.got != e]
        if bad or wrong:
            raise AssertionError(f"delivery broken: {bad[:5]} {wrong[:5]}")
        lat = b.latencies
        figures = {
            "clients": n,
            "calls_per_s": cps,
            "events": len(lat),
            "events_per_s": round(len(lat) / elapsed, 1),
            "p50_ms": round(_pct(lat, 50), 3),
            "p99_ms": round(_pct(lat, 99), 3),
            "max_ms": round(_pct(lat, 100), 3),
            "server_rss_mib_idle": round(connected["baseline"]["VmRSS"] / 1024, 1),
            "server_rss_mib_connected": round(connected["rss"]["VmRSS"] / 1024, 1),
            "server_rss_mib_peak": round(done["rss"]["VmHWM"] / 1024, 1),
        }
        # burst: as fast as the server can publish and write
        for c in b.clients:
            c.got = 0
        b.latencies = []
        t0 = time.monotonic()
        result = b.command(f"burst {n} {burst}", 120)
        expected = _expected(n, burst)
        b.pump_until(lambda: all(c.got >= e for c, e in zip(b.clients, expected)), 60)
        took = time.monotonic() - t0
        if any(c.bad for c in b.clients) or any(c.got != e for c, e in zip(b.clients, expected)):
            raise AssertionError("delivery broken in the burst")
        figures["burst_events"] = burst
        figures["burst_events_per_s"] = round(burst / took)
        figures["burst_p99_ms"] = round(_pct(b.latencies, 99), 1)
        figures["server_rss_mib_after_burst"] = round(result["rss"]["VmHWM"] / 1024, 1)
        return figures
    finally:
        b.close()


def run(clients: tuple[int, ...] = (10, 100, 1000), cps: float = 100.0, duration: float = 10.0,
        burst: int = 30000) -> list[dict]:
    """Run the benchmark for each client count; returns one dict of figures per count."""
    return [run_one(n, cps, duration, burst) for n in clients]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--clients", type=int, nargs="+", default=[10, 100, 1000])
    ap.add_argument("--rate", type=float, default=100.0, help="calls per second (6 events each)")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of steady load per client count")
    ap.add_argument("--burst", type=int, default=30000, help="events in the throughput burst")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.serve:
        serve()
        return 0
    rows = []
    for n in args.clients:
        row = run_one(n, args.rate, args.duration, args.burst)
        rows.append(row)
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            print(
                f"{row['clients']:>5} clients  {row['calls_per_s']:g} calls/s: {row['events']} events, "
                f"p50 {row['p50_ms']:.3f} ms  p99 {row['p99_ms']:.3f} ms  max {row['max_ms']:.2f} ms | "
                f"burst {row['burst_events_per_s']} events/s | server RSS idle {row['server_rss_mib_idle']} MiB, "
                f"connected {row['server_rss_mib_connected']} MiB, peak {row['server_rss_mib_after_burst']} MiB",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
