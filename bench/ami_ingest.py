"""AMI ingest benchmark: real AMILink path vs. a bare blank-line splitter.

The stream is built from real capture layouts: the events of
``tests/data/ami/05_inbound_call.monitor.raw`` (one inbound call on Asterisk
22: 135 events, 7 TAPI UserEvents, i.e. about 18 noise events -- VarSet,
Newexten, DeviceStateChange, ... -- per UserEvent), repeated until at least
``--events`` events, then an end marker (``Event: UserEvent`` with
``UserEvent: BenchDone``, so that it passes the server's filter).

This process is the fake Asterisk: a thread with plain blocking sockets that
answers the MD5 Challenge/Login of the real client and then sends the whole
stream with ``sendall``.  The measured side runs in a child process with its
own reactor (so the sender never competes with it for the GIL), and reads the
stream once per repeat with each of:

(a) the server path: ``AMILink`` over TCP (MD5 login, parser, protocol) with
    the event filter set exactly as ``bridge`` sets it
    (``set_event_filter(plugins.wanted_event_names() | {"Hangup",
    "OriginateResponse"})``, here :data:`WANTED`), and an event observer doing
    what the server does: look at ``msg.name``, fully decode every UserEvent
    (``normalise.user_event``) and Hangup (``normalise.hangup``) delivered;
(b) a minimal Twisted protocol that only splits on ``b"\\r\\n\\r\\n"`` and counts;
(c) for transparency, the same client *without* a filter (every event becomes
    a Message and reaches the observer, which reads every name).

The parser is pure Python (one framing loop, ``asttapi_server/ami/parser.py``);
a ratio to the splitter of 0.3 or more is plenty: a real Asterisk 22 sends at
most about 60,000 events/s.

Rates are stream events ingested per second (all ~200k events of the stream,
delivered or dropped by the filter).

Rate = events / (time of the last event - time the first stream byte was
available to the client), best of the repeats.  Peak memory is the child's
VmHWM (peak RSS) and its growth over the baseline after imports.

    .venv/bin/python bench/ami_ingest.py
    .venv/bin/python bench/ami_ingest.py --events 500000 --repeats 5

``run()`` returns the figures as a dict (used by the aggregate benchmark).
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CAPTURE = ROOT / "tests" / "data" / "ami" / "05_inbound_call.monitor.raw"
DONE = b"Event: UserEvent\r\nPrivilege: user,all\r\nUserEvent: BenchDone\r\n\r\n"
#: The filter the bridge sets: the plugins' wanted names (the TAPI plugin wants
#: the UserEvent dialects) plus what the core needs.
WANTED = frozenset({"UserEvent", "UserEventTAPI", "Hangup", "OriginateResponse"})
BANNER = b"Asterisk Call Manager/11.0.0\r\n"


# -- stream ------------------------------------------------------------------------


def capture_events(path: Path = CAPTURE) -> list[bytes]:
    data = path.read_bytes().split(b"\r\n", 1)[1]  # drop the banner
    return [b + b"\r\n\r\n" for b in data.split(b"\r\n\r\n") if b.startswith(b"Event: ")]


def _headers(event: bytes) -> dict[str, str]:
    """First value of each header (lower-cased key) of one capture event; plain
    ``partition`` on each line, independent of the code under test."""
    out: dict[str, str] = {}
    for line in event.decode().split("\r\n"):
        key, sep, value = line.partition(":")
        if sep:
            out.setdefault(key.strip().lower(), value.strip())
    return out


def expected_values(reps: int) -> dict[str, Any]:
    """What the observer must obtain from the stream: the distinct
    (name, TAPIEVENT body, Uniqueid, Channel) of the UserEvents and
    (Uniqueid, Cause) of the Hangups, and the sum of their lengths (and causes)."""
    user, hang, total = set(), set(), 0
    for e in capture_events():
        h = _headers(e)
        if h["event"] == "UserEvent":
            v = (h["userevent"], h["tapievent"], h["uniqueid"], h["channel"])
            user.add(v)
            total += reps * sum(map(len, v))
        elif h["event"] == "Hangup":
            v2 = (h["uniqueid"], int(h["cause"]))
            hang.add(v2)
            total += reps * (len(v2[0]) + v2[1])
    return {"seen_user": sorted(user), "seen_hangup": sorted(hang), "checksum": total}


def build_stream(min_events: int) -> tuple[bytes, int, dict[str, int]]:
    events = capture_events()
    reps = -(-min_events // len(events))
    one = b"".join(events)
    stream = one * reps + DONE
    names: dict[str, int] = {}
    for e in events:
        name = e[7 : e.index(b"\r\n")].decode()
        names[name] = names.get(name, 0) + reps
    return stream, len(events) * reps + 1, names


# -- fake Asterisk (this process) -------------------------------------------------------


def _read_block(conn: socket.socket, buf: bytearray) -> bytes:
    while b"\r\n\r\n" not in buf:
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError("client went away")
        buf += chunk
    i = buf.index(b"\r\n\r\n")
    block = bytes(buf[:i])
    del buf[: i + 4]
    return block


def _header(block: bytes, key: bytes) -> bytes:
    for line in block.split(b"\r\n"):
        k, _, v = line.partition(b":")
        if k.strip().lower() == key.lower():
            return v.strip()
    return b""


def _serve(listener: socket.socket, stream: bytes, connections: int) -> None:
    for _ in range(connections):
        conn, _ = listener.accept()
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.sendall(BANNER)
            buf = bytearray()
            first = _read_block(conn, buf)
            if _header(first, b"Action").lower() == b"challenge":
                aid = _header(first, b"ActionID")
                conn.sendall(b"Response: Success\r\nActionID: %s\r\nChallenge: 145467744\r\n\r\n" % aid)
                login = _read_block(conn, buf)
                aid = _header(login, b"ActionID")
                conn.sendall(b"Response: Success\r\nActionID: %s\r\nMessage: Authentication accepted\r\n\r\n" % aid)
            conn.sendall(stream)
            conn.shutdown(socket.SHUT_WR)
            # Drain until the client closes (it may send a Ping meanwhile).
            conn.settimeout(60)
            try:
                while conn.recv(65536):
                    pass
            except OSError:
                pass


# -- measured side (child process) ---------------------------------------------------


def _peak_kib() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1])
    return out


def _client_main(port: int, total: int, repeats: int) -> None:
    sys.path.insert(0, str(ROOT))
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred, inlineCallbacks
    from twisted.internet.endpoints import TCP4ClientEndpoint
    from twisted.internet.protocol import Factory, Protocol

    from asttapi_server.ami.link import AMILink
    from asttapi_server.ami.normalise import hangup, user_event

    baseline = _peak_kib()
    results: dict[str, Any] = {
        "splitter": [],
        "delivering": [],
        "client": [],
        "unfiltered": [],
        "baseline_kib": baseline.get("VmRSS"),
    }

    class Splitter(Protocol):
        def __init__(self) -> None:
            self.buf = b""
            self.count = 0
            self.t0 = 0.0
            self.done: Deferred = Deferred()

        def connectionMade(self) -> None:
            self.transport.write(b"Action: Bench\r\n\r\n")

        def dataReceived(self, data: bytes) -> None:
            if not self.t0:
                self.t0 = time.perf_counter()
            parts = (self.buf + data).split(b"\r\n\r\n")
            self.buf = parts.pop()
            self.count += len(parts)
            if self.count >= total:  # banner + stream; BenchDone is last
                if not self.done.called:
                    self.done.callback(time.perf_counter() - self.t0)
                    self.transport.loseConnection()

    class DeliveringSplitter(Splitter):
        """The shape of Twisted's own LineOnlyReceiver: split, then hand each
        message to a method that does nothing. Reported next to the bare
        splitter, never instead of it."""

        def dataReceived(self, data: bytes) -> None:
            if not self.t0:
                self.t0 = time.perf_counter()
            parts = (self.buf + data).split(b"\r\n\r\n")
            self.buf = parts.pop()
            for part in parts:
                self.messageReceived(part)
            self.count += len(parts)
            if self.count >= total:
                if not self.done.called:
                    self.done.callback(time.perf_counter() - self.t0)
                    self.transport.loseConnection()

        def messageReceived(self, message: bytes) -> None:
            pass

    @inlineCallbacks
    def splitter_once(kind=Splitter, key="splitter"):
        factory = Factory.forProtocol(kind)
        proto = yield TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(factory)
        elapsed = yield proto.done
        results[key].append({"events": proto.count, "seconds": elapsed})

    @inlineCallbacks
    def client_once(filtered: bool):
        state = {"n": 0, "user": 0, "hangup": 0, "t0": 0.0, "sum": 0}
        # What the server uses, checked against the capture afterwards: the
        # distinct values seen, and a sum of lengths over every event.
        seen_user: set = set()
        seen_hangup: set = set()
        done: Deferred = Deferred()

        def observer(msg):
            state["n"] += 1
            name = msg.name
            if name == "UserEvent":
                ue = user_event(msg)
                if ue is not None and ue.body and ue.uniqueid:
                    state["user"] += 1
                    state["sum"] += len(ue.name) + len(ue.body) + len(ue.uniqueid) + len(ue.channel or "")
                    seen_user.add((ue.name, ue.body, ue.uniqueid, ue.channel))
                elif ue is not None and ue.name == "BenchDone":
                    done.callback(time.perf_counter() - state["t0"])
            elif name == "Hangup":
                h = hangup(msg)
                if h is not None:
                    state["hangup"] += 1
                    state["sum"] += len(h[0]) + (h[1] or 0)
                    seen_hangup.add(h[:2])

        def link(up):
            if up and not state["t0"]:
                state["t0"] = time.perf_counter()

        client = AMILink(
            TCP4ClientEndpoint(reactor, "127.0.0.1", port),
            "bench",
            "bench-secret",
            clock=reactor,
            keepalive=20.0,
        )
        if filtered:
            client.set_event_filter(WANTED)  # before connecting, as the bridge does
        client.add_event_observer(observer)
        client.add_link_observer(link)
        client.startService()
        elapsed = yield done
        yield client.stopService()
        results["client" if filtered else "unfiltered"].append(
            {
                "delivered": state["n"],
                "seconds": elapsed,
                "user_events": state["user"],
                "hangups": state["hangup"],
                "checksum": state["sum"],
                "seen_user": sorted(seen_user),
                "seen_hangup": sorted(seen_hangup),
            }
        )

    @inlineCallbacks
    def main():
        try:
            for _ in range(repeats):
                yield splitter_once()
                yield splitter_once(DeliveringSplitter, "delivering")
                yield client_once(True)
                yield client_once(False)
        except Exception as e:  # report, never hang
            results["error"] = repr(e)
        finally:
            reactor.stop()

    reactor.callWhenRunning(main)
    reactor.run()
    results["peak"] = _peak_kib()
    print(json.dumps(results))


# -- driver -----------------------------------------------------------------------


def _measure(stream: bytes, total: int, repeats: int) -> dict[str, Any]:
    """One child process reading the stream ``4 * repeats`` times."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    port = listener.getsockname()[1]
    server = threading.Thread(target=_serve, args=(listener, stream, 4 * repeats), daemon=True)
    server.start()
    child = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--client", str(port), "--total", str(total), "--repeats", str(repeats)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    listener.close()
    if child.returncode != 0 or not child.stdout.strip():
        raise RuntimeError(f"benchmark client failed:\n{child.stderr}")
    raw = json.loads(child.stdout.strip().splitlines()[-1])
    if "error" in raw:
        raise RuntimeError(f"benchmark client failed: {raw['error']}\n{child.stderr}")
    return raw


def run(events: int = 200_000, repeats: int = 3) -> dict[str, Any]:
    """The figures of the server's AMI path and the splitter, one child process."""
    stream, total, names = build_stream(events)
    return _figures(_measure(stream, total, repeats), stream, total, names, events, repeats)


def _figures(raw: dict[str, Any], stream: bytes, total: int, names: dict[str, int], events: int, repeats: int) -> dict[str, Any]:
    best_split = min(raw["splitter"], key=lambda r: r["seconds"])
    best_delivering = min(raw["delivering"], key=lambda r: r["seconds"])
    best_client = min(raw["client"], key=lambda r: r["seconds"])
    best_unfiltered = min(raw["unfiltered"], key=lambda r: r["seconds"])
    wanted = {n.lower() for n in WANTED}
    expect_values = expected_values(-(-events // len(capture_events())))
    expect_delivered = sum(n for name, n in names.items() if name.lower() in wanted) + 1  # + the end marker
    for label, runs, expect in (("filtered", raw["client"], expect_delivered), ("unfiltered", raw["unfiltered"], total)):
        for r in runs:
            if r["delivered"] != expect:
                raise RuntimeError(f"{label} client delivered {r['delivered']} events, expected {expect}")
            if r["user_events"] != names.get("UserEvent", 0) or r["hangups"] != names.get("Hangup", 0):
                raise RuntimeError(f"{label} client: not every UserEvent/Hangup decoded")
            got = {
                "seen_user": sorted(tuple(v) for v in r["seen_user"]),
                "seen_hangup": sorted(tuple(v) for v in r["seen_hangup"]),
                "checksum": r["checksum"],
            }
            if got != expect_values:
                raise RuntimeError(f"{label} client decoded wrong values: {got} != {expect_values}")
    split_rate = best_split["events"] / best_split["seconds"]
    delivering_rate = best_delivering["events"] / best_delivering["seconds"]
    client_rate = total / best_client["seconds"]
    unfiltered_rate = total / best_unfiltered["seconds"]
    return {
        "benchmark": "ami_ingest",
        "events": total,
        "stream_bytes": len(stream),
        "user_events": best_client["user_events"],
        "hangups": best_client["hangups"],
        "noise_per_user_event": round((total - best_client["user_events"]) / max(1, best_client["user_events"]), 1),
        "delivered_filtered": best_client["delivered"],
        "wanted": sorted(WANTED),
        "repeats": repeats,
        "client_events_per_s": round(client_rate),
        "splitter_events_per_s": round(split_rate),
        "ratio": round(client_rate / split_rate, 3),
        "delivering_splitter_events_per_s": round(delivering_rate),
        "ratio_vs_delivering_splitter": round(client_rate / delivering_rate, 3),
        "unfiltered_events_per_s": round(unfiltered_rate),
        "unfiltered_ratio": round(unfiltered_rate / split_rate, 3),
        "client_mb_per_s": round(len(stream) / best_client["seconds"] / 1e6, 1),
        "all_client_runs_s": [round(r["seconds"], 4) for r in raw["client"]],
        "all_unfiltered_runs_s": [round(r["seconds"], 4) for r in raw["unfiltered"]],
        "all_splitter_runs_s": [round(r["seconds"], 4) for r in raw["splitter"]],
        "peak_rss_kib": raw["peak"].get("VmHWM"),
        "baseline_rss_kib": raw["baseline_kib"],
        "peak_growth_kib": raw["peak"].get("VmHWM", 0) - (raw["baseline_kib"] or 0),
        "targets": {"min_events_per_s": 100_000, "min_ratio": 0.3},
    }


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--client", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--total", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON only")
    args = parser.parse_args(argv)
    if args.client:
        _client_main(args.client, args.total, args.repeats)
        return None
    figures = run(args.events, args.repeats)
    if args.json:
        print(json.dumps(figures))
        return figures
    ok_rate = figures["client_events_per_s"] >= 100_000
    ok_ratio = figures["ratio"] >= 0.3
    print(f"AMI ingest, {figures['events']:,} events ({figures['stream_bytes'] / 1e6:.1f} MB, "
          f"{figures['noise_per_user_event']} noise events per TAPI UserEvent), best of {figures['repeats']}:")
    print(f"  server path: AMILink, filter {'/'.join(figures['wanted'])},")
    print(f"    {figures['delivered_filtered']:,} delivered, every UserEvent/Hangup fully decoded: "
          f"{figures['client_events_per_s']:>10,} events/s  ({figures['client_mb_per_s']} MB/s)")
    print(f"  bare blank-line splitter:                                        "
          f"{figures['splitter_events_per_s']:>10,} events/s")
    print(f"  ratio server path/splitter: {figures['ratio']:.3f}   (target >= 0.3: {'ok' if ok_ratio else 'MISSED'}; "
          f">= 100,000/s: {'ok' if ok_rate else 'MISSED'})")
    print(f"  splitter that also hands each message to a no-op method (LineOnlyReceiver's shape):"
          f" {figures['delivering_splitter_events_per_s']:>10,} events/s (server path ratio "
          f"{figures['ratio_vs_delivering_splitter']:.3f}; the target is judged on the bare splitter above)")
    print(f"  for comparison, AMILink without a filter (every event a Message):"
          f" {figures['unfiltered_events_per_s']:>10,} events/s (ratio {figures['unfiltered_ratio']:.3f})")
    print(f"  peak RSS of the measured process: {figures['peak_rss_kib'] / 1024:.1f} MiB "
          f"(+{figures['peak_growth_kib'] / 1024:.1f} MiB over the baseline after imports)")
    return figures


if __name__ == "__main__":
    main()
