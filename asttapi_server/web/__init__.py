"""Browser clients: the screen-pop page and JSON-RPC over WebSocket, on ``[web] listen``.

URL layout of a web listener (one layout, whatever the endpoint):

* ``/`` -> ``static/index.html`` (the page);
* ``/static/<file>`` or ``/<file>`` -> a file under ``asttapi_server/web/static/``
  (subdirectories too; no directory listings, no dotfiles, nothing outside it);
* ``/healthz``, ``/readyz``, ``/metrics`` -> :mod:`asttapi_server.web.ops`
  (unless ``[metrics] web = false``);
* ``/ws`` -> the WebSocket: JSON-RPC 2.0, one message per text frame, the very
  protocol of the TCP lines (docs/protocol.md). A browser's ``Origin`` must be
  the page's own origin or one of ``web.allowed_origins``; login happens over
  the socket with the ``login`` method, never in the URL.

Every response carries a strict Content-Security-Policy: the page may load
scripts, styles and images only from this server (no inline ``<script>`` or
``style=``; ``data:`` images are allowed) and connect only to this server's
WebSocket; it may not be framed unless ``web.frame_ancestors`` names the
origins that may. See :mod:`asttapi_server.web.resource` and
:mod:`asttapi_server.web.ws`.

Config (``[web]``): ``listen`` (Twisted server endpoint strings; ``ssl:``
gives https/wss; in demo mode it defaults to ``tcp:8080:interface=127.0.0.1``,
elsewhere to none), ``allowed_origins``, ``frame_ancestors``. A listener that
is not loopback-only needs ``[users]``, as ``server.listen`` does.
"""

from __future__ import annotations

import socket
from urllib.parse import quote
from typing import Any

from twisted.logger import Logger

from asttapi_server.listener import ClientListener

log = Logger()


def page_url(description: str, port: Any) -> str:
    """The URL to open for a listening web endpoint."""
    host = port.getHost()
    if not hasattr(host, "port"):  # unix:... behind a reverse proxy
        name = getattr(host, "name", b"?")
        return "your reverse proxy's URL for UNIX socket " + (name.decode() if isinstance(name, bytes) else str(name))
    address = getattr(host, "host", "") or ""
    if address in ("0.0.0.0", "::", ""):
        address = socket.gethostname()
    elif ":" in address:
        address = f"[{address}]"
    scheme = "https" if description.split(":", 1)[0].strip().lower() in ("ssl", "tls") else "http"
    return f"{scheme}://{address}:{getattr(host, 'port', '?')}/"


#: Most lines the logged URL pre-selects; with more, the page asks.
MAX_URL_LINES = 20


class WebListener(ClientListener):
    """Serves the page and ``/ws`` on one endpoint; logs the URL to open.

    ``required=False`` (the demo's default listener, not asked for): a port
    that is taken only warns, the rest of the server runs.
    """

    def __init__(self, reactor: Any, description: str, site: Any, *, required: bool = True,
                 lines: tuple[str, ...] = ()) -> None:
        super().__init__(reactor, description, site)
        self.required = required
        # Lines the logged URL pre-selects (#lines=..., read by the page, never
        # sent to the server): the configured [lines] (or the demo's), so the
        # page opened from the log shows calls at once.
        self.lines = lines

    def _listening(self, port: Any) -> None:
        self.port = port
        url = page_url(self.description, port)
        if 0 < len(self.lines) <= MAX_URL_LINES:
            url += "#lines=" + ",".join(quote(line, safe="/@:") for line in self.lines)
        elif self.lines:  # a switchboard's hundred lines make no link to paste
            url += f" ({len(self.lines)} lines configured: pick them on the page)"
        log.info("Web page: open {url} in a browser (WebSocket at /ws; listening on {description})",
                 url=url, description=self.description)
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(port)

    def _failed(self, failure: Any) -> None:
        if self.required:
            log.critical("Cannot listen for the web page on {description} (web.listen): {error}; stopping",
                         description=self.description, error=failure.getErrorMessage())
        else:
            log.warn("No web page: cannot listen on {description} ({error}); set [web] listen to another port",
                     description=self.description, error=failure.getErrorMessage())
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.errback(failure)
        if self.required and getattr(self.reactor, "running", False):
            self.reactor.stop()


def add_web_listeners(app: Any, config: Any, reactor: Any) -> list[WebListener]:
    """One site around ``app.client_factory`` (the TCP clients' own), on every ``web.listen``.

    ``app``: the ``service.AppService`` (its ``client_factory``, ``metrics``, ``web_listeners``;
    the listeners become its children); ``web`` does not import the composition."""
    from .resource import make_site
    from .ws import WebSocketEndpoint, WebSocketFactory

    web = config.web
    factory = WebSocketFactory(app.client_factory, allowed_origins=web.allowed_origins)
    ops = None
    if config.metrics.web:
        from .ops import ops_children

        ops = ops_children(app, app.metrics)
    site = make_site(WebSocketEndpoint(factory), frame_ancestors=web.frame_ancestors, ops=ops,
                     clients=app.client_factory, web=web)
    listeners = []
    for description in web.listen:
        listener = WebListener(reactor, description, site, required=not web.default_listen,
                               lines=tuple(config.lines))
        listener.setServiceParent(app)
        listeners.append(listener)
    app.web_listeners = listeners
    return listeners
