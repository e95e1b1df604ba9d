"""bench/contact_lookup.py stays runnable (a small run, not a measurement)."""

from __future__ import annotations


def test_contact_lookup_bench_runs_and_returns_figures():
    from bench.contact_lookup import run

    figures = run(contacts=300, lookups=60)
    for key in ("crm_load_s", "crm_hit_us", "crm_miss_us", "outlook_load_s", "outlook_hit_us", "outlook_miss_us"):
        assert figures[key] > 0
