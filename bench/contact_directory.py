"""A contact directory of 100,000 entries in memory: lookup time and index memory (issue 24's targets).

Run:  .venv/bin/python bench/contact_directory.py [entries]
or:   from bench.contact_directory import run; run(100_000) -> dict of figures

Builds a directory the way ``ldap_contacts`` and ``carddav_contacts`` hold
one (``asttapi_server.directory``: ``Contact`` records, a libphonenumber
index, read through ``DirectoryIndex``), ``entries`` people with one to
three numbers each, written in the mixed formats directories are full of,
then measures:

- **lookups**: each one timed alone (``perf_counter_ns``), the caller's
  number as the PBX sends it (``0301234567``), distinct numbers so the parse
  cache never helps (cold), hits and misses; p50 and p99. The reference run
  in the same process is the number parse alone (``numbers.number_key``),
  the part no index avoids: the ratio says what the index itself costs.
  Target: p99 under 1 ms.
- **memory**: the records plus the index, as tracemalloc counts their
  allocations, and the process's resident set growth. Target: under 100 MB.
- **build**: the time to index the directory (what a refresh costs, in a
  pool thread).
"""

from __future__ import annotations

import gc
import random
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from twisted.internet.defer import maybeDeferred, succeed  # noqa: E402
from twisted.internet.task import Clock  # noqa: E402

from asttapi_server.directory import Contact, DirectoryIndex  # noqa: E402
from asttapi_server.numbers import _key, number_key  # noqa: E402

LOOKUP_TARGET_MS = 1.0
MEMORY_TARGET_MB = 100.0
FORMATS = ("+49 30 {n}", "030-{n}", "(030) {a} {b} {c}", "0049 30 {n}", "+49 (0)30 {n}", "030/{n}", "+49-30-{n}")


def directory(entries: int, seed: int = 1) -> list[Contact]:
    """``entries`` people, 1-3 numbers each in mixed formats, 2,000 companies (interned, as the plugins do)."""
    rng = random.Random(seed)
    companies = [sys.intern(f"Company {c} GmbH") for c in range(2000)]
    contacts = []
    for i in range(entries):
        n = f"{2_000_000 + i}"  # 7 digits up to 7,999,999 entries
        numbers = [rng.choice(FORMATS).format(n=n, a=n[:3], b=n[3:5], c=n[5:])]
        if i % 2 == 0:
            numbers.append(f"0171 {3_000_000 + i}")
        if i % 5 == 0:
            numbers.append(f"+49 89 {5_000_000 + i}")
        contacts.append(Contact(f"Person {i} Lastname{i % 997}", companies[i % 2000], tuple(numbers),
                                f"person{i}@example.com" if i % 3 == 0 else None))
    return contacts


def dialled(entries: int) -> list[str]:
    """Each person's main number as the PBX sends it."""
    return [f"030{2_000_000 + i}" for i in range(entries)]


def _load(contacts: list[Contact]) -> DirectoryIndex:
    """The directory read once through DirectoryIndex, as a plugin's first read (synchronously here)."""
    index = DirectoryIndex("bench", lambda: succeed(contacts), where="bench", refresh=3600, region="DE",
                           clock=Clock(), run_in_thread=maybeDeferred)
    index.start()
    index.stop()
    return index


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def _times_us(function, numbers: list[str]) -> list[float]:
    out = []
    clock = time.perf_counter_ns
    for number in numbers:
        started = clock()
        function(number)
        out.append((clock() - started) / 1000)
    return out


def _best(function, numbers: list[str], rounds: int = 3) -> list[float]:
    """The round with the lowest median (a shared machine's noise is one-sided), cache cleared before each."""
    best: list[float] | None = None
    for _ in range(rounds):
        gc.collect()
        _key.cache_clear()
        times = _times_us(function, numbers)
        if best is None or statistics.median(times) < statistics.median(best):
            best = times
    _key.cache_clear()
    return best or []


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(entries: int = 100_000, lookups: int = 10_000, seed: int = 1) -> dict:
    """Figures in microseconds (``*_us``), megabytes (``*_mb``) and seconds (``*_s``)."""
    rng = random.Random(seed)
    gc.collect()
    _key.cache_clear()

    # RSS growth and build time: the records and the index, as a plugin's first read makes them.
    callers = dialled(entries)
    rss_before = _rss()
    contacts = directory(entries, seed)
    started = time.perf_counter()
    index = _load(contacts)
    build_s = time.perf_counter() - started
    _key.cache_clear()
    gc.collect()
    rss_growth = _rss() - rss_before
    numbers = sum(len(c.numbers) for c in contacts)

    # The same counted by tracemalloc (after the RSS figure: its own bookkeeping is large).
    del index, contacts
    gc.collect()
    tracemalloc.start()
    contacts = directory(entries, seed)
    index = _load(contacts)
    _key.cache_clear()
    traced, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    stats = index.stats()
    assert stats.contacts == entries, stats
    hits = rng.sample(callers, min(lookups, len(callers)))
    misses = [f"040{rng.randrange(10 ** 7):07d}" for _ in range(len(hits))]
    for number in hits[:100]:
        assert index.lookup(number) is not None, number
    for number in misses[:100]:
        assert index.lookup(number) is None, number

    hit_us = _best(index.lookup, hits)
    miss_us = _best(index.lookup, misses)
    parse_us = _best(lambda n: number_key(n, "DE"), hits)
    return {
        "entries": entries, "numbers": numbers, "indexed_numbers": stats.numbers, "lookups": len(hits),
        "hit_p50_us": _p(hit_us, 0.5), "hit_p99_us": _p(hit_us, 0.99), "hit_max_us": max(hit_us),
        "miss_p50_us": _p(miss_us, 0.5), "miss_p99_us": _p(miss_us, 0.99),
        "parse_p50_us": _p(parse_us, 0.5), "parse_p99_us": _p(parse_us, 0.99),
        "lookup_over_parse": statistics.median(hit_us) / statistics.median(parse_us),
        "index_mb": traced / 1e6, "rss_growth_mb": rss_growth / 1e6,
        "bytes_per_entry": traced / entries, "build_s": build_s,
    }


def main(argv: list[str]) -> None:
    entries = int(argv[1]) if len(argv) > 1 else 100_000
    f = run(entries)
    ok_lookup = f["hit_p99_us"] < LOOKUP_TARGET_MS * 1000 and f["miss_p99_us"] < LOOKUP_TARGET_MS * 1000
    ok_memory = f["index_mb"] < MEMORY_TARGET_MB
    print(f"contact directory: {f['entries']:,} entries, {f['numbers']:,} numbers "
          f"({f['indexed_numbers']:,} keys), {f['lookups']:,} lookups per figure, cold parse cache")
    print(f"  lookup hit   p50 {f['hit_p50_us']:6.1f} us   p99 {f['hit_p99_us']:6.1f} us   max {f['hit_max_us']:7.1f} us")
    print(f"  lookup miss  p50 {f['miss_p50_us']:6.1f} us   p99 {f['miss_p99_us']:6.1f} us")
    print(f"  parse alone  p50 {f['parse_p50_us']:6.1f} us   p99 {f['parse_p99_us']:6.1f} us   "
          f"(reference, same run; lookup / parse {f['lookup_over_parse']:.2f})")
    print(f"  index memory {f['index_mb']:6.1f} MB tracemalloc ({f['bytes_per_entry']:.0f} B an entry), "
          f"RSS growth {f['rss_growth_mb']:.1f} MB")
    print(f"  index build  {f['build_s']:6.2f} s (a refresh, in a pool thread)")
    print(f"  targets: p99 < {LOOKUP_TARGET_MS:g} ms {'ok' if ok_lookup else 'MISSED'}, "
          f"memory < {MEMORY_TARGET_MB:g} MB {'ok' if ok_memory else 'MISSED'}")


if __name__ == "__main__":
    main(sys.argv)
