"""Mutated real AMI streams through parser -> bridge -> call model.

The parser's own tests (tests/ami/test_parser.py) cut clean captures at every
boundary and feed hand-made garbage; tests/core/test_properties.py throws
random signal interleavings at the model. Here the real captures in
tests/data are damaged the way networks and proxies damage them (bit flips,
truncation, duplicated or lost blank lines, stray bytes), split at random
read boundaries and fed through the production path. Whatever comes in:

* no exception escapes, and the bridge never has to log a failure (its
  catch-all would hide a crash in the model or a plugin);
* the parser's buffer stays under its cap;
* a clean capture fed after the garbage still gives exactly the manual's
  TAPI events for its call.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.logger import globalLogPublisher

from asttapi_server.ami.parser import AMIParser
from tests.ami.helpers import DATA, LEGACY, load
from tests.integration.fakes import make_bridge

CAPTURES = [
    "05_inbound_call.monitor.raw", "06_outbound_9NXXXXXX.monitor.raw", "07_outbound_busy.monitor.raw",
    "10_originate_async.monitor.raw", "11_coreshowchannels.monitor.raw", "14_status_action.monitor.raw",
    "17_shutdown_restart.monitor.raw",
]
RAW = {name: load(DATA / name) for name in CAPTURES}
RAW.update({p.name: p.read_bytes() for p in sorted(LEGACY.glob("*.raw"))})
CAP = 16384  # a small message cap, so oversize handling is exercised too
CLEAN = load(DATA / "05_inbound_call.monitor.raw").replace(b"1795674354.", b"4242424242.")
INBOUND = ["LINE_NEWCALL", "LINECALLSTATE_OFFERING", "LINECALLINFOSTATE_CALLERID",
           "LINECALLSTATE_CONNECTED", "LINECALLSTATE_IDLE"]

mutation = st.one_of(
    st.tuples(st.just("flip"), st.floats(0, 1, exclude_max=True), st.integers(0, 7)),
    st.tuples(st.just("truncate"), st.floats(0, 1, exclude_max=True), st.just(0)),
    st.tuples(st.just("cut_out"), st.floats(0, 1, exclude_max=True), st.integers(1, 400)),
    st.tuples(st.just("dup_blank"), st.floats(0, 1, exclude_max=True), st.integers(1, 3)),
    st.tuples(st.just("drop_blank"), st.floats(0, 1, exclude_max=True), st.just(0)),
    st.tuples(st.just("insert"), st.floats(0, 1, exclude_max=True), st.binary(min_size=1, max_size=40)),
    st.tuples(st.just("bare_lf"), st.floats(0, 1, exclude_max=True), st.integers(1, 2000)),
    st.tuples(st.just("huge_line"), st.floats(0, 1, exclude_max=True), st.integers(CAP // 2, CAP * 3)),
)


def mutate(data: bytes, ops) -> bytes:
    buf = bytearray(data)
    for op, where, arg in ops:
        if not buf:
            break
        i = int(where * len(buf))
        if op == "flip":
            buf[i] ^= 1 << arg
        elif op == "truncate":
            del buf[i:]
        elif op == "cut_out":
            del buf[i:i + arg]
        elif op == "dup_blank":
            j = buf.find(b"\r\n\r\n", i)
            if j >= 0:
                buf[j:j] = b"\r\n" * arg
        elif op == "drop_blank":
            j = buf.find(b"\r\n\r\n", i)
            if j >= 0:
                del buf[j:j + 2]
        elif op == "insert":
            buf[i:i] = arg
        elif op == "bare_lf":
            buf[i:i + arg] = bytes(buf[i:i + arg]).replace(b"\r\n", b"\n")
        elif op == "huge_line":
            buf[i:i] = b"X-Junk: " + b"z" * arg
    return bytes(buf)


def chunks(data: bytes, sizes: list[int]):
    i, k = 0, 0
    while i < len(data):
        n = sizes[k % len(sizes)] if sizes else len(data)
        yield data[i:i + n]
        i += n
        k += 1


@given(
    names=st.lists(st.sampled_from(sorted(RAW)), min_size=1, max_size=3),
    ops=st.lists(mutation, max_size=12),
    sizes=st.lists(st.integers(1, 3000), max_size=8),
    filtered=st.booleans(),
)
def test_damaged_captures_never_break_the_pipeline(names, ops, sizes, filtered):
    bridge, hub, clock, _ami = make_bridge()
    parser = AMIParser(max_message_bytes=CAP)
    if filtered:
        parser.set_event_filter(bridge.ami.event_filter)
    failures: list[dict] = []

    def watch(event: dict) -> None:
        if "log_failure" in event:
            failures.append(event)

    def feed(data: bytes) -> None:
        for chunk in chunks(data, sizes):
            for message in parser.feed(chunk):
                if message.kind == "event":
                    bridge.on_ami_event(message)
                clock.advance(0.001)
            assert len(parser._tail) <= CAP, "parser buffer grew past its cap"

    globalLogPublisher.addObserver(watch)
    try:
        feed(mutate(b"".join(RAW[n] for n in names), ops))
        # the link recovers at the next message boundary: a clean call still works
        feed(b"\r\n\r\n")
        hub.events.clear()
        feed(CLEAN)
    finally:
        globalLogPublisher.removeObserver(watch)
    assert not failures, [e.get("log_format") for e in failures]
    clean = [e for e in hub.events if e.callinfo.get("uniqueid", "").startswith("4242424242.")]
    assert [e.param or e.msg for e in clean if e.line == "line_1"] == INBOUND
    assert {e.line for e in clean} == {"line_1"}
