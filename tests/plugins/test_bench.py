"""bench/contact_lookup.py stays runnable (a small run, not a measurement)."""

from __future__ import annotations


def test_contact_lookup_bench_runs_and_returns_figures():
    from bench.contact_lookup import run

    figures = run(contacts=300, lookups=60)
    for key in ("crm_load_s", "crm_hit_us", "crm_miss_us", "outlook_load_s", "outlook_hit_us", "outlook_miss_us"):
        assert figures[key] > 0


def test_contact_directory_bench_runs_and_returns_figures():
    from bench.contact_directory import run

    figures = run(entries=2_000, lookups=200)
    assert figures["entries"] == 2_000 and figures["indexed_numbers"] == figures["numbers"] == 3_400
    for key in ("hit_p50_us", "hit_p99_us", "miss_p99_us", "parse_p50_us", "index_mb", "build_s"):
        assert figures[key] > 0
