"""End-to-end throughput: the whole server against a naive full-parse AMI consumer.

One scripted Asterisk stream per event mix, read twice over loopback in the same run:

* **The server** (a child process: ``service.make_service`` with a real AMI
  login, the parser with its event filter, the built-in mappings, the call
  model, the hub and the client listener, exactly as ``bench/e2e_latency.py``
  starts it).  One client in this process has every line of the mix open and
  counts the JSON lines it gets; a pass fails loudly unless it gets exactly
  the mix's client events per call.
* **A naive consumer** (another child): a minimal Twisted protocol that
  splits on the blank line and turns *every* message into a dict of its
  headers, with no filter: what a first AMI client written in an afternoon
  does.

The mixes (``--mix``; ``both`` = real and tapi-dense, the default; ``all``
adds device-lines), call after call with fresh Uniqueids until at least
``--events`` AMI events:

* **real**: every event of the real inbound-call capture
  ``tests/data/ami/05_inbound_call.monitor.raw`` (135 events, 7 TAPI
  UserEvents: about 19 other events per UserEvent), on ``line_0`` ...
  ``line_63``; 5 client events per call (NEWCALL, OFFERING, CALLINFO,
  CONNECTED, IDLE).  Target >= 1.0 (issue 25).
* **tapi-dense**: the same call cut to its 7 TAPI UserEvents and 21 of its
  other events (the middle event of each of 21 equal slices of the 128
  others, so the noise keeps the capture's proportions: 5 VarSet, 3
  DeviceStateChange, one Newchannel, one Hangup, ...), in capture order:
  28 events per call, one UserEvent in four; 64 lines, the same 5 client
  events per call.  Target >= 0.8 (issue 25).
* **device-lines**: every event of the real Asterisk 22 capture
  ``tests/data/ami-native/s01_inbound_ringgroup_answered.raw`` (99 events,
  no UserEvent: a ring group on two SIP phones, 201 answers), on a server
  with the device lines ``bob = PJSIP/201`` and ``bobbett = PJSIP/202``
  configured (its own child: device lines change which events the server
  decodes); the client opens both lines and gets 10 events per call (6 on
  bob: NEWCALL, OFFERING, CALLINFO, CONNECTED, DISCONNECTED, IDLE; 4 on
  bobbett).  No target yet.

The mixes of one run take turns pass by pass (so load drift on a shared
machine hits them alike); each is written as fast as the reader takes it,
in 64 KiB pieces cut at event ends, with the scripted Asterisk's answers to
the server's actions (a Getvar of each caller's presentation, which holds
the call's events until it is answered) sent between the pieces.

Rate = AMI events / (first byte written -> last JSON line read by the
client, or the consumer's last message parsed).  The server's CPU seconds
come from ``/proc/<pid>/stat`` before and after the stream, the naive
consumer's from its own ``process_time``.  Best of ``--repeats`` for each
side; ``ratio`` from the best of each, ``cpu_ratio`` (naive CPU / server
CPU, best of each) beside it: less moved by other work on the machine.
The load average is read before and after (``load``).

    .venv/bin/python bench/e2e_throughput.py
    .venv/bin/python bench/e2e_throughput.py --mix all --events 400000 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
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
DENSE_NOISE = 21
NATIVE = ROOT / "tests" / "data" / "ami-native" / "s01_inbound_ringgroup_answered.raw"
NATIVE_ID = b"1795691913."
NATIVE_CHANNELS = (b"PJSIP/201-00000000", b"PJSIP/202-00000001")
DEVICE_LINES = {"bob": "PJSIP/201", "bobbett": "PJSIP/202"}
DEVICE_EVENTS_PER_CALL = 10


def _dialplan_call(template: bytes, k: int, base: int) -> bytes:
    """Call ``k`` of a capture-05 mix: its Uniqueids from ``base + k``, on ``line_{k % 64}``."""
    return template.replace(CAPTURE_ID, b"%d." % (base + k)).replace(b"line_1", b"line_%d" % (k % LINES))


def _device_call(template: bytes, k: int, base: int) -> bytes:
    """Call ``k`` of the s01 mix: its Uniqueids from ``base + k``, its phone channels numbered anew."""
    out = template.replace(NATIVE_ID, b"%d." % (base + k))
    for i, channel in enumerate(NATIVE_CHANNELS):
        out = out.replace(channel, channel[:-8] + b"%08x" % (2 * k + i))
    return out


def dense_events() -> list[bytes]:
    """The tapi-dense call: the capture's 7 UserEvents and 21 evenly spread other events, in capture order."""
    events = capture_events()
    others = [i for i, e in enumerate(events) if not e.startswith(b"Event: UserEvent\r\n")]
    picked = {others[(2 * j + 1) * len(others) // (2 * DENSE_NOISE)] for j in range(DENSE_NOISE)}
    return [e for i, e in enumerate(events) if i in picked or e.startswith(b"Event: UserEvent\r\n")]


def native_events() -> list[bytes]:
    """Every event of the s01 capture (the login response and the Goodbye are no events)."""
    data = NATIVE.read_bytes().split(b"\r\n", 1)[1]
    return [b.lstrip(b"\r\n") + b"\r\n\r\n" for b in data.split(b"\r\n\r\n") if b.lstrip(b"\r\n").startswith(b"Event: ")]


@dataclass(frozen=True)
class Mix:
    """One event mix: a call's events, how to make call ``k`` of it, and what one client gets per call."""

    name: str
    title: str
    events: list[bytes]
    call: Callable[[bytes, int, int], bytes]
    client_events: int
    lines: tuple[str, ...]
    target: float | None
    devices: dict[str, str] = field(default_factory=dict)


def mixes() -> dict[str, Mix]:
    dialplan_lines = tuple(f"line_{i}" for i in range(LINES))
    return {
        "real": Mix("real", "the real inbound capture's mix", capture_events(), _dialplan_call,
                    TAPI_EVENTS_PER_CALL, dialplan_lines, 1.0),
        "tapi-dense": Mix("tapi-dense", "TAPI-dense: 7 UserEvents + 21 other events per call", dense_events(),
                          _dialplan_call, TAPI_EVENTS_PER_CALL, dialplan_lines, 0.8),
        "device-lines": Mix("device-lines", "device lines: the ring-group capture s01, no UserEvent", native_events(),
                            _device_call, DEVICE_EVENTS_PER_CALL, tuple(DEVICE_LINES), None, DEVICE_LINES),
    }


MIX_CHOICES = {"real": ("real",), "tapi-dense": ("tapi-dense",), "device-lines": ("device-lines",),
               "both": ("real", "tapi-dense"), "all": ("real", "tapi-dense", "device-lines")}


def build_stream(min_events: int, base: int = BASE, mix: Mix | None = None) -> tuple[bytes, int, int]:
    """``(stream, AMI events, calls)``: the mix's events (default: the real
    capture's), one call after another, Uniqueids from ``base`` on."""
    mix = mix or mixes()["real"]
    template = b"".join(mix.events)
    per_call = len(mix.events)
    calls = -(-min_events // per_call)
    return b"".join(mix.call(template, k, base) for k in range(calls)), per_call * calls, calls


def _pieces(stream: bytes, size: int = 65536) -> list[bytes]:
    """``stream`` in pieces of about ``size`` bytes, each ending with an event's blank line."""
    out, start = [], 0
    while start < len(stream):
        end = stream.find(b"\r\n\r\n", start + size)
        end = len(stream) if end < 0 else end + 4
        out.append(stream[start:end])
        start = end
    return out


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
                self.cpu0 = time.process_time()
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
                print(json.dumps({"seconds": time.perf_counter() - self.t0, "events": self.events,
                                  "cpu": time.process_time() - self.cpu0}), flush=True)
                self.transport.loseConnection()
                reactor.stop()

    TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(Factory.forProtocol(FullParse))
    reactor.run()


# -- driver (this process) ----------------------------------------------------------------


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _naive_once(stream: bytes, total: int) -> tuple[float, float]:
    """``(seconds, CPU seconds)`` of the naive consumer reading ``stream``."""
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
    return result["seconds"], result["cpu"]


class Server:
    """The real server in a child, its scripted Asterisk and one client with ``lines`` open."""

    def __init__(self, metrics: bool = True, lines: tuple[str, ...] | None = None,
                 devices: dict[str, str] | None = None, store: bool = True) -> None:
        lines = tuple(f"line_{i}" for i in range(LINES)) if lines is None else lines
        self.ami = ScriptedAsterisk()
        # The call store on, as by default, in a file of this server's own; off
        # (store=False) where calls are counted: its batch writes follow the clock.
        self.tmp = tempfile.TemporaryDirectory(prefix="asttapi-bench-")
        settings: dict[str, Any] = {
            "calls.state_file": os.path.join(self.tmp.name, "calls.json") if store else "",
            # Pings an hour apart: the scripted Asterisk answers only while this
            # server streams, and it may wait idle longer than the pong timeout.
            "ami.keepalive": 3600,
            # The one client is read by the loop that also answers the server's
            # Getvars; on a loaded machine it may fall behind the default 1 MiB.
            "server.send_buffer_bytes": 1 << 28,
            **{f"lines.{name}.device": device for name, device in (devices or {}).items()},
        }
        args = [f"--set={key}={json.dumps(value)}" for key, value in settings.items()]
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "e2e_latency.py"), "--serve", str(self.ami.port),
                                      *args],
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
        for i, line in enumerate(lines):
            req = {"jsonrpc": "2.0", "id": i + 1, "method": "lineOpen", "params": {"line": line}}
            self.client.sendall(json.dumps(req).encode() + b"\n")
        self.read_lines(lambda text: text.count('"result"') >= len(lines))

    def read_lines(self, done: Any) -> int:
        """Read client lines until ``done(text so far)``; returns how many."""
        text = b""
        while not done(text.decode(errors="replace")):
            chunk = self.client.recv(262144)
            if not chunk:
                raise RuntimeError("the server closed the client connection")
            text += chunk
        return text.count(b"\n")

    def run_once(self, stream: bytes, calls: int, per_call: int = TAPI_EVENTS_PER_CALL) -> tuple[float, float, int]:
        """``(seconds, server CPU seconds, client events)`` for one pass of the stream.

        The server's actions are answered meanwhile, as Asterisk does (a
        Getvar of each caller's presentation holds the call's events until
        its answer): the answers go out between the stream's 64 KiB pieces,
        each cut at an event's end, and after the stream until the client
        has every event."""
        expected = calls * per_call
        conn = self.ami.conn
        assert conn is not None
        pieces = _pieces(stream)
        outbox: queue.Queue[bytes | None] = queue.Queue()

        def pump() -> None:
            for piece in pieces:
                while True:
                    try:
                        answer = outbox.get_nowait()
                    except queue.Empty:
                        break
                    if answer is not None:
                        conn.sendall(answer)
                conn.sendall(piece)
            while (answer := outbox.get()) is not None:
                conn.sendall(answer)

        self.ami.send = outbox.put  # type: ignore[method-assign]  # (the scripted answers, queued)
        sel = selectors.DefaultSelector()
        sel.register(self.client, selectors.EVENT_READ, "client")
        sel.register(conn, selectors.EVENT_READ, "ami")
        cpu0 = _cpu_seconds(self.proc.pid)
        got = 0
        sender = threading.Thread(target=pump, daemon=True)
        t0 = time.perf_counter()
        sender.start()
        try:
            while got < expected:
                ready = sel.select(30)
                if not ready:
                    raise TimeoutError(f"the client got {got} JSON lines of {expected}, then nothing for 30 s")
                for key, _ in ready:
                    if key.data == "ami":
                        self.ami.readable()
                        continue
                    chunk = self.client.recv(1 << 20)
                    if not chunk:
                        raise RuntimeError("the server closed the client connection")
                    got += chunk.count(b"\n")
            elapsed = time.perf_counter() - t0
        finally:
            outbox.put(None)
            sender.join()
            sel.close()
            del self.ami.send
        if got != expected:
            raise RuntimeError(f"the client got {got} JSON lines, expected {expected}")
        return elapsed, _cpu_seconds(self.proc.pid) - cpu0, got

    def close(self) -> None:
        stop_server(self.proc)
        self.client.close()
        if self.ami.conn is not None:
            self.ami.conn.close()
        self.ami.listener.close()
        self.tmp.cleanup()


def _figures(mix: Mix, total: int, calls: int, server_runs: list[float], cpu_runs: list[float],
             naive_runs: list[float], naive_cpu_runs: list[float]) -> dict[str, Any]:
    best_server, best_naive = min(server_runs), min(naive_runs)
    return {
        "mix": mix.name,
        "ami_events": total,
        "calls": calls,
        "lines": len(mix.lines),
        "ami_events_per_call": len(mix.events),
        "tapi_events": calls * mix.client_events,
        "server_events_per_s": round(total / best_server),
        "naive_events_per_s": round(total / best_naive),
        "ratio": round(best_naive / best_server, 3),
        "server_cpu_s": round(cpu_runs[server_runs.index(best_server)], 2),
        "all_server_runs_s": [round(s, 3) for s in server_runs],
        "all_naive_runs_s": [round(s, 3) for s in naive_runs],
        "all_server_cpu_s": [round(s, 2) for s in cpu_runs],
        "target_ratio": mix.target,
        # CPU seconds of each side, best against best: what the ratio would read with
        # a core to each, less moved by a loaded machine than the wall-clock ratio
        "cpu_ratio": round(min(naive_cpu_runs) / max(min(cpu_runs), 1e-9), 3),
        "all_naive_cpu_s": [round(s, 2) for s in naive_cpu_runs],
    }


def run(events: int = 200_000, repeats: int = 3, mix: str = "both") -> dict[str, Any]:
    """The figures of both readers on each mix's stream, best of ``repeats`` each.

    The top-level keys are the first mix's figures (``real`` when it runs, as
    before mixes existed); ``mixes`` holds every mix's, by name."""
    chosen = [mixes()[name] for name in MIX_CHOICES[mix]]
    servers: dict[tuple, Server] = {}
    runs: dict[str, tuple[list[float], ...]] = {m.name: ([], [], [], []) for m in chosen}
    sizes: dict[str, tuple[int, int]] = {}
    load_before = os.getloadavg()[0]
    try:
        for r in range(repeats):
            for i, m in enumerate(chosen):
                # Fresh Uniqueids each pass: a call the model still lingers on is
                # never met again.
                stream, total, calls = build_stream(events, BASE + 10_000_000 * (r * len(chosen) + i), m)
                sizes[m.name] = (total, calls)
                key = tuple(sorted(m.devices.items()))
                if key not in servers:
                    servers[key] = Server(devices=m.devices, lines=m.lines)
                server_s, cpu_s, naive_s, naive_cpu_s = runs[m.name]
                seconds, cpu, _ = servers[key].run_once(stream, calls, m.client_events)
                server_s.append(seconds)
                cpu_s.append(cpu)
                seconds, cpu = _naive_once(stream, total)
                naive_s.append(seconds)
                naive_cpu_s.append(cpu)
    finally:
        for server in servers.values():
            server.close()
    per_mix = {m.name: _figures(m, *sizes[m.name], *runs[m.name]) for m in chosen}
    first = per_mix[chosen[0].name]
    return {"benchmark": "e2e_throughput", **first, "mixes": per_mix,
            "load": [round(load_before, 2), round(os.getloadavg()[0], 2)]}


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
    ap.add_argument("--mix", choices=tuple(MIX_CHOICES), default="both",
                    help="event mix(es): both = real and tapi-dense; all adds device-lines (default: both)")
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
    f = run(args.events, args.repeats, args.mix)
    if args.json:
        print(json.dumps(f))
        return 0
    print(f"End-to-end throughput, best of {args.repeats}, load average {f['load'][0]} before, {f['load'][1]} after:")
    titles = {name: m.title for name, m in mixes().items()}
    for m in f["mixes"].values():
        target = "no target" if m["target_ratio"] is None else f"target >= {m['target_ratio']}"
        print(f"{m['mix']}: {m['ami_events']:,} AMI events ({m['calls']:,} calls on {m['lines']} lines, "
              f"{titles[m['mix']]}, {m['ami_events_per_call']} per call)")
        print(f"  whole server (filter, mapping, call model, JSON to one client): {m['server_events_per_s']:>10,} AMI events/s,"
              f" {m['tapi_events']:,} TAPI events delivered, server CPU {m['server_cpu_s']} s")
        print(f"  naive consumer (a dict per message, no filter):                 {m['naive_events_per_s']:>10,} AMI events/s")
        print(f"  ratio server / naive: {m['ratio']:.2f}   ({target}); CPU seconds naive / server: {m['cpu_ratio']:.2f}")
        print(f"  runs (s): server {m['all_server_runs_s']}, naive {m['all_naive_runs_s']}, server CPU"
              f" {m['all_server_cpu_s']}, naive CPU {m['all_naive_cpu_s']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
