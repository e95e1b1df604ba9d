"""Issue 22 item 9: the peer corpus, every stream at many chunkings: the same messages, nothing held.

The corpus (58 raw AMI streams from 10 other AMI projects' test fixtures) lives
in the team's ``../shared/fixtures/peer-corpus/`` (see its INDEX.md) and is read
from there at test time, never copied: a clone without it skips these tests.

One of its streams, ``goami2__Queues.raw``, has a ``Response: Follows`` that
never gets ``--END COMMAND--``: the parser held the 37 messages after it (6,620
bytes) until the keepalive dropped the link 30 s later. Asterisk never sends
that shape (manager.c writes the marker straight after the output), so a reply
that is only headers and a blank line ends there, reported once.
"""

from __future__ import annotations

import random
import zlib
from pathlib import Path

import pytest

from asttapi_server.ami.parser import AMIParser

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "peer-corpus"
STREAMS = sorted(CORPUS.glob("*.raw")) if CORPUS.is_dir() else []
#: Streams this small get every 2-way split; bigger ones get splits around every message boundary.
SMALL = 3000
RANDOM_CHUNKINGS = 20

pytestmark = pytest.mark.skipif(not STREAMS, reason=f"the peer corpus is not at {CORPUS} (it is the team's, not shipped)")


def terminated(data: bytes) -> bytes:
    """The stream and a final blank line in its own line ends: every message it holds is complete."""
    return data + (b"\r\n\r\n" if b"\r\n" in data else b"\n\n")


def digest(messages) -> list[tuple]:
    return [(m.kind, m.name, tuple(m.items()), tuple(m.lines), tuple(m.output)) for m in messages]


def run(data: bytes, cuts) -> tuple[list[tuple], str | None, list[str], int]:
    """Feed ``data`` cut at ``cuts``; (messages, banner, errors, bytes still held)."""
    parser = AMIParser()
    out = []
    last = 0
    for cut in (*cuts, len(data)):
        out += parser.feed(data[last:cut])
        last = cut
    return digest(out), parser.banner, parser.errors, parser.buffered


#: Places of a big stream where 2-way splits are tried: this many, spread evenly over its places that matter.
MAX_PLACES = 50


def boundaries(data: bytes) -> list[int]:
    """Offsets around every ``Response: Follows`` and its marker, and around blank lines
    (where chunking matters): all of the former, at most :data:`MAX_PLACES` of the latter."""
    def around(needles, limit=None):
        places = []
        for needle in needles:
            i = data.find(needle)
            while i >= 0:
                places.append((i, len(needle)))
                i = data.find(needle, i + 1)
        places.sort()
        if limit is not None and len(places) > limit:
            places = places[:: len(places) // limit + 1]
        return {cut for i, n in places for cut in range(max(1, i - 1), min(len(data), i + n + 2))}

    return sorted(around((b"Follows", b"--END COMMAND--")) | around((b"\n\n", b"\r\n\r\n"), MAX_PLACES))


@pytest.fixture(scope="module", params=STREAMS, ids=[p.name for p in STREAMS])
def stream(request) -> tuple[str, bytes]:
    return request.param.name, terminated(request.param.read_bytes())


def test_the_corpus_is_all_there():
    assert len(STREAMS) == 58, [p.name for p in STREAMS]


def test_whole_the_stream_leaves_nothing_held(stream):
    name, data = stream
    messages, _banner, _errors, held = run(data, ())
    assert held == 0, (name, held)
    assert messages or _errors, name


def test_every_chunking_gives_the_same_messages_and_holds_nothing(stream):
    name, data = stream
    expected = run(data, ())
    assert run(data, range(1, len(data))) == expected, (name, "byte by byte")
    splits = range(1, len(data)) if len(data) <= SMALL else boundaries(data)
    for cut in splits:
        assert run(data, (cut,)) == expected, (name, cut)
    rng = random.Random(zlib.crc32(name.encode()))  # derandomized: the same splits every run
    for _ in range(RANDOM_CHUNKINGS):
        cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(2, 60))))
        assert run(data, cuts) == expected, (name, cuts)


def test_a_follows_reply_without_its_marker_holds_nothing_after_it():
    data = (CORPUS / "goami2__Queues.raw").read_bytes()
    start = data.index(b"Response: Follows")
    parser = AMIParser()
    before = parser.feed(data[:start])
    after = parser.feed(data[start:])
    # The reply itself, then every later message of the stream, at once (the stream's
    # own last message is complete: goami2's packs all end in a blank line).
    assert after[0].name == "Follows" and after[0].action_id == "bef2eb20211b9@okon.ferry.sip.com"
    assert after[0].get("Privilege") == "Command" and after[0].output == []
    assert len(after) == 1 + 37 and sum(len(m.raw) for m in after[1:]) > 6000, len(after)
    assert parser.buffered == 0
    assert len(before) + len(after) == len(run(terminated(data), ())[0])
    (report,) = [e for e in parser.errors if "END COMMAND" in e]
    assert "Follows" in report


def test_the_asterisk_14_shape_under_the_old_name_is_one_message_at_once():
    data = (CORPUS / "reactphp-ami__ParserTest.testParsingAsterisk14CommandResponse.raw").read_bytes()
    for size in (1, 2, 7, len(data)):
        parser = AMIParser()
        out = []
        for i in range(0, len(data), size):
            out += parser.feed(data[i : i + size])
        assert [m.name for m in out] == ["Follows"] and parser.buffered == 0, size
        assert len([e for e in parser.errors if "END COMMAND" in e]) == 1, size
