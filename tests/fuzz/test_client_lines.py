"""Random JSON and non-JSON lines at the client protocol, with its real limits on.

tests/clients/test_fuzz.py already throws random lines and requests at a
connection with the error-flood limit switched off. Here the production limits
stay on (20 errors per 10 s, a line cap, three failed logins), lines arrive in
random TCP chunks with time passing between them, and some are oversized,
not UTF-8 or deeply nested. Whatever comes in: no exception escapes; every
line out is a JSON-RPC 2.0 object; and afterwards the connection either still
answers a valid request or was closed by a limit, in which case the last thing
the server wrote is the final error (id null) explaining why.
"""

from __future__ import annotations

import json

from hypothesis import event, given
from hypothesis import strategies as st

from asttapi_server.clients import codec
from tests.clients.harness import USERS, Harness

LIMIT = 2048

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)
request = st.fixed_dictionaries(
    {"jsonrpc": st.just("2.0"),
     "method": st.sampled_from(list(codec.PARAMS) + list(codec.UNAVAILABLE) + ["login", "nope", ""]),
     "params": st.dictionaries(st.sampled_from(["line", "call", "number", "seq", "epoch", "username", "token"]),
                               json_values, max_size=4) | json_values},
    optional={"id": st.integers() | st.text(max_size=6) | st.none() | json_values},
).map(lambda d: json.dumps(d).encode())

line = st.one_of(
    request,
    json_values.map(lambda v: json.dumps(v).encode()),               # JSON, but not a request object
    st.binary(max_size=120).map(lambda b: b.replace(b"\n", b" ")),   # anything, including bad UTF-8
    st.text(max_size=80).map(lambda t: t.replace("\n", " ").encode("utf-8", "surrogatepass")),
    st.just(b"[" * 500 + b"]" * 500),                                # deep nesting
    st.just(b'{"jsonrpc":"2.0","id":1,"method":"ping"'),             # truncated JSON
    st.integers(LIMIT + 1, LIMIT * 3).map(lambda n: b'{"x":"' + b"a" * n + b'"}'),  # over the line cap
    st.just(b'{"jsonrpc":"2.0","id":7,"method":"ping"}'),           # valid, in the middle
)
step = st.tuples(line, st.sampled_from([b"\n", b"\r\n"]), st.floats(0, 4))


def split(data: bytes, cuts: list[int]):
    points = sorted({c % (len(data) + 1) for c in cuts})
    last = 0
    for p in points + [len(data)]:
        if p > last:
            yield data[last:p]
            last = p


@given(st.lists(step, max_size=40), st.lists(st.integers(0, 10**6), max_size=10), st.booleans())
def test_garbage_then_a_valid_request(steps, cuts, with_users):
    h = Harness(USERS if with_users else None, max_line_bytes=LIMIT)
    c = h.connect()
    out = []
    for raw, end, pause in steps:
        for piece in split(raw + end, cuts):
            c.send_raw(piece)
        h.clock.advance(pause)
        out.append(c.transport.value())
        c.transport.clear()
        if c.closed:
            break
    if not c.closed:
        c.send_raw(b"\n")  # end any half line the garbage left
        out.append(c.transport.value())
        c.transport.clear()
    written = [ln for ln in b"".join(out).split(b"\n") if ln]
    msgs = [json.loads(ln) for ln in written]
    msgs = [m for item in msgs for m in (item if isinstance(item, list) else [item])]  # batch answers
    assert all(m.get("jsonrpc") == "2.0" for m in msgs)
    event("closed by a limit" if c.closed else "still open")
    if c.closed:
        final = msgs[-1]
        assert final["id"] is None and "error" in final, final
        assert final["error"]["message"], final
        assert c.proto.queued == 0
    else:
        assert c.result("ping")["seq"] == 0
