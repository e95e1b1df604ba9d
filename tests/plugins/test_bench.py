"""bench/contact_lookup.py stays runnable (a small run, not a measurement)."""

from __future__ import annotations


def test_contact_lookup_bench_runs_and_returns_figures():
    from bench.contact_lookup import run

    figures = run(contacts=300, lookups=60)
    for key in ("crm_load_s", "crm_hit_us", "crm_miss_us", "outlook_load_s", "outlook_hit_us", "outlook_miss_us"):
        assert figures[key] > 0


def test_webhook_outbox_bench_runs_and_prints_figures():
    import json
    import subprocess
    import sys
    from pathlib import Path

    bench = Path(__file__).resolve().parents[2] / "bench" / "webhook_outbox.py"
    run = subprocess.run([sys.executable, str(bench), "--events", "200", "--json"], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    figures = json.loads(run.stdout.strip().splitlines()[-1])
    assert figures["commits"] >= 1 and figures["add_us_per_event"] > 0 and figures["naive_commit_us_per_event"] > 0


def test_contact_directory_bench_runs_and_returns_figures():
    from bench.contact_directory import run

    figures = run(entries=2_000, lookups=200)
    assert figures["entries"] == 2_000 and figures["indexed_numbers"] == figures["numbers"] == 3_400
    for key in ("hit_p50_us", "hit_p99_us", "miss_p99_us", "parse_p50_us", "index_mb", "build_s"):
        assert figures[key] > 0
