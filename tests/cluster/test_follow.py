"""Ordering the PBXs' logs into one seq, pure: merge, COUNT cut-offs, gaps, bad entries."""

from __future__ import annotations

from hypothesis import given, strategies as st

from asttapi_server.cluster.entries import RemoteOwner, decode_event, encode_event
from asttapi_server.cluster.follow import Entry, Follower, Gap
from asttapi_server.core.events import TapiEvent


def entry(seq, prev, ms):
    return (f"{ms}-0".encode(), [b"s", str(seq).encode(), b"p", str(prev).encode(), b"t", b"3", b"k", b"e",
                                 b"d", b"{}"])


def seqs(out):
    return [(type(x).__name__, x.pbx, x.seq) for x in out]


def test_streams_merge_by_seq_and_positions_advance():
    f = Follower(count=10)
    f.start(4, {"a": (b"1-0", 4), "b": (b"0-0", 0)})
    r = f.read({"a": [entry(5, 4, 10), entry(7, 5, 12)], "b": [entry(6, 0, 11)]})
    assert seqs(r.out) == [("Entry", "a", 5), ("Entry", "b", 6), ("Entry", "a", 7)]
    assert f.positions() == {"a": b"12-0", "b": b"11-0"} and f.seq == 7


def test_a_stream_cut_short_by_count_holds_back_later_seqs_of_the_others():
    f = Follower(count=2)
    f.start(0, {"a": (b"0-0", 0), "b": (b"0-0", 0)})
    r = f.read({"a": [entry(1, 0, 1), entry(3, 1, 3)], "b": [entry(2, 0, 2), entry(5, 2, 5)]})
    assert seqs(r.out) == [("Entry", "a", 1), ("Entry", "b", 2), ("Entry", "a", 3)]  # b's 5 waits: a may have 4
    assert f.positions() == {"a": b"3-0", "b": b"2-0"}
    r = f.read({"a": [entry(4, 3, 4)], "b": [entry(5, 2, 5)]})
    assert seqs(r.out) == [("Entry", "a", 4), ("Entry", "b", 5)]


def test_a_hole_in_a_stream_is_a_gap_before_the_entry():
    f = Follower()
    f.start(10, {"a": (b"9-0", 10)})
    r = f.read({"a": [entry(15, 12, 20)]})  # 11 and 12 were trimmed before this node read them
    assert seqs(r.out) == [("Gap", "a", 15), ("Entry", "a", 15)]


def test_bad_and_old_entries_are_stepped_over():
    f = Follower(count=3)
    f.start(5, {"a": (b"1-0", 5)})
    r = f.read({"a": [(b"2-0", [b"x", b"y"]), entry(4, 3, 3), entry(6, 5, 4)]})
    assert seqs(r.out) == [("Entry", "a", 6)] and len(r.problems) == 2
    assert f.positions() == {"a": b"4-0"}  # never read again


@given(st.lists(st.sampled_from("abc"), min_size=1, max_size=60), st.integers(1, 7), st.data())
def test_any_interleaving_and_count_gives_every_seq_once_in_order(owners, count, data):
    """Appends to three streams in some order; reads with COUNT cut-offs see each seq once, in order."""
    streams = {p: [] for p in "abc"}
    last = {p: 0 for p in "abc"}
    for seq, pbx in enumerate(owners, 1):
        streams[pbx].append(entry(seq, last[pbx], seq))
        last[pbx] = seq
    f = Follower(count=count)
    f.start(0, {p: (b"0-0", 0) for p in "abc"})
    got = []
    for _ in range(len(owners) + 1):
        pos = f.positions()
        reply = {p: [e for e in s if int(e[0].split(b"-")[0]) > int(pos[p].split(b"-")[0])][:count]
                 for p, s in streams.items()}
        out = f.read(reply).out
        assert not any(isinstance(x, Gap) for x in out)
        got += [x.seq for x in out]
    assert got == list(range(1, len(owners) + 1))


def test_an_event_survives_the_log_and_its_owner_only_on_its_node():
    e = TapiEvent("LINE_NEWCALL", "line_1", 7, callinfo={"callerid": "200", "contact": {"name": "Ann"}}, owner=12)
    data = encode_event(e, "a/1")
    assert decode_event(data, "a/1") == e
    assert decode_event(data, "b/2").owner is None
    forwarded = TapiEvent("LINE_NEWCALL", "line_1", 8, owner=RemoteOwner("c/9", 3))
    assert decode_event(encode_event(forwarded, "a/1"), "c/9").owner == 3
    assert isinstance(Entry("a", 1, "e", b"", b"1-0"), Entry)
