"""The hub: seq, ring, fan-out."""

from __future__ import annotations

import json

import pytest

from asttapi_server.clients.hub import Hub

from .fakes import event


class Sub:
    def __init__(self, sid):
        self.sid = sid
        self.got: list[bytes] = []

    def send(self, data: bytes) -> None:
        self.got.append(data)


class Broken(Sub):
    def send(self, data: bytes) -> None:
        raise RuntimeError("boom")


def test_seq_increases_and_bytes_are_shared_between_subscribers():
    hub = Hub()
    a, b = Sub(1), Sub(2)
    hub.subscribe(a, "l")
    hub.subscribe(b, "l")
    assert hub.publish(event("LINE_NEWCALL", "l", 1)) == 1
    assert hub.publish(event("LINE_NEWCALL", "other", 2)) == 2
    assert a.got[0] is b.got[0]  # encoded once
    assert json.loads(a.got[0])["params"]["seq"] == 1
    assert len(a.got) == 1


def test_a_failing_subscriber_does_not_stop_the_others():
    hub = Hub()
    bad, good = Broken(1), Sub(2)
    hub.subscribe(bad, "l")
    hub.subscribe(good, "l")
    hub.publish(event("LINE_NEWCALL", "l", 1))
    assert len(good.got) == 1


def test_unsubscribe_and_counts():
    hub = Hub()
    a = Sub(1)
    hub.subscribe(a, "l")
    hub.subscribe(a, "l")
    assert hub.subscribers("l") == 1 and hub.open_lines == 1
    hub.unsubscribe(a, "l")
    hub.unsubscribe(a, "l")
    assert hub.subscribers("l") == 0 and hub.open_lines == 0


def test_missed_is_per_line_and_knows_its_gaps():
    hub = Hub(ring_size=4, epoch="E")
    for i in range(3):
        hub.publish(event("LINE_CALLINFO", "a", 1, "LINECALLINFOSTATE_OTHER"))
    hub.publish(event("LINE_CALLINFO", "b", 2, "LINECALLINFOSTATE_OTHER"))
    assert [json.loads(x)["params"]["seq"] for x in hub.missed("a", 1)] == [2, 3]
    assert hub.missed("a", 1, "other") is None
    hub.publish(event("LINE_CALLINFO", "b", 2, "LINECALLINFOSTATE_OTHER"))  # evicts a's seq 1
    assert hub.missed("a", 0) is None
    assert len(hub.missed("a", 1)) == 2
    assert hub.missed("b", 0) == hub.missed("b", 0) and len(hub.missed("b", 0)) == 2
    assert hub.missed("a", 5) == []
    assert hub.missed("a", 6) is None


def test_zero_ring_never_replays():
    hub = Hub(ring_size=0)
    assert hub.missed("a", 0) == []
    hub.publish(event("LINE_NEWCALL", "a", 1))
    assert hub.missed("a", 0) is None
    assert hub.missed("a", 1) == []
    with pytest.raises(ValueError):
        Hub(ring_size=-1)
