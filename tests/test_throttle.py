from asttapi_server.throttle import LogThrottle


def test_first_report_passes_then_one_per_interval_with_the_count_held_back():
    t = LogThrottle(interval=60.0)
    assert t.allow("a", 0.0) == 0
    assert [t.allow("a", s) for s in (1.0, 2.0, 59.9)] == [None, None, None]
    assert t.allow("b", 3.0) == 0  # another problem is not held back by the first
    assert t.allow("a", 60.0) == 3
    assert t.allow("a", 61.0) is None
    assert t.allow("a", 200.0) == 1


def test_memory_and_lines_are_bounded_under_ever_new_problems():
    """Issue 11 item 8: a PBX sending a different bad block each time must not get a line each."""
    t = LogThrottle(max_keys=10)
    let_through = sum(t.allow(i, 0.0) is not None for i in range(1000))
    assert let_through == 11  # ten problems, then one line for all the others
    assert len(t._seen) <= 11
    # A minute later the quiet problems are forgotten and new ones get their own line again.
    assert t.allow("new", 61.0) == 0


def test_overflow_reports_how_many_were_held():
    t = LogThrottle(interval=60.0, max_keys=1)
    assert t.allow("a", 0.0) == 0
    assert t.allow("b", 1.0) == 0  # the overflow's first line
    assert [t.allow(k, 2.0) for k in "cde"] == [None, None, None]
    assert t.allow("a", 30.0) is None  # "a" is still remembered and held
    # "a" held a report, so it is not forgotten: "f" is counted as overflow,
    # whose interval has passed: it goes through with the three held back.
    assert t.allow("f", 61.0) == 3
