"""Contact lookup cost at 10,000 contacts: CRM (SQLite) and Outlook CSV.

Run:  .venv/bin/python bench/contact_lookup.py [contacts]
or:   from bench.contact_lookup import run; run(10_000) -> dict of figures

Builds a SQLite CRM and an Outlook CSV with ``contacts`` contacts (two numbers
each, written in mixed styles), then measures the plugins' load time (the
index build at start-up or reload) and the per-lookup time for hits (the
caller's number in the PBX's national form) and misses. Lookups are timed on
the plugin's ``find``, the work done in the plugin thread; the host adds a
thread hop (tens of microseconds) on top.
"""

from __future__ import annotations

import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from asttapi_server.plugin_host import _load, bundled_plugin_dir  # noqa: E402

STYLES = ("+44 20 {a} {b}", "020 {a} {b}", "(020) {a}-{b}", "0044 20 {a} {b}", "+44 (0)20 {a} {b}", "020{a}{b}")


def _numbers(count: int, rng: random.Random) -> list[tuple[str, str, str]]:
    """(written, dialled, written mobile) per contact, all distinct."""
    out = []
    for i in range(count):
        a, b = 7000 + i // 10000, i % 10000
        style = rng.choice(STYLES)
        written = style.format(a=f"{a:04d}", b=f"{b:04d}")
        dialled = f"020{a:04d}{b:04d}"
        mobile = f"07700 {900000 + i:06d}"
        out.append((written, dialled, mobile))
    return out


def _build(folder: Path, numbers: list[tuple[str, str, str]]) -> tuple[Path, Path]:
    db_path = folder / "crm.sqlite"
    db = sqlite3.connect(db_path)
    db.execute("CREATE TABLE contacts (id INTEGER PRIMARY KEY, first_name TEXT, last_name TEXT, "
               "company TEXT, phone TEXT, mobile TEXT)")
    db.executemany("INSERT INTO contacts VALUES (?, ?, ?, ?, ?, ?)",
                   [(i, f"First{i}", f"Last{i}", f"Company {i % 500}", w, m) for i, (w, _, m) in enumerate(numbers)])
    db.commit()
    db.close()
    csv_path = folder / "contacts.csv"
    with open(csv_path, "w", encoding="utf-8-sig", newline="") as f:
        f.write('"First Name","Last Name","Company","Business Phone","Mobile Phone","E-mail Address"\r\n')
        for i, (w, _, m) in enumerate(numbers):
            f.write(f'"First{i}","Last{i}","Company {i % 500}","{w}","{m}","p{i}@example.com"\r\n')
    return db_path, csv_path


def _per_lookup(find, numbers: list[str], repeat: int = 3) -> float:
    """Best-of-``repeat`` mean seconds per lookup."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for n in numbers:
            find(n)
        best = min(best, (time.perf_counter() - started) / len(numbers))
    return best


def run(contacts: int = 10_000, lookups: int = 2_000, seed: int = 1) -> dict[str, float]:
    """Build the data, load both plugins, time lookups; figures in seconds (``*_us`` in microseconds)."""
    rng = random.Random(seed)
    numbers = _numbers(contacts, rng)
    crm_sql = _load("crm_sql", entry_points=[], search_paths=[bundled_plugin_dir()])
    outlook = _load("outlook_contacts", entry_points=[], search_paths=[bundled_plugin_dir()])
    hits = [rng.choice(numbers)[1] for _ in range(lookups)]
    misses = [f"0161{rng.randrange(10**7):07d}" for _ in range(lookups)]
    figures: dict[str, float] = {"contacts": contacts, "lookups": lookups}
    with tempfile.TemporaryDirectory() as tmp:
        db_path, csv_path = _build(Path(tmp), numbers)
        for name, make in (
            ("crm", lambda: crm_sql.configure({"database": str(db_path)}, None)),
            ("outlook", lambda: outlook.configure({"csv": str(csv_path)}, None)),
        ):
            started = time.perf_counter()
            plugin = make()
            figures[f"{name}_load_s"] = time.perf_counter() - started
            assert all(plugin.find(n) is not None for n in hits[:50]), f"{name}: hits not found"
            assert all(plugin.find(n) is None for n in misses[:50]), f"{name}: misses found"
            # Distinct numbers defeat the small parse cache: the cold figure is the honest one.
            from asttapi_server.numbers import _key

            _key.cache_clear()
            figures[f"{name}_hit_us"] = _per_lookup(plugin.find, hits, repeat=1) * 1e6
            _key.cache_clear()
            figures[f"{name}_miss_us"] = _per_lookup(plugin.find, misses, repeat=1) * 1e6
            figures[f"{name}_hit_cached_us"] = _per_lookup(plugin.find, hits) * 1e6
    return figures


def main(argv: list[str]) -> None:
    contacts = int(argv[1]) if len(argv) > 1 else 10_000
    figures = run(contacts)
    print(f"contact lookup, {contacts} contacts (2 numbers each), {figures['lookups']} lookups per figure")
    for name, label in (("crm", "crm_sql (SQLite)"), ("outlook", "outlook_contacts (CSV)")):
        print(f"  {label:24s} load {figures[f'{name}_load_s'] * 1000:8.1f} ms   "
              f"hit {figures[f'{name}_hit_us']:6.1f} us   miss {figures[f'{name}_miss_us']:6.1f} us   "
              f"repeated caller {figures[f'{name}_hit_cached_us']:5.1f} us")


if __name__ == "__main__":
    main(sys.argv)
