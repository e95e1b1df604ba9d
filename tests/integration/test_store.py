"""The call store adapter (asttapi_server/store.py): atomic file, batched writes, bad files ignored.

On a ``Clock`` (no thread pool) writes happen inline, so every test is
deterministic; the threaded path is the same function run by
``deferToThreadPool`` (see RealReactor below).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile

import pytest
from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import TestCase

from asttapi_server.core import CallModel
from asttapi_server.store import CallStore, read_store, write_atomically
from tests.core.helpers import sig

UID = "1795674354.1"


def model_with_a_call() -> CallModel:
    m = CallModel()
    m.apply(sig("LINE_NEWCALL line_1", UID, "PJSIP/trunk-00000001"), 1.0)
    m.apply(sig("LINE_CALLSTATE LINECALLSTATE_CONNECTED", UID), 1.0)
    m.apply(sig('SET CALLERIDNAME Müller, "Jörg"', UID), 1.0)
    return m


def started(path, model, clock=None) -> CallStore:
    store = CallStore(str(path), model, clock or Clock())
    store.startService()
    return store


def test_save_and_load_round_trip_through_the_file(tmp_path):
    path = tmp_path / "calls.json"
    m = model_with_a_call()
    store = started(path, m)
    store.changed()
    store.clock.advance(store.delay)
    assert store.writes == 1
    fresh = CallModel()
    (call,) = started(path, fresh).restored
    assert fresh.snapshot(call, "line_1") == m.snapshot(m.by_uniqueid(UID), "line_1")
    assert call.callinfo["calleridname"] == 'Müller, "Jörg"' and call.channel == "PJSIP/trunk-00000001"


def test_the_file_is_private_and_no_temp_file_is_left(tmp_path):
    path = tmp_path / "new-dir" / "calls.json"  # the directory is created
    write_atomically(str(path), b'{"a": 1}')
    write_atomically(str(path), b'{"a": 2}')
    assert read_store(str(path)) == {"a": 2}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # caller ids are personal data
    assert os.listdir(path.parent) == ["calls.json"]


def test_writes_are_batched_and_an_unchanged_state_is_not_rewritten(tmp_path):
    path = tmp_path / "calls.json"
    m = model_with_a_call()
    store = started(path, m)
    for _ in range(1000):  # a burst of AMI events
        store.changed()
    assert not path.exists()  # nothing on the hot path
    store.clock.advance(store.delay)
    assert store.writes == 1
    store.changed()
    store.clock.advance(store.delay)
    assert store.writes == 1  # same calls, same bytes: no write
    m.apply(sig("LINE_CALLSTATE LINECALLSTATE_ONHOLD", UID), 2.0)
    store.changed()
    store.clock.advance(store.delay)
    assert store.writes == 2
    assert json.loads(path.read_text())["calls"][0]["states"] == {"line_1": "LINECALLSTATE_ONHOLD"}


class Turns(Clock):
    """A Clock that can run one reactor turn: only what was due when the turn began.

    (``Clock.advance`` also runs what those calls schedule for now, i.e. a
    whole sliced batch at once; a real reactor does I/O in between.)
    """

    def turn(self, seconds: float = 0.0) -> None:
        self.rightNow += seconds
        due = [c for c in self.calls if c.getTime() <= self.rightNow]
        for call in due:
            self.calls.remove(call)
            call.called = 1
            call.func(*call.args, **call.kw)


def five_calls_one_slice_built(tmp_path):
    """Five live calls, a store of slices of 2, a batch begun: its first slice recorded."""
    path = tmp_path / "calls.json"
    m = CallModel()
    for n in range(5):
        m.apply(sig("LINE_NEWCALL line_1", f"1795674354.{n}"), 1.0)
    clock = Turns()
    store = CallStore(str(path), m, clock, slice_size=2)
    store.startService()
    store.changed()
    clock.turn(store.delay)
    return path, m, clock, store


def test_many_calls_are_recorded_a_slice_per_reactor_turn(tmp_path):
    path, m, clock, store = five_calls_one_slice_built(tmp_path)  # slice 1: calls 1-2
    assert not path.exists() and len(clock.getDelayedCalls()) == 1
    m.apply(sig("LINE_NEWCALL line_2", "1795674354.1"), 1.1)  # changes call 2, already recorded
    m.apply(sig("LINE_CALLSTATE LINECALLSTATE_IDLE", "1795674354.4"), 1.1)  # call 5 ends before its slice
    store.changed()  # a batch is under way: no second timer
    assert len(clock.getDelayedCalls()) == 1
    clock.turn()  # slice 2 (calls 3-4)
    clock.turn()  # the rest, then the write
    assert store.writes == 1
    calls = json.loads(path.read_text())["calls"]
    assert [c["handle"] for c in calls] == [1, 2, 3, 4]  # the ended call is not kept
    assert calls[1]["states"] == {"line_1": "NEW"}  # as of its slice
    clock.advance(store.delay)  # the change after its slice is the next batch's
    assert store.writes == 2
    assert json.loads(path.read_text())["calls"][1]["states"] == {"line_1": "NEW", "line_2": "NEW"}
    assert clock.getDelayedCalls() == []


def test_a_stop_during_a_batch_writes_everything_at_once(tmp_path):
    path, _m, clock, store = five_calls_one_slice_built(tmp_path)
    store.stopService()
    assert store.writes == 1 and len(json.loads(path.read_text())["calls"]) == 5
    assert clock.getDelayedCalls() == []


def test_a_clean_stop_writes_at_once(tmp_path):
    path = tmp_path / "calls.json"
    store = started(path, model_with_a_call())
    store.changed()
    store.stopService()  # no clock advance: the final write does not wait
    assert store.writes == 1 and len(json.loads(path.read_text())["calls"]) == 1
    assert store.clock.getDelayedCalls() == []


@pytest.mark.parametrize(("content", "reason"), [
    (b"\x00\xff\xfe", "it is not JSON"),
    (b'{"format": "asttapi-calls", "calls": [', "it is not JSON (Expecting value at byte 38)"),
    (b"[" * 100_000, "it is not JSON"),
    (b'{"format": "someone-else"}', "not an asttapi call store (format 'someone-else')"),
    (b'{"format": "asttapi-calls", "version": 0}', "store version 0, this server reads version 1"),
])
def test_a_bad_store_is_one_warning_and_no_calls(tmp_path, content, reason):
    path = tmp_path / "calls.json"
    path.write_bytes(content)
    m = CallModel()
    with capturedLogs() as logs:
        store = started(path, m)
    assert store.restored == [] and m.tracked == 0
    (line,) = logs
    assert line["log_level"] == LogLevel.warn and line["reason"] == reason and "log_failure" not in line
    assert path.read_bytes() == content  # left for the admin to look at until the next write


def test_an_unreadable_store_is_one_warning(tmp_path):
    path = tmp_path / "calls.json"
    path.mkdir()  # e.g. a directory where the file should be
    with capturedLogs() as logs:
        started(path, CallModel())
    (line,) = logs
    assert line["log_level"] == LogLevel.warn and line["reason"] == "it is not a regular file (a directory)"


def test_no_file_yet_is_a_quiet_start(tmp_path):
    with capturedLogs() as logs:
        store = started(tmp_path / "calls.json", model_with_a_call())
    assert store.restored == [] and [e["log_level"] for e in logs] == [LogLevel.info]


def test_a_write_that_fails_is_logged_once_and_never_raises(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    store = started(blocker / "calls.json", model_with_a_call())
    with capturedLogs() as logs:
        for n in range(3):
            store.changed()
            store.clock.advance(store.delay)
    assert store.writes == 0
    (line,) = logs  # throttled: one line a minute per kind of error
    assert line["log_level"] == LogLevel.warn and "cannot write it" in line["log_format"]
    blocker.unlink()  # the admin fixes it: the next change is written
    store.changed()
    store.clock.advance(store.delay)
    assert store.writes == 1


class RealReactor(TestCase):
    """On a real reactor the write (and its fsync) runs in the thread pool, never in the reactor."""

    def test_writes_go_through_the_thread_pool(self):
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        path = os.path.join(directory, "calls.json")
        store = CallStore(path, model_with_a_call(), reactor)
        self.assertTrue(store.thread)
        # Wait for the write itself, not a fixed polling budget (2 s of
        # polling failed on a loaded machine): the batch delay plus a thread
        # pool turn have no upper bound there.
        import threading

        from asttapi_server import store as store_module

        threads, written = [], Deferred()
        real_write, real_written = store_module.write_atomically, store._written

        def write_atomically(*args):
            threads.append(threading.current_thread())
            return real_write(*args)

        def _written(result, data):
            real_written(result, data)
            if not written.called:
                written.callback(None)

        self.patch(store_module, "write_atomically", write_atomically)
        store._written = _written
        store.startService()
        store.changed()

        async def wait():
            await written
            self.assertEqual(store.writes, 1)
            self.assertNotIn(threading.main_thread(), threads)
            self.assertEqual(len(read_store(path)["calls"]), 1)
            await store.stopService()

        return ensureDeferred(wait())


def test_the_store_benchmark_stays_runnable():
    """bench/call_store.py on a few calls: a smoke test, not a measurement."""
    from bench import call_store

    figures = call_store.run(calls=20, repeats=2)
    assert figures["calls"] == 20 and figures["file_bytes"] > 20 * 300
