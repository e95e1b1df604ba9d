"""What every loopback JSON-RPC test client does with what it reads: keep it, and
let a test wait for the first message that matches."""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet import defer, reactor


class Watching:
    """Mixin: call :meth:`received` for each decoded message; ``wait_for`` looks
    at everything received so far, then at what comes."""

    messages: list
    _watchers: list

    def received(self, msg) -> None:
        self.messages.append(msg)
        for watcher in list(self._watchers):
            predicate, d = watcher
            if predicate(msg):
                self._watchers.remove(watcher)
                d.callback(msg)

    def wait_for(self, predicate: Callable[[dict], bool], timeout: float = 10.0) -> defer.Deferred:
        for msg in self.messages:
            if predicate(msg):
                return defer.succeed(msg)
        d: defer.Deferred = defer.Deferred()
        self._watchers.append((predicate, d))
        return d.addTimeout(timeout, reactor)
