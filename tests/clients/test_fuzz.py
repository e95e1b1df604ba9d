"""Random lines at the protocol: no exception escapes, the connection still works."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from asttapi_server.clients import codec

from .harness import USERS, Harness

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
methods = st.sampled_from(list(codec.PARAMS) + list(codec.UNAVAILABLE) + ["", "x", "rpc.x"])
params = st.dictionaries(
    st.sampled_from(["line", "call", "number", "seq", "epoch", "username", "token", "x"]),
    json_values,
    max_size=4,
) | json_values
requests = st.fixed_dictionaries(
    {"jsonrpc": st.sampled_from(["2.0", "2.0", "1.0", 2]), "method": methods, "params": params},
    optional={"id": st.none() | st.integers() | st.text(max_size=5) | json_values},
).map(lambda d: json.dumps(d).encode())
lines = st.lists(st.binary(max_size=200) | requests, max_size=8)


@given(lines, st.booleans())
def test_random_lines_never_break_the_connection(chunks, with_users):
    h = Harness(USERS if with_users else None, error_limit=10_000)
    h.tel.auto = True
    c = h.connect()
    c.result("ping")
    for chunk in chunks:
        c.send_raw(chunk + b"\n")
    for line in c.transport.value().split(b"\n"):
        if line:
            msg = json.loads(line)
            assert msg["jsonrpc"] == "2.0"
    c.transport.clear()
    if not c.closed:  # e.g. three failed logins may close it, deliberately
        assert c.result("ping") == {"seq": 0}


# Issue 11 item 10: lone surrogates anywhere, ids like 1e999. No -32603, no traceback.
odd_text = st.text(
    alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF) | st.characters() | st.sampled_from("\u2028\x85\n"),
    max_size=8,
)
odd_values = st.recursive(
    st.none() | st.integers() | st.floats(allow_nan=False) | odd_text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(odd_text, children, max_size=3),
    max_leaves=8,
)
odd_requests = st.fixed_dictionaries(
    {"jsonrpc": st.just("2.0"), "method": methods | odd_text,
     "params": st.dictionaries(st.sampled_from(["line", "call", "number", "seq"]) | odd_text, odd_values, max_size=3)},
    optional={"id": odd_values | st.sampled_from([float("inf"), float("-inf")])},
).map(lambda d: json.dumps(d).replace("-Infinity", "-1e999").replace("Infinity", "1e999").encode())


@given(st.lists(odd_requests, min_size=1, max_size=6))
def test_odd_unicode_and_numbers_get_clean_errors_never_a_traceback(chunks):
    from twisted.logger import globalLogPublisher

    failures: list[dict] = []

    def observe(event: dict) -> None:
        if event.get("log_failure") is not None:
            failures.append(event)

    globalLogPublisher.addObserver(observe)
    try:
        h = Harness(error_limit=10_000)
        h.tel.auto = True
        c = h.connect()
        for chunk in chunks:
            c.send_raw(chunk + b"\n")
        answers = [json.loads(line) for line in c.transport.value().split(b"\n") if line]
    finally:
        globalLogPublisher.removeObserver(observe)
    assert failures == []
    assert all(m.get("error", {}).get("code") != codec.INTERNAL_ERROR for m in answers)
    c.transport.clear()
    assert not c.closed and c.result("ping") == {"seq": 0}
