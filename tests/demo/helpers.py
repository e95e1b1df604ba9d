"""Test helpers: a demo PBX session on a StringTransport and a Clock, and a tiny reader.

The reader is deliberately independent of asttapi_server.ami (which the demo is
used to test): blank-line-framed blocks of ``Key: value`` lines.
"""

from __future__ import annotations

import hashlib

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from asttapi_server.demo.engine import DemoEngine
from asttapi_server.demo.scenarios import Timing
from asttapi_server.demo.server import DemoAMIFactory

EPOCH = 1795674354.0
USER, SECRET = "asttapi", "asttapi-secret"


def parse_blocks(data: bytes) -> list[list[tuple[str, str]]]:
    text = data.decode("utf-8")
    if text.startswith("Asterisk Call Manager/"):
        text = text.split("\r\n", 1)[1]
    blocks = []
    for raw in text.split("\r\n\r\n"):
        if not raw.strip():
            continue
        pairs = []
        for line in raw.split("\r\n"):
            key, _, value = line.partition(": ")
            pairs.append((key, value))
        blocks.append(pairs)
    return blocks


def get(block, key):
    for k, v in block:
        if k == key:
            return v
    return None


def action(name: str, *pairs: tuple[str, str]) -> bytes:
    lines = [f"Action: {name}", *(f"{k}: {v}" for k, v in pairs)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class Session:
    """One AMI connection to an engine, through a StringTransport."""

    def __init__(self, factory: DemoAMIFactory) -> None:
        self.transport = StringTransport()
        self.protocol = factory.buildProtocol(None)
        self.protocol.makeConnection(self.transport)
        self._seen = 0

    def send(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def raw(self) -> bytes:
        return self.transport.value()

    def take(self) -> list[list[tuple[str, str]]]:
        """Messages received since the last take()."""
        data = self.transport.value()
        new, self._seen = data[self._seen:], len(data)
        return parse_blocks(new)

    def login(self, events: str = "on", md5: bool = False) -> None:
        if md5:
            self.send(action("Challenge", ("ActionID", "c1"), ("AuthType", "MD5")))
            challenge = get(self.take()[-1], "Challenge")
            key = hashlib.md5((challenge + SECRET).encode()).hexdigest()
            self.send(action("Login", ("ActionID", "l1"), ("AuthType", "MD5"),
                             ("Username", USER), ("Key", key), ("Events", events)))
        else:
            self.send(action("Login", ("ActionID", "l1"), ("Username", USER),
                             ("Secret", SECRET), ("Events", events)))
        self.take()


def make_pbx(timing: Timing | None = None):
    clock = Clock()
    clock.advance(EPOCH)
    engine = DemoEngine(clock, timing=timing or Timing())
    factory = DemoAMIFactory(engine, USER, SECRET)
    return clock, engine, factory


def tapievents(blocks) -> list[tuple[str, str]]:
    """(Uniqueid, TAPIEVENT) of every UserEvent, in order."""
    return [(get(b, "Uniqueid"), get(b, "TAPIEVENT")) for b in blocks
            if get(b, "Event") == "UserEvent"]


def run_until_idle(clock: Clock, limit: float = 120.0, step: float = 0.25) -> None:
    t = 0.0
    while clock.getDelayedCalls() and t < limit:
        clock.advance(step)
        t += step
