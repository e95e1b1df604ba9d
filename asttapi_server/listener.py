"""A service listening on one Twisted endpoint string, and the one way start-up gives up.

Used by every listener of the server: the TCP clients' (``server.listen``),
the web page's (:mod:`asttapi_server.web`) and the metrics port's
(:mod:`asttapi_server.web.ops`). Its own module, so ``web`` needs nothing
of the composition (:mod:`asttapi_server.service` imports ``web``, never the
other way round).
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
from twisted.logger import Logger

from .clients.listen import server_endpoint

__all__ = ["ClientListener", "StartupError"]

# The namespace these lines always had (log filters and JSON logs name it).
log = Logger(namespace="asttapi_server.service")


class StartupError(SystemExit, Exception):
    """Start-up cannot go on (a client port cannot be bound, a plugin failed to
    start); ``str()`` is the one line to show.

    Both bases on purpose. twistd's daemon runner catches ``Exception`` from
    ``startService``, sends its text to the waiting parent (which exits 1)
    and removes the pidfile; in the foreground (``twistd -n``) it reaches the
    top level, where Python prints a ``SystemExit``'s message as one line,
    no traceback, and exits 1. (twistd has redirected stderr to its log by
    then, so in both cases the line is in the log too.)
    """

    # twistd's daemon parent shows the first 100 bytes of
    # "module.Class: message"; the short form leaves them to the message.
    __module__ = "builtins"


def _failed_now(d: Deferred, later: Any) -> Any:
    """The Failure ``d`` holds already (then consumed), or None; a later failure goes to ``later``."""
    sync = True
    now: list[Any] = []

    def errback(failure: Any) -> None:
        if sync:
            now.append(failure)
        else:
            later(failure)

    d.addErrback(errback)
    sync = False
    return now[0] if now else None


class ClientListener(Service):
    """Listens for CRM/desktop clients on one endpoint string.

    Unlike ``StreamServerEndpointService`` it keeps the listening port public
    (``whenListening``), so tests and embedding code can use ``tcp:0``, and a
    port that cannot be bound stops start-up with one clear line
    (:class:`StartupError`): a server that cannot serve must not run.
    """

    #: False for a listener nobody asked for (the demo's web page): a port
    #: that is taken is then a warning, and the server runs on without it.
    required = True

    def __init__(self, reactor: Any, description: str, factory: Any) -> None:
        self.reactor = reactor
        self.description = description
        self.factory = factory
        self.port: Any = None
        self._waiting: list[Deferred] = []

    def whenListening(self) -> Deferred:
        """Fires with the ``IListeningPort`` once listening."""
        if self.port is not None:
            d: Deferred = Deferred()
            d.callback(self.port)
            return d
        d = Deferred()
        self._waiting.append(d)
        return d

    def startService(self) -> None:
        super().startService()
        try:
            endpoint = server_endpoint(self.reactor, self.description)
        except Exception as exc:  # a certificate that went away since the config check, ...
            raise StartupError(f"asttapi: cannot listen on {self.description}: {exc}") from None
        d = endpoint.listen(self.factory)
        d.addCallback(self._listening)
        failure = _failed_now(d, later=self._failed)
        if failure is not None:
            if not self.required:
                self._failed(failure)  # says so; the server runs on without this listener
                return
            # tcp:, ssl: and unix: endpoints fail here, synchronously: stop
            # start-up itself, so twistd exits non-zero (daemon or not).
            raise StartupError(self._cannot_listen(failure))

    def _listening(self, port: Any) -> None:
        self.port = port
        host = port.getHost()
        # A TCP/SSL port has host and port; a unix socket only its path.
        where = f"{host.host}:{host.port}" if hasattr(host, "port") else getattr(host, "name", host)
        if isinstance(where, bytes):
            where = where.decode("utf-8", "replace")
        self.announce(where)
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(port)

    def announce(self, where: str) -> None:
        """The log line saying what listens where (the admin's proof that it is up)."""
        log.info("Clients may connect on {description} ({where})", description=self.description, where=where)

    def _cannot_listen(self, failure: Any) -> str:
        """The one line saying why; fails whoever waits in ``whenListening``."""
        error = failure.value
        why = failure.getErrorMessage()
        if isinstance(error, CannotListenError) and isinstance(error.socketError, OSError):
            why = error.socketError.strerror or str(error.socketError)  # "Address already in use"
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.errback(failure)
        return f"asttapi: cannot listen on {self.description}: {why}"

    def _failed(self, failure: Any) -> None:
        # Endpoints that bind later (none of Twisted's own): the reactor runs
        # already, so all we can do is say so and stop it.
        log.critical("{text}; stopping", text=self._cannot_listen(failure))
        if getattr(self.reactor, "running", False):
            self.reactor.stop()

    def stopService(self) -> Any:
        super().stopService()
        port, self.port = self.port, None
        if port is not None:
            return port.stopListening()
        return None
