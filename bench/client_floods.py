"""Flooding clients against a well-behaved one (issue 11, item 3): ping p50/p99.

The server (hub with a full replay ring, client protocol with its default
limits, the real call model with a live call) runs in a child process with its
own reactor; each flooder runs in another child process; the well-behaved
client runs here and sends a ``ping`` every 25 ms (40/s, under the default
50/s limit), measuring each round trip. Scenarios:

* ``quiet``: nobody floods (the baseline);
* ``callinfo``: one client pipelines ``lineGetCallInfo`` as fast as its
  socket allows, reconnecting whenever the server closes it;
* ``open-seq``: the same with ``lineOpen {"seq": 1}`` on lines with nothing in
  the ring (10,000 events of another line are in it);
* ``max-lines``: a client opens ``server.max_lines_per_session`` lines, then
  floods ``lineGetCallInfo``;
* then, without sockets, the cost of one ``lineGetCallInfo`` and one
  ``lineOpen {"seq": 1}`` with 1, 100 and 20,000 lines open on the session
  (limits lifted): it must not grow with the lines (it once sorted them all,
  and walked the whole replay ring).

The server also reports the longest time its reactor did not get to run a
5 ms timer ("stall"). On a loaded machine every figure is noisier.

    .venv/bin/python bench/client_floods.py              # every scenario, 8 s each
    .venv/bin/python bench/client_floods.py --seconds 4 --only callinfo open-seq

Prints one row per scenario; fails loudly if the pinger loses a reply.
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
SCENARIOS = ("quiet", "callinfo", "open-seq", "max-lines")


# -- server (child process) ------------------------------------------------------------


def serve() -> None:
    sys.path.insert(0, str(ROOT))
    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ServerEndpoint

    from asttapi_server.clients.hub import Hub
    from asttapi_server.clients.protocol import ClientFactory
    from asttapi_server.core import grammar
    from asttapi_server.core.events import TapiEvent
    from asttapi_server.core.model import CallModel

    model = CallModel()
    # One live ring-group call, so lineGetCallInfo goes through the rights check.
    for text in ("LINE_NEWCALL line_1 line_2", "LINE_CALLSTATE LINECALLSTATE_OFFERING"):
        model.apply(grammar.TapiSignal(grammar.parse_tapievent(text), "1.1", "PJSIP/t-1"), 0.0)

    class Telephony:
        link_up = True

        def __init__(self) -> None:
            self.model = model

        def make_call(self, *a: Any, **k: Any) -> Any:
            raise NotImplementedError

        drop = blind_transfer = make_call

    hub = Hub(ring_size=10000)
    for _ in range(10000):
        hub.publish(TapiEvent("LINE_CALLINFO", "busy", 1, "LINECALLINFOSTATE_OTHER"))
    factory = ClientFactory(hub, Telephony(), users={}, clock=reactor)

    stall = {"max": 0.0, "last": time.monotonic()}

    started = time.monotonic()

    def probe() -> None:
        now = time.monotonic()
        if now - started > 1.0:
            stall["max"] = max(stall["max"], now - stall["last"] - 0.005)
        stall["last"] = now

    from twisted.internet import task

    task.LoopingCall(probe).start(0.005)

    def report() -> None:
        print(f"STALL {stall['max'] * 1000:.1f}", flush=True)

    import signal

    signal.signal(signal.SIGTERM, lambda *_: reactor.callFromThread(reactor.stop))
    reactor.addSystemEventTrigger("before", "shutdown", report)

    def listening(port: Any) -> None:
        print(f"PORT {port.getHost().port}", flush=True)

    TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory).addCallback(listening)
    reactor.run()


# -- flooder (child process) -------------------------------------------------------------


def request(rid: int, method: str, **params: Any) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params}).encode() + b"\n"


def flood(port: int, kind: str) -> None:
    """Send as fast as the socket takes it; reconnect when closed. Prints counts on SIGTERM."""
    import signal

    counts = {"sent": 0, "limited": 0, "closed": 0, "answers": 0}

    def report(*_: Any) -> None:
        print(json.dumps(counts), flush=True)
        os._exit(0)

    signal.signal(signal.SIGTERM, report)
    lines = 100
    while True:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = sock.makefile("rb")
        reader.readline()  # hello
        if kind == "max-lines":  # in one burst the limit allows
            sock.sendall(b"".join(request(i, "lineOpen", line=f"m{i}") for i in range(lines)))
            for _ in range(lines):
                reader.readline()
        rid = 0
        if kind == "open-seq":
            batch = b"".join(request(i, "lineOpen", line=f"e{i % 50}", seq=1) for i in range(200))
        else:
            batch = b"".join(request(i, "lineGetCallInfo", call=1) for i in range(200))
        sock.setblocking(False)
        sel = selectors.DefaultSelector()
        sel.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
        pending = b""
        alive = True
        while alive:
            for _key, mask in sel.select(1.0):
                if mask & selectors.EVENT_WRITE:
                    if not pending:
                        pending = batch
                    try:
                        n = sock.send(pending)
                    except (BlockingIOError, InterruptedError):
                        n = 0
                    except OSError:
                        alive = False
                        break
                    counts["sent"] += pending[:n].count(b"\n") if n else 0
                    pending = pending[n:]
                if mask & selectors.EVENT_READ:
                    try:
                        data = sock.recv(1 << 20)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        data = b""
                    if not data:
                        alive = False
                        break
                    counts["answers"] += data.count(b"\n")
                    counts["limited"] += data.count(b"-32003")
            rid += 1
        counts["closed"] += 1
        sel.close()
        sock.close()


# -- the well-behaved client (here) --------------------------------------------------------


def pinger(port: int, seconds: float, interval: float = 0.025) -> dict[str, Any]:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    reader = sock.makefile("rb")
    reader.readline()
    sock.sendall(request(0, "lineOpen", line="line_1"))
    reader.readline()
    times: list[float] = []
    end = time.monotonic() + seconds
    rid = 0
    while time.monotonic() < end:
        rid += 1
        t0 = time.monotonic()
        sock.sendall(request(rid, "ping"))
        while True:
            line = reader.readline()
            if not line:
                raise SystemExit("the well-behaved client was disconnected")
            msg = json.loads(line)
            if msg.get("id") == rid:
                break
        if "result" not in msg:
            raise SystemExit(f"the well-behaved client got an error: {msg}")
        times.append((time.monotonic() - t0) * 1000)
        time.sleep(max(0.0, interval - (time.monotonic() - t0)))
    sock.close()
    times.sort()
    return {
        "pings": len(times),
        "p50_ms": round(times[len(times) // 2], 2),
        "p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))], 2),
        "max_ms": round(times[-1], 2),
    }


def start_server() -> tuple[subprocess.Popen, int]:
    args = [sys.executable, __file__, "--serve"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise SystemExit(f"server did not start: {line!r}")
    return proc, int(line.split()[1])


def run(scenarios: tuple[str, ...] = SCENARIOS, seconds: float = 8.0) -> list[dict[str, Any]]:
    rows = []
    for kind in scenarios:
        server, port = start_server()
        flooder = None
        try:
            if kind != "quiet":
                flooder = subprocess.Popen([sys.executable, __file__, "--flood", kind, "--port", str(port)],
                                           stdout=subprocess.PIPE, text=True, cwd=ROOT)
                time.sleep(1.0)
            figures = pinger(port, seconds)
            if flooder is not None:
                flooder.terminate()
                out, _ = flooder.communicate(10)
                figures["flooder"] = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
        finally:
            if flooder is not None and flooder.poll() is None:
                flooder.kill()
            server.terminate()
            out, _ = server.communicate(10)
            stalls = [ln for ln in out.splitlines() if ln.startswith("STALL ")]
            figures["stall_ms"] = float(stalls[-1].split()[1]) if stalls else None
        figures["scenario"] = kind
        rows.append(figures)
    return rows


def per_request(counts: tuple[int, ...] = (1, 100, 20_000), n: int = 2000) -> list[dict[str, Any]]:
    """Microseconds per lineGetCallInfo / lineOpen+seq with ``count`` lines open (no sockets)."""
    sys.path.insert(0, str(ROOT))
    from twisted.internet.task import Clock
    from twisted.internet.testing import StringTransport

    from asttapi_server.clients.hub import Hub
    from asttapi_server.clients.protocol import ClientFactory
    from asttapi_server.core import grammar
    from asttapi_server.core.events import TapiEvent
    from asttapi_server.core.model import CallModel

    rows = []
    for count in counts:
        model = CallModel()
        for text in ("LINE_NEWCALL line_1 line_2", "LINE_CALLSTATE LINECALLSTATE_OFFERING"):
            model.apply(grammar.TapiSignal(grammar.parse_tapievent(text), "1.1", "PJSIP/t-1"), 0.0)
        tel = type("T", (), {"link_up": True, "model": model})()
        hub = Hub(ring_size=10000)
        for _ in range(10000):
            hub.publish(TapiEvent("LINE_CALLINFO", "busy", 1, "LINECALLINFOSTATE_OTHER"))
        factory = ClientFactory(hub, tel, users={}, clock=Clock(), max_lines_per_session=count + n,
                                request_rate=1e9, request_burst=10**9)
        proto = factory.buildProtocol(None)
        transport = StringTransport()
        proto.makeConnection(transport)
        proto.dataReceived(b"".join(request(i, "lineOpen", line=f"m{i}") for i in range(count - 1)))
        proto.dataReceived(request(0, "lineOpen", line="line_2"))
        row: dict[str, Any] = {"lines": count}
        for name, data in (
            ("callinfo_us", b"".join(request(i, "lineGetCallInfo", call=1) for i in range(n))),
            ("open_seq_us", b"".join(request(i, "lineOpen", line=f"e{i}", seq=1) for i in range(n))),
        ):
            transport.clear()
            t0 = time.perf_counter()
            proto.dataReceived(data)
            row[name] = round((time.perf_counter() - t0) / n * 1e6, 1)
            assert transport.value().count(b'"result"') == n, transport.value()[-300:]
            if name == "open_seq_us":  # close them again so the cap holds for the next figure
                proto.dataReceived(b"".join(request(i, "lineClose", line=f"e{i}") for i in range(n)))
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--flood", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--only", nargs="+", choices=SCENARIOS)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.serve:
        serve()
        return
    if args.flood:
        flood(args.port, args.flood)
        return
    rows = run(tuple(args.only or SCENARIOS), args.seconds)
    costs = per_request()
    if args.json:
        print(json.dumps({"ping": rows, "per_request": costs}, indent=2))
        return
    print(f"{'scenario':<11} {'pings':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'stall ms':>9}  flooder")
    for r in rows:
        f = r.get("flooder")
        note = (f"sent {f['sent']:,}, answered {f['answers']:,}, rate-limited {f['limited']:,}, "
                f"disconnected {f['closed']}x") if f else ""
        print(f"{r['scenario']:<11} {r['pings']:>6} {r['p50_ms']:>8} {r['p99_ms']:>8} {r['max_ms']:>8}"
              f" {r['stall_ms']!s:>9}  {note}")
    print()
    print(f"{'lines open':>10} {'lineGetCallInfo us':>19} {'lineOpen+seq us':>16}")
    for c in costs:
        print(f"{c['lines']:>10,} {c['callinfo_us']:>19} {c['open_seq_us']:>16}")


if __name__ == "__main__":
    main()
