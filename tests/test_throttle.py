from asttapi_server.throttle import LogThrottle


def test_first_report_passes_then_one_per_interval_with_the_count_held_back():
    t = LogThrottle(interval=60.0)
    assert t.allow("a", 0.0) == 0
    assert [t.allow("a", s) for s in (1.0, 2.0, 59.9)] == [None, None, None]
    assert t.allow("b", 3.0) == 0  # another problem is not held back by the first
    assert t.allow("a", 60.0) == 3
    assert t.allow("a", 61.0) is None
    assert t.allow("a", 200.0) == 1


def test_memory_is_bounded():
    t = LogThrottle(max_keys=10)
    for i in range(1000):
        assert t.allow(i, 0.0) == 0
    assert len(t._seen) <= 10
