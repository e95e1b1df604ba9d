"""The Redis wire, sans-IO: every reply whole, byte by byte, and in one go with trailing bytes."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from asttapi_server.cluster.resp import NEED_DATA, Reader, ReplyError, RespProtocolError, command

REPLIES = [
    (b"+OK\r\n", b"OK"),
    (b"-ERR unknown command 'X'\r\n", ReplyError("ERR unknown command 'X'")),
    (b":-42\r\n", -42),
    (b"$5\r\nhe\r\no\r\n", b"he\r\no"),
    (b"$0\r\n\r\n", b""),
    (b"$-1\r\n", None),
    (b"*-1\r\n", None),
    (b"*0\r\n", []),
    (b"*2\r\n*2\r\n$1\r\na\r\n:1\r\n*1\r\n-STALE x\r\n", [[b"a", 1], [ReplyError("STALE x")]]),
    # XREAD's shape: [[stream, [[id, [field, value...]]...]]]
    (b"*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nk\r\n$1\r\nv\r\n",
     [[b"s", [[b"1-0", [b"k", b"v"]]]]]),
]


def same(a, b):
    if isinstance(a, ReplyError):
        return isinstance(b, ReplyError) and str(a) == str(b) and a.code == b.code
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def read_all(reader):
    out = []
    while (reply := reader.next()) is not NEED_DATA:
        out.append(reply)
    return out


@pytest.mark.parametrize("wire,value", REPLIES)
def test_each_reply_whole_byte_by_byte_and_with_trailing_bytes(wire, value):
    whole = Reader()
    whole.feed(wire)
    assert [same(r, value) for r in read_all(whole)] == [True]
    slow = Reader()
    for i in range(len(wire)):
        assert slow.next() is NEED_DATA
        slow.feed(wire[i:i + 1])
    assert [same(r, value) for r in read_all(slow)] == [True]
    trailing = Reader()
    trailing.feed(wire + b"+NEXT\r\n:1")
    got = read_all(trailing)
    assert same(got[0], value) and got[1] == b"NEXT" and len(got) == 2
    assert trailing.buffered == 2


@given(st.lists(st.sampled_from(range(len(REPLIES))), max_size=12), st.data())
def test_any_sequence_in_any_chunks_gives_the_same_replies(indexes, data):
    wire = b"".join(REPLIES[i][0] for i in indexes)
    reader = Reader()
    pos = 0
    while pos < len(wire):
        n = data.draw(st.integers(1, 9))
        reader.feed(wire[pos:pos + n])
        pos += n
    got = read_all(reader)
    assert len(got) == len(indexes)
    assert all(same(g, REPLIES[i][1]) for g, i in zip(got, indexes))


@pytest.mark.parametrize("wire", [
    b"?what\r\n", b":12a\r\n", b"$3\r\nabcXY", b"$999999999999\r\n", b"*99999999\r\n",
    b"+" + b"x" * 70000, b"*1\r\n" * 9 + b":1\r\n",
])
def test_what_is_not_resp_or_too_big_is_refused(wire):
    with pytest.raises(RespProtocolError):
        Reader().feed(wire)


def test_commands_are_arrays_of_bulk_strings():
    assert command("SET", "k", b"\xff\r\n", 12) == b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\n\xff\r\n\r\n$2\r\n12\r\n"
    assert command("GET", "\u00e9") == b"*2\r\n$3\r\nGET\r\n$2\r\n\xc3\xa9\r\n"
    with pytest.raises(TypeError):
        command("SET", "k", 1.5)
    with pytest.raises(TypeError):
        command("SET", "k", True)
    with pytest.raises(ValueError):
        command()
