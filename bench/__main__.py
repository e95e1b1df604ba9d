"""Run the benchmarks and print one table: ``python -m bench`` (or ``make bench``).

    .venv/bin/python -m bench                  # everything, full size (about 3 minutes)
    .venv/bin/python -m bench --quick          # smaller runs, same table (under a minute)
    .venv/bin/python -m bench --only ami e2e   # a subset: ami, core, e2e, throughput, contacts, directory, webhooks
    .venv/bin/python -m bench --json           # the raw figures of every benchmark as JSON

Each benchmark module also runs alone (``bench/ami_ingest.py``,
``bench/core_events.py``, ``bench/e2e_latency.py``, ``bench/e2e_throughput.py``,
``bench/contact_lookup.py``, ``bench/contact_directory.py``, ``bench/webhook_outbox.py``;
``bench/event_cost.py`` counts the calls per event and profiles the server, outside the table)
and documents what it measures. Figures depend on the machine: the table says
what was run, not what to expect.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SECTIONS = ("ami", "core", "e2e", "throughput", "contacts", "directory", "webhooks")

Row = tuple[str, str, str]  # figure, value, note


def _ami(quick: bool) -> tuple[Any, list[Row]]:
    from bench import ami_ingest

    f = ami_ingest.run(events=50_000 if quick else 200_000, repeats=1 if quick else 3)
    rows = [
        ("AMI ingest, AMILink over loopback", f"{f['client_events_per_s']:,} events/s",
         f"{f['events']:,} events, {f['noise_per_user_event']} noise per UserEvent; "
         "target >= 100,000"),
        ("AMI ingest, minimal splitter (same run)", f"{f['splitter_events_per_s']:,} events/s", "bare blank-line splitter"),
        ("AMI ingest, ratio client / splitter", f"{f['ratio']:.2f}", "target >= 0.3"),
    ]
    return f, rows


def _core(quick: bool) -> tuple[Any, list[Row]]:
    from bench import core_events

    million = 100_000 if quick else 1_000_000
    f = core_events.run(calls=10_000 if quick else 40_000, million=million)
    m = f["million"]
    rss = m["rss_growth_bytes"]
    return f, [
        ("Core TAPI events/s (CallModel.apply)", f"{f['apply']['tapi_events_out_per_s']:,} events/s",
         f"{f['apply']['signals_per_s']:,} signals/s in, best of {f['apply']['repeats']} "
         f"({' / '.join(f'{r:,}' for r in f['apply']['all_runs_events_per_s'])}); target >= 200,000"),
        ("Memory per tracked call", f"{f['memory']['bytes_per_live_call']:,} B",
         f"tracemalloc, {f['memory']['live_calls']:,} live ring-group calls"),
        (f"Memory after {m['calls']:,} calls", "n/a" if rss is None else f"{rss / 1024:+,.0f} KiB RSS",
         f"tracked after: {m['tracked_after']}, allocated blocks {m['allocated_blocks_growth_after']:+,}"),
    ]


def _e2e(quick: bool) -> tuple[Any, list[Row]]:
    from bench import e2e_latency

    duration = 3.0 if quick else 10.0
    rows: list[Row] = []
    figures = e2e_latency.run((10, 100, 1000), cps=100.0, duration=duration)
    for f in figures:
        rows.append((
            f"End-to-end AMI -> client, {f['clients']:,} clients",
            f"p50 {f['p50_ms']:.2f} ms / p99 {f['p99_ms']:.2f} ms",
            f"{f['calls_per_s']:g} calls/s x {duration:g} s, {f['client_events']:,} events all delivered; "
            f"server RSS {f['server_rss_mib_peak']} MiB; target p99 < 5 ms",
        ))
    return figures, rows


def _throughput(quick: bool) -> tuple[Any, list[Row]]:
    from bench import e2e_throughput

    f = e2e_throughput.run(events=50_000 if quick else 200_000, repeats=1 if quick else 3, mix="all")
    real = f["mixes"]["real"]
    rows = [
        ("End-to-end throughput, whole server", f"{real['server_events_per_s']:,} AMI events/s",
         f"{real['ami_events']:,} events of the real capture's mix on {real['lines']} lines, "
         f"{real['tapi_events']:,} TAPI events to one client; server CPU {real['server_cpu_s']} s"),
        ("End-to-end throughput, naive consumer", f"{real['naive_events_per_s']:,} AMI events/s",
         "a dict per message, no filter, same stream"),
        ("End-to-end throughput, ratio server / naive", f"{real['ratio']:.2f}", f"target >= {real['target_ratio']}"),
    ]
    for name, m in f["mixes"].items():
        if name == "real":
            continue
        target = "no target yet" if m["target_ratio"] is None else f"target >= {m['target_ratio']}"
        rows.append((f"End-to-end throughput ratio, {name} mix", f"{m['ratio']:.2f}",
                     f"server {m['server_events_per_s']:,} / naive {m['naive_events_per_s']:,} AMI events/s, "
                     f"{m['ami_events_per_call']} events per call on {m['lines']} lines, "
                     f"server CPU {m['server_cpu_s']} s; {target}"))
    rows.append(("End-to-end throughput, load average", f"{f['load'][0]} / {f['load'][1]}",
                 "before / after the throughput runs (the machine's other work moves these figures)"))
    return f, rows


def _contacts(quick: bool) -> tuple[Any, list[Row]]:
    from bench import contact_lookup

    f = contact_lookup.run(contacts=1_000 if quick else 10_000, lookups=500 if quick else 2_000)
    return f, [
        (f"Contact lookup, {f['contacts']:,} contacts", f"{f['crm_hit_us']:.0f} us / {f['outlook_hit_us']:.0f} us",
         f"per lookup, crm_sql (SQLite) / outlook_contacts (CSV), cold hit"),
    ]


def _directory(quick: bool) -> tuple[Any, list[Row]]:
    from bench import contact_directory

    f = contact_directory.run(entries=20_000 if quick else 100_000, lookups=2_000 if quick else 10_000)
    return f, [
        (f"Directory lookup, {f['entries']:,} entries", f"p50 {f['hit_p50_us']:.0f} us / p99 {f['hit_p99_us']:.0f} us",
         f"ldap_contacts/carddav_contacts index, cold hit; number parse alone p50 {f['parse_p50_us']:.0f} us "
         f"(same run); target p99 < 1 ms"),
        (f"Directory index memory, {f['entries']:,} entries", f"{f['index_mb']:.0f} MB",
         f"tracemalloc ({f['bytes_per_entry']:.0f} B an entry, {f['numbers']:,} numbers); RSS growth "
         f"{f['rss_growth_mb']:.0f} MB; build {f['build_s']:.1f} s; target < 100 MB"),
    ]


def _webhooks(quick: bool) -> tuple[Any, list[Row]]:
    import subprocess

    # The benchmark runs a reactor of its own: a process of its own.
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "webhook_outbox.py"), "--json",
                          "--events", "2000" if quick else "10000"], capture_output=True, text=True, check=True)
    f = json.loads(run.stdout.strip().splitlines()[-1])
    return f, [
        ("Webhook outbox, reactor cost per event", f"{f['add_us_per_event']:.1f} us",
         f"{f['events']:,} events; {f['events_per_commit']} changes per commit in the writer thread; "
         f"a commit per event on the reactor would cost {f['naive_commit_us_per_event']:,.0f} us"),
        ("Webhook outbox, reactor lateness p99", f"{f['outbox_late_p99_ms']} ms",
         f"reference run without it {f['reference_late_p99_ms']} ms (ratio {f['late_p99_ratio']})"),
    ]


RUNNERS: dict[str, Callable[[bool], tuple[Any, list[Row]]]] = {
    "ami": _ami, "core": _core, "e2e": _e2e, "throughput": _throughput, "contacts": _contacts,
    "directory": _directory, "webhooks": _webhooks,
}


def machine() -> str:
    cores = os.cpu_count()
    try:
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
        mem = f"{kib / 2**20:.0f} GiB"
    except OSError:
        mem = "? GiB"
    return f"{cores} cores, {mem}, Python {platform.python_version()}, {platform.system()}"


def table(rows: list[Row]) -> str:
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    out = [f"| {'Figure':<{w0}} | {'Measured':<{w1}} | Notes |", f"|{'-' * (w0 + 2)}|{'-' * (w1 + 2)}|-------|"]
    out += [f"| {a:<{w0}} | {b:<{w1}} | {c} |" for a, b, c in rows]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), metavar="NAME",
                    help=f"benchmarks to run: {', '.join(SECTIONS)} (default: all)")
    ap.add_argument("--quick", action="store_true", help="smaller runs (100,000 instead of a million calls, ...)")
    ap.add_argument("--json", action="store_true", help="print every benchmark's raw figures as JSON too")
    args = ap.parse_args(argv)
    rows: list[Row] = []
    raw: dict[str, Any] = {}
    failed = []
    started = time.monotonic()
    for name in SECTIONS:
        if name not in args.only:
            continue
        print(f"running {name} ...", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        try:
            raw[name], section = RUNNERS[name](args.quick)
            rows += section
        except Exception as e:  # one broken benchmark must not hide the others' figures
            traceback.print_exc()
            failed.append(name)
            rows.append((f"{name}: FAILED", type(e).__name__, str(e).splitlines()[0][:80] if str(e) else ""))
        print(f"  {name} took {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
    mode = "quick" if args.quick else "full"
    print(f"\nasttapi-server benchmarks ({mode}; {machine()}; {time.strftime('%Y-%m-%d')}; "
          f"{time.monotonic() - started:.0f} s)\n")
    print(table(rows))
    if args.json:
        print(json.dumps(raw, indent=2, default=str))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
