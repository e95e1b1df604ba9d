"""Call store benchmark: what one batched write of the live calls costs, and how big the file is.

Fills a CallModel with ``--calls`` live calls shaped like capture 05 (an
inbound call with caller id and name, answered on line_1, its caller's
channel known) and then times, ``--repeats`` times, the two halves of one
batch of ``asttapi_server/store.py``:

* in the reactor: building the batch (``CallModel.save_call`` per live call
  and the JSON of the calls that changed since the last batch), slice by
  slice as the store runs it, reporting the whole batch and its longest
  reactor turn: once with every call changed (the worst case, e.g. the first
  write after a start), once with one call in ten changed (a busy PBX within
  0.25 s), once unchanged;
* in the store's thread: ``write_atomically`` (temp file, write, fsync, rename,
  fsync of the directory) into ``--dir`` (default: a temp dir; pass a
  directory on the disk the server will use, fsync cost is the disk's).

Prints the file size and the best, median and worst time of each (a
loaded machine shows in the median and worst, not in the best).

    .venv/bin/python bench/call_store.py
    .venv/bin/python bench/call_store.py --calls 10000 --dir /var/lib/asttapi
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from asttapi_server.core import CallModel  # noqa: E402
from asttapi_server.core.grammar import TapiSignal, parse_tapievent  # noqa: E402
from asttapi_server.store import CallStore, read_store, write_atomically  # noqa: E402


class _NoClock:
    def seconds(self) -> float:
        return 0.0


def filled_model(calls: int) -> CallModel:
    m = CallModel()
    for n in range(calls):
        uid = f"1795674354.{n * 6 + 1}"
        channel = f"Local/100@inbound-{n:08x};2"
        for text in ("LINE_NEWCALL line_1", "LINE_CALLSTATE LINECALLSTATE_OFFERING", "SET CALLERID 0301234567",
                     "SET CALLERIDNAME Ext Caller", "LINE_CALLINFO LINECALLINFOSTATE_CALLERID",
                     "LINE_CALLSTATE LINECALLSTATE_CONNECTED"):
            m.apply(TapiSignal(parse_tapievent(text), uid, channel), 1_795_674_354.0 + n)
    return m


def _batch(store: CallStore) -> tuple[bytes, float, float]:
    """Build one batch slice by slice, as the reactor runs it: (bytes, total s, longest slice s)."""
    total = longest = 0.0
    building = store._build()
    while True:
        t0 = time.perf_counter()
        data = next(building)
        spent = time.perf_counter() - t0
        total += spent
        longest = max(longest, spent)
        if data is not None:
            return data, total, longest


def run(calls: int = 1000, repeats: int = 20, directory: str | None = None) -> dict:
    model = filled_model(calls)
    figures: dict[str, list[float]] = {k: [] for k in (
        "all_total", "all_slice", "tenth_total", "tenth_slice", "none_total", "write")}
    live = model.live_calls()
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        path = os.path.join(tmp, "asttapi-calls.json")
        store = CallStore(path, model, _NoClock(), thread=False)
        for n in range(repeats):
            for call in live:  # every call changed
                call.updated += 1.0
            data, total, longest = _batch(store)
            figures["all_total"].append(total)
            figures["all_slice"].append(longest)
            for call in live[n % 10::10]:  # one call in ten changed
                call.updated += 1.0
            _, total, longest = _batch(store)
            figures["tenth_total"].append(total)
            figures["tenth_slice"].append(longest)
            _, total, _ = _batch(store)  # nothing changed
            figures["none_total"].append(total)
            t0 = time.perf_counter()
            write_atomically(path, data)
            figures["write"].append(time.perf_counter() - t0)
        size = os.path.getsize(path)
        t0 = time.perf_counter()
        restored = CallModel().restore_state(read_store(path), 0.0)
        load_s = time.perf_counter() - t0
    assert len(restored) == calls

    def ms(values: list[float]) -> tuple[float, ...]:
        return tuple(round(v * 1e3, 2) for v in (min(values), statistics.median(values), max(values)))

    return {
        "calls": calls,
        "slice_size": store.slice_size,
        "file_bytes": size,
        "bytes_per_call": round(size / max(calls, 1)),
        **{f"{key}_ms": ms(values) for key, values in figures.items()},
        "load_restore_ms": round(load_s * 1e3, 2),
        "repeats": repeats,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--dir", default=None, help="where to write (default: a temp dir)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures = run(args.calls, args.repeats, args.dir)
    if args.json:
        print(json.dumps(figures))
        return
    print(f"call store, {figures['calls']} live calls, slices of {figures['slice_size']} calls"
          f" ({figures['repeats']} batches; min, median, max):")
    print(f"  file size                        {figures['file_bytes']:,} bytes ({figures['bytes_per_call']} per call)")
    for key, label in (("all_total_ms", "batch, all calls changed"),
                       ("all_slice_ms", "  longest reactor turn"),
                       ("tenth_total_ms", "batch, 1 call in 10 changed"),
                       ("tenth_slice_ms", "  longest reactor turn"),
                       ("none_total_ms", "batch, nothing changed"),
                       ("write_ms", "write+fsync+rename (thread)")):
        print(f"  {label:<32} " + ", ".join(f"{v} ms" for v in figures[key]))
    print(f"  {'load+restore (start)':<32} {figures['load_restore_ms']} ms")

if __name__ == "__main__":
    main()
