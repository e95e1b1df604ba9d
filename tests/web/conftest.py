"""Fixtures the web tests share."""

from __future__ import annotations

import pytest
from twisted.logger import formatEvent, globalLogPublisher


@pytest.fixture
def logged():
    """Every log line written during the test so far, formatted (call it)."""
    seen: list[dict] = []
    globalLogPublisher.addObserver(seen.append)
    yield lambda: [formatEvent(e) for e in seen]
    globalLogPublisher.removeObserver(seen.append)
