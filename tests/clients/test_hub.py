"""The hub: seq, ring, fan-out."""

from __future__ import annotations

import json
from collections import deque

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


# -- issue 11: bounds, shrinking, robust fan-out -----------------------------------------


def seqs(lines: list[bytes] | None) -> list[int] | None:
    return None if lines is None else [json.loads(x)["params"]["seq"] for x in lines]


def test_the_ring_is_bounded_by_bytes_as_well_as_by_count():
    hub = Hub(ring_size=1000, ring_bytes=100_000, epoch="E")
    a = Sub(1)
    hub.subscribe(a, "l")
    big = event("LINE_CALLINFO", "l", 1, "LINECALLINFOSTATE_CALLERID").with_callinfo(calleridname="N" * 30_000)
    for _ in range(10):
        hub.publish(big)
    assert len(a.got) == 10  # every event is delivered
    assert hub.ring_bytes <= 100_000 and hub.ring_events == 3
    assert seqs(hub.missed("l", 7)) == [8, 9, 10]
    assert hub.missed("l", 6) is None  # seq 7 was evicted for its size: a gap, not a silent loss
    # An event bigger than the whole budget is delivered but never kept.
    huge = big.with_callinfo(calleridname="N" * 200_000)
    hub.publish(huge)
    assert len(a.got) == 11
    assert hub.missed("l", 10) is None
    assert hub.ring_bytes <= 100_000


def test_the_count_bound_still_applies():
    hub = Hub(ring_size=5, ring_bytes=1 << 30)
    for _ in range(50):
        hub.publish(event("LINE_CALLSTATE", "l", 1, "LINECALLSTATE_CONNECTED"))
    assert hub.ring_events == 5 and seqs(hub.missed("l", 45)) == [46, 47, 48, 49, 50]


def test_line_records_go_away_without_subscribers_or_ring_entries():
    hub = Hub(ring_size=100, epoch="E")
    for i in range(10_000):  # a million distinct names, scaled down: the PBX names ever-new lines
        hub.publish(event("LINE_NEWCALL", f"ghost{i}", i))
    assert hub.tracked_lines == 100  # only the lines still in the ring
    sub = Sub(1)
    for i in range(500):
        hub.subscribe(sub, f"open{i}")
        hub.unsubscribe(sub, f"open{i}")
    assert hub.tracked_lines == 100
    for _ in range(100):
        hub.publish(event("LINE_LINEDEVSTATE", None, None, "LINEDEVSTATE_INSERVICE"))
    assert hub.tracked_lines == 0 and hub.open_lines == 0
    # A dropped line never claims a complete replay it cannot give.
    assert hub.missed("ghost5", 5) is None
    assert hub.missed("never-seen", 0) is None
    assert hub.missed("never-seen", hub.seq - 100) is not None


def test_a_resume_on_a_line_with_nothing_in_the_ring_does_not_walk_the_ring():
    class Untouchable(deque):
        def __iter__(self):
            raise AssertionError("missed() walked the whole ring")

        __reversed__ = __iter__

    hub = Hub(ring_size=10_000, epoch="E")
    for i in range(10_000):
        hub.publish(event("LINE_CALLINFO", "busy", 1, "LINECALLINFOSTATE_OTHER"))
    hub._ring = Untouchable(hub._ring)
    hub._lines["busy"].ring = Untouchable(hub._lines["busy"].ring)
    assert hub.missed("quiet", 1) == []  # no record of its own: nothing to walk
    hub.subscribe(Sub(1), "quiet2")
    assert hub.missed("quiet2", 1) == []


def test_replay_merges_line_less_events_in_seq_order_and_skips_own_newcalls():
    hub = Hub(epoch="E")
    hub.publish(event("LINE_NEWCALL", "l", 1, owner=7))
    hub.publish(event("LINE_LINEDEVSTATE", None, None, "LINEDEVSTATE_OUTOFSERVICE"))
    hub.publish(event("LINE_CALLSTATE", "other", 2, "LINECALLSTATE_OFFERING"))
    hub.publish(event("LINE_CALLSTATE", "l", 1, "LINECALLSTATE_DIALTONE"))
    hub.publish(event("LINE_LINEDEVSTATE", None, None, "LINEDEVSTATE_INSERVICE"))
    assert seqs(hub.missed("l", 0)) == [1, 2, 4, 5]
    assert seqs(hub.missed("l", 0, sid=7)) == [2, 4, 5]
    assert json.loads(hub.missed("l", 1)[0])["params"] == {
        "line": "l", "devstate": "LINEDEVSTATE_OUTOFSERVICE", "seq": 2, "replayed": True,
    }


def test_line_less_events_reach_every_line_despite_a_broken_client_and_an_unencodable_name():
    hub = Hub()
    subs = [Sub(1), Broken(2), Sub(3), Sub(4)]
    hub.subscribe(subs[0], "a")
    hub.subscribe(subs[1], "b")
    hub.subscribe(subs[2], "sip/\ud800")  # only reachable past lineOpen's check, by a bug
    hub.subscribe(subs[3], "z")
    hub.publish(event("LINE_LINEDEVSTATE", None, None, "LINEDEVSTATE_OUTOFSERVICE"))
    hub.publish(event("LINE_LINEDEVSTATE", None, None, "LINEDEVSTATE_INSERVICE"))
    for sub in (subs[0], subs[2], subs[3]):
        assert [json.loads(x)["params"]["devstate"] for x in sub.got] == [
            "LINEDEVSTATE_OUTOFSERVICE", "LINEDEVSTATE_INSERVICE",
        ]
    assert json.loads(subs[2].got[0])["params"]["line"] == "sip/\ud800"  # written as a JSON escape
    assert json.loads(subs[3].got[0])["params"]["line"] == "z"


def test_a_resume_replays_at_most_limit_events_else_gap():
    hub = Hub(ring_size=5000, epoch="E")
    for _ in range(1500):
        hub.publish(event("LINE_CALLSTATE", "busy", 1, "LINECALLSTATE_CONNECTED"))
    assert hub.missed("busy", 0) is None  # 1,500 > MAX_REPLAY: rebuild from calls
    assert len(hub.missed("busy", 500)) == 1000
    hub.publish(event("LINE_LINEDEVSTATE", None, None, "LINEDEVSTATE_OUTOFSERVICE"))
    assert hub.missed("busy", 500) is None  # the line-less event counts too
    assert len(hub.missed("busy", 501)) == 1000
    assert len(hub.missed("busy", 0, limit=10_000)) == 1501


def test_a_cluster_node_publishes_the_logs_seqs_and_resumes_like_a_single_server():
    """asttapi_server.cluster: seqs come from the event log; restart() and lose() mark what a resume cannot get."""
    hub = Hub()
    a = Sub(1)
    hub.subscribe(a, "l")
    hub.restart("e1", 100)  # joined the log at seq 100: anything before is a rebuild
    assert hub.missed("l", 99, "e1") is None and hub.missed("l", 100, "e1") == []
    assert hub.publish(event("LINE_NEWCALL", "l", 1), 105) == 105
    assert hub.publish(event("LINE_NEWCALL", "l", 2), 104) == 0  # never two events under one seq
    assert hub.publish(event("LINE_NEWCALL", "l", 3), 109) == 109
    assert [json.loads(d)["params"]["seq"] for d in a.got] == [105, 109]
    assert [json.loads(d)["params"]["seq"] for d in hub.missed("l", 100, "e1")] == [105, 109]
    hub.lose(106)  # entries up to 106 may be missing (a fail-over's gap marker at 107)
    assert hub.missed("l", 105, "e1") is None and len(hub.missed("l", 106, "e1")) == 1
    hub.restart("e2", 3)  # Redis failed over: a new numbering, subscribers kept
    assert hub.missed("l", 109, "e1") is None and hub.missed("l", 3, "e2") == [] and hub.subscribers("l") == 1
    assert hub.publish(event("LINE_NEWCALL", "l", 4), 4) == 4 and hub.epoch == "e2"


def test_a_line_less_event_for_some_lines_reaches_and_replays_to_those_only():
    """A PBX's LINE_LINEDEVSTATE goes to that PBX's lines (``lines``), one ring entry, and a resume
    of another line does not replay it."""
    hub = Hub(epoch="E")
    hq, branch = Sub(1), Sub(2)
    hub.subscribe(hq, "line_1")
    hub.subscribe(branch, "line_9")
    seq = hub.publish(event("LINE_LINEDEVSTATE", None, None, "LINEDEVSTATE_OUTOFSERVICE"), lines=["line_1"])
    assert [json.loads(d)["params"]["line"] for d in hq.got] == ["line_1"] and branch.got == []
    assert hub.ring_events == 1
    assert seqs(hub.missed("line_1", 0)) == [seq] and hub.missed("line_9", 0) == []
    hub.publish(event("LINE_LINEDEVSTATE", None, None, "LINEDEVSTATE_INSERVICE"), lines=["line_1", "gone"])
    assert len(hq.got) == 2 and branch.got == []


def test_the_newcall_owner_rule_is_one_function():
    """Issue 25: live fan-out, the replay ring and lineOpen's announcements ask the same question."""
    from asttapi_server.clients.hub import sends_newcall

    assert sends_newcall(None, 7) and sends_newcall(3, 7) and sends_newcall(3, None)
    assert not sends_newcall(7, 7)
