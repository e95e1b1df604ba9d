"""Fixtures: a real redis-server per test (tests/cluster/redis_server.py)."""

from __future__ import annotations

import pytest

from .redis_server import REDIS_SERVER, RedisServer


@pytest.fixture
def redis_server(tmp_path):
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (Debian package redis-server; .ci/run installs it)")
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop(kill=True)
