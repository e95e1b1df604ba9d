"""Smoke test: the ingest benchmark runs end to end over real loopback TCP
(MD5 login of the real AMILink against the bench's fake Asterisk) and every
event and UserEvent arrives."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


@pytest.mark.slow
def test_ami_ingest_bench_small_run():
    from bench import ami_ingest

    figures = ami_ingest.run(events=3000, repeats=1)
    assert figures["events"] >= 3000
    assert figures["user_events"] == 7 * (figures["events"] - 1) // 135
    assert figures["client_events_per_s"] > 0 and figures["splitter_events_per_s"] > 0
    assert 0 < figures["ratio"]
