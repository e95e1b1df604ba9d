"""ClientListener: a port that cannot be bound stops start-up (unit level, no real sockets)."""

from __future__ import annotations

import errno
import socket

import pytest
from twisted.internet.defer import Deferred, fail
from twisted.internet.error import CannotListenError
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs, formatEvent

from asttapi_server import listener as service  # where ClientListener lives (and finds server_endpoint)
from asttapi_server.listener import ClientListener, StartupError


class Endpoint:
    def __init__(self, result: Deferred) -> None:
        self.result = result

    def listen(self, factory):
        return self.result


def in_use() -> CannotListenError:
    return CannotListenError("127.0.0.1", 5039, socket.error(errno.EADDRINUSE, "Address already in use"))


def test_a_port_in_use_raises_startup_error_with_one_line(monkeypatch):
    monkeypatch.setattr(service, "server_endpoint", lambda reactor, d: Endpoint(fail(in_use())))
    listener = ClientListener(MemoryReactorClock(), "tcp:5039:interface=127.0.0.1", factory=None)
    waiting = listener.whenListening()
    with pytest.raises(StartupError) as info:
        listener.startService()
    assert str(info.value) == "asttapi: cannot listen on tcp:5039:interface=127.0.0.1: Address already in use"
    assert isinstance(info.value, SystemExit) and isinstance(info.value, Exception)  # see its docstring
    failures = []
    waiting.addErrback(failures.append)
    assert failures and failures[0].check(CannotListenError)


def test_a_late_failure_stops_the_running_reactor(monkeypatch):
    later: Deferred = Deferred()
    monkeypatch.setattr(service, "server_endpoint", lambda reactor, d: Endpoint(later))
    reactor = MemoryReactorClock()
    reactor.running = True
    stopped = []
    reactor.stop = lambda: stopped.append(True)
    listener = ClientListener(reactor, "systemd:domain=INET:index=0", factory=None)
    listener.startService()  # nothing known yet
    with capturedLogs() as logs:
        later.errback(in_use())
    assert stopped == [True]
    assert [formatEvent(e) for e in logs] == [
        "asttapi: cannot listen on systemd:domain=INET:index=0: Address already in use; stopping"
    ]


class _Port:
    def __init__(self, address) -> None:
        self.address = address

    def getHost(self):
        return self.address


@pytest.mark.parametrize(
    "description, address, shown",
    [
        ("tcp:5039:interface=127.0.0.1", "tcp", "127.0.0.1:5039"),
        ("unix:/run/asttapi/clients.sock", "unix", "/run/asttapi/clients.sock"),
    ],
)
def test_the_listening_line_names_the_address_of_any_kind_of_port(monkeypatch, description, address, shown):
    # A unix socket has no host or port: the line showed "(?:?)" (QA of issue 11).
    from twisted.internet.address import IPv4Address, UNIXAddress
    from twisted.internet.defer import succeed

    addr = IPv4Address("TCP", "127.0.0.1", 5039) if address == "tcp" else UNIXAddress(b"/run/asttapi/clients.sock")
    monkeypatch.setattr(service, "server_endpoint", lambda reactor, d: Endpoint(succeed(_Port(addr))))
    listener = ClientListener(MemoryReactorClock(), description, factory=None)
    with capturedLogs() as logs:
        listener.startService()
    assert [formatEvent(e) for e in logs] == [f"Clients may connect on {description} ({shown})"]
