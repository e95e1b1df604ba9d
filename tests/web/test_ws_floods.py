"""The client-flood tests (tests/clients/test_floods.py, request rate and limits), over WebSocket.

Collected again with the WebSocket harness, as test_ws_protocol.py does for
test_protocol.py. That module comes with the request-rate limit; until it is
there, this one is skipped.
"""

from __future__ import annotations

import pytest

flood_tests = pytest.importorskip("tests.clients.test_floods", reason="no tests/clients/test_floods.py yet")
from tests.clients.test_floods import *  # noqa: E402,F401,F403  (collected again, over WebSocket)

from .harness import WSHarness  # noqa: E402


@pytest.fixture(autouse=True)
def over_websocket(monkeypatch):
    monkeypatch.setattr(flood_tests, "Harness", WSHarness)
