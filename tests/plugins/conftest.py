"""Shared helpers for the plugin tests: a fake [plugins] config and log capture."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from twisted.logger import globalLogPublisher


@dataclass(frozen=True)
class FakePluginsConfig:
    """Shaped like config.PluginsConfig (enabled, settings, lookup_timeout)."""

    enabled: tuple[str, ...] = ()
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    lookup_timeout: float = 2.0


@pytest.fixture
def logged():
    """Every log event emitted during the test, as dicts."""
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def texts(events: list[dict]) -> list[str]:
    from twisted.logger import formatEvent

    return [formatEvent(e) for e in events]
