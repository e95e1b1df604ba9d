"""Each test runs its own fresh reactor (not the global one, which other tests in the
same worker may have touched): ``run(lambda reactor: coroutine)`` returns its result."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from twisted.internet import defer, task
from twisted.python.failure import Failure


def fresh_reactor() -> Any:
    from twisted.internet.epollreactor import EPollReactor

    return EPollReactor()


def run(fn: Callable[[Any], Any], timeout: float = 60.0) -> Any:
    """Run ``await fn(reactor)`` on a new reactor; its result, or its exception raised here.

    ``timeout`` fails the test rather than hanging the suite.
    """
    reactor = fresh_reactor()
    outcome: list[Any] = []

    def go() -> None:
        d = defer.ensureDeferred(fn(reactor))
        d.addBoth(done)

    def done(result: Any) -> None:
        if not outcome:
            outcome.append(result)
        if reactor.running:
            reactor.stop()

    def too_long() -> None:
        done(Failure(TimeoutError(f"the test did not finish in {timeout}s")))

    reactor.callWhenRunning(go)
    timer = reactor.callLater(timeout, too_long)
    # No signal handlers: they are process-wide and would outlive this reactor, under other
    # tests of the same worker (child processes are subprocess.Popen, see nodes.Child).
    reactor.run(installSignalHandlers=False)
    if timer.active():
        timer.cancel()
    try:
        reactor.waker.connectionLost(None)
        reactor._poller.close()
    except Exception:
        pass
    result = outcome[0]
    if isinstance(result, Failure):
        result.raiseException()
    return result


def sleep(reactor: Any, seconds: float) -> defer.Deferred:
    return task.deferLater(reactor, seconds, lambda: None)


async def until(reactor: Any, predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Wait (re-checking every 10 ms) until ``predicate()`` is true; its value. Fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await sleep(reactor, 0.01)
