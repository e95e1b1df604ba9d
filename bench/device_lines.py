"""Benchmark of the device-line mapping: AMI channel events/s through DeviceLines.feed and the model.

Run:      .venv/bin/python bench/device_lines.py [--rounds N]
Import:   from bench.device_lines import run; figures = run(rounds=10)

Input: every capture of tests/data/ami-native (real Asterisk 22, real SIP
phones), parsed once by the real AMIParser and cut down to the events the
mapping declares (the bridge never hands it others). What is timed is
``DeviceLines.feed`` and ``CallModel.apply`` of what it returns (the mapping
keeps no state: the model holds each channel's facts and its call's state,
issue 25), replaying the captures ``rounds`` times with the three lab phones
configured; each replay ends with every channel hung up, so rounds are
independent. The call model alone is measured by bench/core_events.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asttapi_server.ami.parser import AMIParser  # noqa: E402
from asttapi_server.core.device_lines import EVENT_NAMES, DeviceLines  # noqa: E402
from asttapi_server.core.legs import DeviceNote  # noqa: E402
from asttapi_server.core.model import CallModel  # noqa: E402

NATIVE = Path(__file__).resolve().parent.parent / "tests" / "data" / "ami-native"
LAB = {"PJSIP/201": ["bob"], "PJSIP/202": ["bobbett"], "PJSIP/203": ["alice"]}


def run(rounds: int = 200) -> dict:
    wanted = set(EVENT_NAMES)
    events = [m for path in sorted(NATIVE.glob("*.raw")) for m in AMIParser().feed(path.read_bytes())
              if m.kind == "event" and m.name in wanted]
    for m in events:
        m.get("Channel")  # decode once up front: the bridge's messages arrive decoded too
    lines, model = DeviceLines(LAB), CallModel(boot_id="bench", linger=0.0)
    view, apply = model.view(), model.apply
    signals = 0
    start = time.perf_counter()
    for r in range(rounds):
        now = float(r)
        for m in events:
            for signal in lines.feed(m.name, m.get, now, view):
                apply(signal, now)
                signals += type(signal) is not DeviceNote
    elapsed = time.perf_counter() - start
    assert not model.legs
    n = rounds * len(events)
    return {"events": n, "signals": signals, "seconds": round(elapsed, 3),
            "events_per_s": round(n / elapsed), "us_per_event": round(elapsed / n * 1e6, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    figures = run(args.rounds)
    if args.json:
        print(json.dumps(figures))
    else:
        print(f"device lines: {figures['events']} channel events -> {figures['signals']} signals in "
              f"{figures['seconds']} s: {figures['events_per_s']} events/s, {figures['us_per_event']} us/event")


if __name__ == "__main__":
    main()
