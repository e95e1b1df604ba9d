"""Benchmark of the pure TAPI core: events/s through CallModel.apply, memory per call.

Run:      .venv/bin/python bench/core_events.py [--calls N]
Import:   from bench.core_events import run; figures = run()

Flows are the manual's (inbound ring group of two lines, outbound 9NXXXXXX,
busy, no-answer, app-initiated lineMakeCall), with TAPIEVENT texts as the lab
dialplan sends them. Signals are parsed once up front (parsing is measured on
its own): what is timed is CallModel.apply/channel_hangup/tick, the per-event
work of the live server.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
import tracemalloc
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asttapi_server.core.grammar import TapiSignal, parse_tapievent  # noqa: E402
from asttapi_server.core.model import CallModel  # noqa: E402

P = parse_tapievent


def _flows():
    """name -> the TAPIEVENT texts of one call; '{u}' is the call's uniqueid."""
    return {
        "inbound_ring_group": [
            "LINE_NEWCALL sip/bob", "LINE_NEWCALL sip/bobbett",
            "LINE_CALLSTATE LINECALLSTATE_OFFERING", "SET CALLERID 0301234567",
            "LINE_CALLINFO LINECALLINFOSTATE_CALLERID",
            "[~{u}&sip/bob] LINE_CALLSTATE LINECALLSTATE_CONNECTED",
            "[~{u}&!sip/bob] LINE_CALLSTATE LINECALLSTATE_HANGUP",
            "LINE_CALLSTATE LINECALLSTATE_IDLE",
            "LINE_CALLSTATE LINECALLSTATE_IDLE",  # h extension twice
        ],
        "outbound_9nxxxxxx": [
            "LINE_NEWCALL line_1", "LINE_CALLSTATE LINECALLSTATE_DIALTONE",
            "LINE_CALLSTATE LINECALLSTATE_DIALING", "LINE_CALLSTATE LINECALLSTATE_PROCEEDING",
            "[~{u}&line_1] LINE_CALLSTATE LINECALLSTATE_CONNECTED",
            "[~{u}&!line_1] LINE_CALLSTATE LINECALLSTATE_HANGUP",
            "LINE_CALLSTATE LINECALLSTATE_IDLE",
        ],
        "busy": [
            "LINE_NEWCALL line_1", "LINE_CALLSTATE LINECALLSTATE_DIALTONE",
            "LINE_CALLSTATE LINECALLSTATE_DIALING", "LINE_CALLSTATE LINECALLSTATE_PROCEEDING",
            "LINE_CALLSTATE LINECALLSTATE_BUSY", "LINE_CALLSTATE LINECALLSTATE_IDLE",
        ],
        "no_answer": [
            "LINE_NEWCALL line_1", "LINE_CALLSTATE LINECALLSTATE_OFFERING",
            "SET CALLERID 0301234567", "LINE_CALLINFO LINECALLINFOSTATE_CALLERID",
            "LINE_CALLSTATE LINECALLSTATE_DISCONNECTED", "LINE_CALLSTATE LINECALLSTATE_IDLE",
        ],
    }


def _prepare(n_calls: int, lines: int = 200):
    """Per call: (uid, [signals]); lines vary so the per-line index is exercised."""
    flows = list(_flows().values())
    calls = []
    for i in range(n_calls):
        uid = f"1795674354.{i}"
        steps = flows[i % len(flows)]
        line = f"line_{i % lines}"
        sigs = []
        for text in steps:
            text = text.replace("line_1", line).replace("{u}", uid)
            sigs.append(TapiSignal(P(text), uid, "Local/x@y-0;1"))
        calls.append((uid, sigs))
    return calls


def bench_apply(n_calls: int = 40000, concurrent: int = 500) -> dict:
    """Events/s with ``concurrent`` calls interleaved (round-robin step by step)."""
    calls = _prepare(n_calls)
    m = CallModel(linger=30.0)
    n_signals = sum(len(s) for _, s in calls)
    gc.collect()
    t0 = time.perf_counter()
    now = 0.0
    out = 0
    apply = m.apply
    for base in range(0, n_calls, concurrent):
        batch = calls[base:base + concurrent]
        depth = max(len(s) for _, s in batch)
        for step in range(depth):
            now += 0.001
            for uid, sigs in batch:
                if step < len(sigs):
                    out += len(apply(sigs[step], now))
        for uid, _ in batch:
            m.channel_hangup(uid, 16, now)
        out += len(m.tick(now))
    out += len(m.tick(now + 3600))
    dt = time.perf_counter() - t0
    assert m.tracked == 0, m.tracked
    return {
        "signals": n_signals,
        "tapi_events_out": out,
        "seconds": round(dt, 3),
        "signals_per_s": round(n_signals / dt),
        "tapi_events_out_per_s": round(out / dt),
    }


def bench_parse(n: int = 200000) -> dict:
    """parse_tapievent on the flows' texts: with its cache (repeating texts) and without."""
    from asttapi_server.core import grammar

    texts = [t.replace("{u}", "1795674354.7") for steps in _flows().values() for t in steps]
    parse = parse_tapievent
    t0 = time.perf_counter()
    for i in range(n):
        parse(texts[i % len(texts)])
    cached = n / (time.perf_counter() - t0)
    def uncached_parse(text: str) -> object:
        return grammar._parse(text, grammar.MAX_LINES)
    m = n // 10
    t0 = time.perf_counter()
    for i in range(m):
        uncached_parse(texts[i % len(texts)])
    uncached = m / (time.perf_counter() - t0)
    return {"parse_per_s_cached": round(cached), "parse_per_s_uncached": round(uncached)}


def bench_memory_per_call(n: int = 20000) -> dict:
    """tracemalloc bytes per live call (NEWCALL + OFFERING + SET CALLERID, ring group of 2)."""
    sigs = [
        (TapiSignal(P("LINE_NEWCALL sip/bob sip/bobbett"), f"1795674354.{i}", None),
         TapiSignal(P("LINE_CALLSTATE LINECALLSTATE_OFFERING"), f"1795674354.{i}", None),
         TapiSignal(P(f"SET CALLERID 030{i:07d}"), f"1795674354.{i}", None),
         TapiSignal(P("LINE_CALLINFO LINECALLINFOSTATE_CALLERID"), f"1795674354.{i}", None))
        for i in range(n)
    ]
    m = CallModel()
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for i, group in enumerate(sigs):
        for s in group:
            m.apply(s, float(i))
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    return {"live_calls": m.tracked, "bytes_per_live_call": round(used / n)}


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096
    except OSError:  # not Linux
        return None


def bench_million(n_calls: int = 1_000_000) -> dict:
    """n calls, each NEWCALL + OFFERING + CONNECTED + IDLE, 1 s linger, ticking as we go.

    Flatness is sampled with sys.getallocatedblocks() and RSS (tracemalloc
    would make a million calls take minutes); tracked must end at 0.
    """
    steps = (P("LINE_NEWCALL line_1"), P("LINE_CALLSTATE LINECALLSTATE_OFFERING"),
             P("LINE_CALLSTATE LINECALLSTATE_CONNECTED"), P("LINE_CALLSTATE LINECALLSTATE_IDLE"))
    m = CallModel(linger=1.0)
    gc.collect()
    blocks0 = sys.getallocatedblocks()
    rss0 = _rss_bytes()
    samples = []
    apply = m.apply
    events = 0
    every = max(n_calls // 10, 1)
    t0 = time.perf_counter()
    for i in range(n_calls):
        now = i * 0.001  # 1000 new calls per second of PBX time
        uid = f"1795674354.{i}"
        for cmd in steps:
            events += len(apply(TapiSignal(cmd, uid, None), now))
        if i % 1000 == 0:
            m.tick(now)
        if i % every == 0:
            samples.append(sys.getallocatedblocks() - blocks0)
    m.tick(n_calls * 0.001 + 10)
    dt = time.perf_counter() - t0
    gc.collect()
    rss1 = _rss_bytes()
    return {
        "calls": n_calls,
        "tracked_after": m.tracked,
        "tapi_events_out": events,
        "seconds": round(dt, 2),
        "calls_per_s": round(n_calls / dt),
        "allocated_blocks_growth_samples": samples,
        "allocated_blocks_growth_after": sys.getallocatedblocks() - blocks0,
        "rss_growth_bytes": (rss1 - rss0) if rss0 is not None and rss1 is not None else None,
    }


def best_apply(calls: int, repeats: int = 3) -> dict:
    """The fastest of ``repeats`` runs of :func:`bench_apply` (each on a fresh
    model), with every run's rate: on a shared machine one run can land on
    another tenant's burst (single runs here read 146k-231k events/s)."""
    runs = [bench_apply(calls) for _ in range(repeats)]
    best = max(runs, key=lambda r: r["tapi_events_out_per_s"])
    return dict(best, repeats=repeats, all_runs_events_per_s=[r["tapi_events_out_per_s"] for r in runs])


def run(calls: int = 40000, million: int = 1_000_000, repeats: int = 3) -> dict:
    """Every figure, as a dict (issue 7 aggregates these)."""
    return {
        "apply": best_apply(calls, repeats),
        "parse": bench_parse(),
        "memory": bench_memory_per_call(),
        "million": bench_million(million),
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=40000)
    ap.add_argument("--million", type=int, default=1_000_000, help="calls for the flat-memory run")
    args = ap.parse_args(argv)
    print(json.dumps(run(args.calls, args.million), indent=2))


if __name__ == "__main__":
    main()
