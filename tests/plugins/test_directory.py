"""DirectoryIndex: the background read loop every directory plugin shares (a Clock, a scripted reader)."""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.logger import formatEvent

from asttapi_server.directory import FAILURE_LOG_INTERVAL, Contact, DirectoryIndex, found_in, index_contacts
from asttapi_server.errors import DirectoryError

JANE = Contact("Jane Doe", "Northwind", ("+44 20 7946 0958", "07700 900123"), "jane@northwind.example")
SAM = Contact("Sam Smith", None, ("020 7946 0959",))


class Reader:
    """Answers each read with the next scripted outcome: contacts, None, an exception, or a Deferred."""

    def __init__(self, *outcomes) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0
        self.pending: list[defer.Deferred] = []

    def __call__(self):
        self.calls += 1
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            return defer.fail(outcome)
        if outcome == "pending":
            d = defer.Deferred()
            self.pending.append(d)
            return d
        return defer.succeed(outcome)


def make(reader, refresh=60.0):
    clock = Clock()
    index = DirectoryIndex("test_dir", reader, where="ldap://dir.example", refresh=refresh, region="GB",
                           source="dir", clock=clock, run_in_thread=lambda f: defer.maybeDeferred(f))
    return index, clock


def results(d):
    out = []
    d.addBoth(out.append)
    return out


def lines(logged, text):
    return [formatEvent(e) for e in logged if text in formatEvent(e)]


def test_reads_at_start_then_refresh_seconds_after_each_read():
    reader = Reader([JANE], [JANE, SAM], [SAM])
    index, clock = make(reader)
    assert results(index.start()) == [True]
    assert index.lookup("02079460958") == {"name": "Jane Doe", "company": "Northwind", "source": "dir",
                                            "number": "+44 20 7946 0958", "email": "jane@northwind.example"}
    assert index.lookup("07700900123")["number"] == "07700 900123"
    assert index.lookup("02079460959") is None
    clock.advance(59.9)
    assert reader.calls == 1
    clock.advance(0.1)
    assert reader.calls == 2 and index.lookup("+442079460959")["name"] == "Sam Smith"
    clock.advance(60)
    assert reader.calls == 3 and index.lookup("02079460958") is None  # Jane left the directory
    stats = index.stats()
    assert (stats.contacts, stats.numbers, stats.reads_ok, stats.reads_failed, stats.age) == (1, 1, 3, 0, 0.0)
    index.stop()
    assert clock.getDelayedCalls() == []


def test_reads_never_overlap_and_refresh_joins_the_read_under_way():
    reader = Reader("pending", [SAM])
    index, clock = make(reader, refresh=10)
    first = results(index.start())
    clock.advance(100)  # the read is slow: no second one starts meanwhile
    joined = results(index.refresh())
    assert reader.calls == 1 and first == joined == [] and clock.getDelayedCalls() == []
    assert index.stats().reading is True
    reader.pending[0].callback([JANE])
    assert first == joined == [True]
    assert [c.getTime() for c in clock.getDelayedCalls()] == [110.0]  # 10 s after that read ended
    assert results(index.refresh()) == [True]  # now: a new read, and the loop restarts from it
    assert reader.calls == 2 and [c.getTime() for c in clock.getDelayedCalls()] == [110.0]
    index.stop()


def test_a_failed_read_keeps_the_index_and_is_logged_once_per_interval(logged):
    down = DirectoryError("cannot connect to dir.example:389: [Errno 111] Connection refused")
    reader = Reader([JANE], down, down, down, down, [SAM])
    index, clock = make(reader, refresh=60)
    index.start()
    for _ in range(3):
        clock.advance(60)
        assert index.lookup("02079460958")["name"] == "Jane Doe"
    (line,) = lines(logged, "cannot read")
    assert line == ("test_dir: cannot read ldap://dir.example: cannot connect to dir.example:389: [Errno 111] "
                    "Connection refused; keeping the 1 contacts read 60s ago, next try in 60s")
    assert index.stats().last_error == str(down) and index.stats().reads_failed == 3
    clock.advance(FAILURE_LOG_INTERVAL - 180 + 60)
    assert len(lines(logged, "cannot read")) == 2
    assert lines(logged, "cannot read")[1].endswith("(2 more failed reads since the last report)")
    clock.advance(60)
    assert index.lookup("02079460959")["name"] == "Sam Smith"
    assert lines(logged, "test_dir: read 1 contacts with 1 numbers")[-1].endswith("(again, after 4 failed reads)")
    assert index.stats().last_error is None
    index.stop()


def test_nothing_read_yet_means_misses_not_waits(logged):
    reader = Reader(DirectoryError("the server refused the bind as 'cn=x': invalid credentials"))
    index, clock = make(reader)
    assert results(index.start()) == [False]
    assert index.lookup("02079460958") is None
    (line,) = lines(logged, "cannot read")
    assert "invalid credentials; its callers are not found until a read succeeds, next try in 60s" in line
    index.stop()


def test_a_bug_in_the_reader_is_logged_with_its_traceback_and_the_loop_goes_on(logged):
    reader = Reader(KeyError("boom"), [JANE])
    index, clock = make(reader)
    assert results(index.start()) == [False]
    (event,) = [e for e in logged if "cannot read" in formatEvent(e)]
    assert "KeyError" in formatEvent(event) and event["log_failure"].check(KeyError)
    clock.advance(60)
    assert index.lookup("02079460958")["name"] == "Jane Doe"
    index.stop()


def test_none_means_unchanged():
    reader = Reader([JANE], None)
    index, clock = make(reader)
    index.start()
    clock.advance(60)
    assert reader.calls == 2 and index.lookup("02079460958")["name"] == "Jane Doe"
    assert index.stats().reads_ok == 2
    index.stop()


def test_stop_cancels_the_read_under_way_quietly(logged):
    reader = Reader("pending")
    index, clock = make(reader)
    first = results(index.start())
    index.stop()
    assert first == [False] and clock.getDelayedCalls() == []
    assert lines(logged, "cannot read") == []


def test_a_number_two_contacts_share_pops_the_first():
    index = index_contacts([SAM, Contact("Other", None, ("+44 20 7946 0959",))], "GB")
    assert found_in(index.lookup("02079460959")) == (SAM, "020 7946 0959")
    jane = index_contacts([JANE], "GB")
    assert found_in(jane.lookup("07700900123")) == (JANE, "07700 900123")  # a second number: stored with it
    assert found_in(jane.lookup("+442079460958")) == (JANE, "+44 20 7946 0958")
