"""Item 4 of issue 11: "twistd keeps every rotated log" -- the bundled observer keeps a bounded number."""

from __future__ import annotations

import pytest
from twisted.logger import Logger, LogPublisher

from asttapi_server.logfile import observer


def test_rotated_logs_are_bounded(tmp_path):
    path = tmp_path / "asttapi.log"
    obs = observer({"ASTTAPI_LOGFILE": str(path), "ASTTAPI_LOG_ROTATE_BYTES": "2000", "ASTTAPI_LOG_KEEP": "3"})
    pub = LogPublisher(obs)
    log = Logger(observer=pub)
    for i in range(2000):  # ~200 KB of lines: 100 rotations' worth
        log.warn("login failed, line {i} " + "x" * 60, i=i)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["asttapi.log", "asttapi.log.1", "asttapi.log.2", "asttapi.log.3"]
    assert sum(p.stat().st_size for p in tmp_path.iterdir()) <= 4 * 2200
    assert "line 1999" in path.read_text()


@pytest.mark.parametrize("name, value", [("ASTTAPI_LOG_KEEP", "0"), ("ASTTAPI_LOG_ROTATE_BYTES", "lots")])
def test_bad_settings_stop_with_one_line(tmp_path, name, value):
    with pytest.raises(SystemExit, match=f"asttapi: \\${name}: expected an integer >= 1, got '{value}'$"):
        observer({"ASTTAPI_LOGFILE": str(tmp_path / "a.log"), name: value})
