"""Issue 22 item 8: a call store written by someone else is read safely.

A FIFO at the path blocked start-up forever; a truncated or hostile file must
never kill the server (one warning line, no calls); every field is checked
with the rules of live input (``core/stored.py``). That Asterisk must confirm
a restored call's channel before anything acts on it is tested end to end in
``tests/faults/test_restart.py``.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs

from asttapi_server.core import CallModel
from asttapi_server.store import CallStore, read_store
from tests.core.helpers import sig
from tests.integration.test_store import UID, model_with_a_call


def state_bytes() -> bytes:
    """A store with two calls: test_store's answered call (a second line, a contact) and a lineMakeCall."""
    m = model_with_a_call()
    m.apply(sig("LINE_NEWCALL line_2", UID), 1.0)
    m.annotate(1, "contact", {"name": "Jörg", "crm_id": 17}, 1.0)
    m.make_call("line_1", "95551234", owner=7, now=2.0)
    return json.dumps(m.save_state()).encode()


def restore(path) -> tuple[list, list[str]]:
    """Start a store on ``path``; (restored calls, warning texts)."""
    with capturedLogs() as logs:
        store = CallStore(str(path), CallModel(), Clock())
        store.startService()
    warnings = [e["log_format"].format(**e) for e in logs if e["log_level"] >= LogLevel.warn]
    assert not [e for e in logs if e.get("log_failure") is not None]
    return store.restored, warnings


def test_a_fifo_at_the_path_does_not_block_start_up(tmp_path):
    path = tmp_path / "calls.json"
    os.mkfifo(path)
    result: list = []
    worker = threading.Thread(target=lambda: result.append(restore(path)), daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():  # the old code: open() waits for a writer; give it one so the thread ends
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(10)
        pytest.fail("reading the call store blocked on a FIFO")
    ((calls, warnings),) = result
    assert calls == []
    assert warnings == [f"Call store {path} ignored, starting with no calls: it is not a regular file (a FIFO)"]


@pytest.mark.parametrize("kind", ["directory", "socket", "device"])
def test_other_files_that_are_not_regular_are_refused_before_reading(tmp_path, kind):
    path = tmp_path / "calls.json"
    if kind == "directory":
        path.mkdir()
    elif kind == "socket":
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(path))
        s.close()
    else:
        path.symlink_to("/dev/zero")  # a symlink is followed: to a device, refused
    # (a socket cannot even be opened: "No such device or address")
    with pytest.raises(ValueError, match="it is not a regular file|cannot read it"):
        read_store(str(path))


def test_a_symlink_to_a_regular_file_is_read(tmp_path):
    (tmp_path / "real.json").write_bytes(state_bytes())
    (tmp_path / "calls.json").symlink_to(tmp_path / "real.json")
    calls, warnings = restore(tmp_path / "calls.json")
    assert len(calls) == 2 and warnings == []


def test_the_file_cut_at_every_byte_is_one_warning_and_never_a_crash(tmp_path):
    data = state_bytes()
    path = tmp_path / "calls.json"
    for cut in range(len(data)):
        path.write_bytes(data[:cut])
        calls, warnings = restore(path)
        assert calls == [] and len(warnings) == 1, cut
        assert warnings[0].startswith(f"Call store {path} ignored, starting with no calls: "), cut
    path.write_bytes(data)
    assert len(restore(path)[0]) == 2


@pytest.mark.parametrize("content", [
    b'{"format": "asttapi-calls", "version": 1, "next_handle": NaN, "calls": []}',
    b'{"format": "asttapi-calls", "version": 1, "next_handle": 1, "calls": [], "x": Infinity}',
    b'{"format": "asttapi-calls", "version": 1, "next_handle": ' + b"9" * 5000 + b', "calls": []}',
    b"[" * 100_000 + b"]" * 100_000,
    b'{"format": "asttapi-calls", "version": 1, "next_handle": 1, "calls": [' + b"{}," * 100_000 + b"{}]}",
])
def test_hostile_json_is_one_warning(tmp_path, content):
    path = tmp_path / "calls.json"
    path.write_bytes(content)
    calls, warnings = restore(path)
    assert calls == [] and len(warnings) == 1 and len(warnings[0]) < 400


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
FIELDS = ["handle", "uniqueid", "uniqueids", "channel", "channel_id", "owner_line", "owner_announced", "states",
          "modes", "callinfo", "ci_version", "ci_sent", "created", "updated", "hangup_at", "hangup_cause"]


@given(st.integers(min_value=0, max_value=1), st.sampled_from(FIELDS), JSON)
def test_any_value_in_any_field_is_refused_cleanly_or_restored_valid(index, key, value):
    """Whatever a hand edit puts in one field: a clean ValueError, or calls that
    a client can be sent and that the store can write again."""
    data = json.loads(state_bytes())
    data = copy.deepcopy(data)
    data["calls"][index][key] = value
    m = CallModel()
    try:
        calls = m.restore_state(data, 5.0)
    except ValueError as e:
        assert "\n" not in str(e) and len(str(e)) < 200
        return
    for call in calls:
        for line in call.seen_lines:
            json.dumps(m.snapshot(call, line), allow_nan=False).encode("utf-8")
        json.dumps(m.save_call(call), allow_nan=False).encode("utf-8")
        assert not call.confirmed
