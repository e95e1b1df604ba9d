"""The web listener's HTTP side: the page, its static files, ``/ws``, security headers.

Every response carries the same headers (:func:`security_headers`): a strict
Content-Security-Policy (only this server's own scripts, styles, images and
WebSocket; no inline script; no ``eval``), ``nosniff``, no referrer, and no
framing unless ``web.frame_ancestors`` names the CRM origins that may show
the page in a frame. Static files come from one package directory, with no
directory listing; a path with any segment that is not a plain file name
(``..``, a dotfile, an encoded ``/`` or ``\\``, a NUL or any control byte)
is a 404 before it reaches ``static.File`` (a NUL once made it raise, a
traceback per request). The connections, their deadlines and the access log
are :mod:`asttapi_server.web.http`'s.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from twisted.web import resource, static

from asttapi_server.web.http import WebSite

#: Where the page lives (written as plain files: no build step, nothing fetched at run time).
STATIC_DIR = Path(__file__).resolve().parent / "static"

_SANE_HOST = re.compile(rb"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?$")

#: A path segment the site serves: a plain file name (the page's files, ws, the probes).
_PLAIN_SEGMENT = re.compile(rb"[A-Za-z0-9_][A-Za-z0-9._~-]{0,254}")


def plain_path(segments: list[bytes]) -> bool:
    """True if every (decoded) segment is a plain file name; an empty last one (``/``) is fine."""
    if segments and segments[-1] == b"":
        segments = segments[:-1]
    return all(_PLAIN_SEGMENT.fullmatch(segment) for segment in segments)


def security_headers(host: bytes | None, secure: bool, frame_ancestors: Iterable[str] = ()) -> dict[bytes, bytes]:
    """The headers every response of the web listener carries.

    ``host`` is the request's ``Host`` header; when it is a plain host[:port]
    the WebSocket URL of that host is named in ``connect-src`` (older
    browsers do not count ``ws:`` as ``'self'``).
    """
    connect = ["'self'"]
    if host and _SANE_HOST.match(host):
        connect.append(("wss://" if secure else "ws://") + host.decode("ascii"))
    ancestors = " ".join(frame_ancestors) or "'none'"
    csp = "; ".join(
        (
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "connect-src " + " ".join(connect),
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors " + ancestors,
        )
    )
    headers = {
        b"content-security-policy": csp.encode("ascii"),
        b"x-content-type-options": b"nosniff",
        b"referrer-policy": b"no-referrer",
        b"cross-origin-opener-policy": b"same-origin",
        b"cross-origin-resource-policy": b"same-origin",
        b"permissions-policy": b"camera=(), microphone=(), geolocation=()",
        b"cache-control": b"no-cache",
        b"server": b"asttapi-server",
    }
    if not frame_ancestors:
        headers[b"x-frame-options"] = b"DENY"  # for browsers without CSP frame-ancestors
    return headers


class NotFound(resource.Resource):
    """A 404 with one line of text: what every missing or refused path gets.

    Twisted's own error pages render through its template machinery, about
    ten times the cost of this; a flood of 404s is a stranger's cheapest way
    to spend our time.
    """

    isLeaf = True

    def __init__(self, text: str = "No such file.") -> None:
        super().__init__()
        self.body = text.encode("utf-8") + b"\n"

    def render(self, request: Any) -> bytes:
        request.setResponseCode(404)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return self.body


NOT_FOUND = NotFound()


class StaticFiles(static.File):
    """Files of one directory tree; a directory is a 404, never a listing."""

    indexNames: list[str] = []

    childNotFound = NOT_FOUND

    def directoryListing(self) -> Any:
        return NOT_FOUND

    def render(self, request: Any) -> bytes:
        if self.isdir():  # not even the redirect to a trailing slash: a directory is not a page
            return self.directoryListing().render(request)
        return super().render(request)

    def getChild(self, path: bytes, request: Any) -> Any:
        if not _PLAIN_SEGMENT.fullmatch(path):  # no dotfiles (.git), no NUL, no encoded slash
            return self.directoryListing()
        return super().getChild(path, request)


class WebRoot(resource.Resource):
    """``/`` the page, ``/ws`` the WebSocket, ``/static/<file>`` or ``/<file>`` a static file."""

    def __init__(self, websocket: resource.Resource, *, static_dir: Path = STATIC_DIR,
                 frame_ancestors: Iterable[str] = (), ops: Mapping[bytes, resource.Resource] | None = None) -> None:
        super().__init__()
        self.websocket = websocket
        #: /healthz, /readyz, /metrics (asttapi_server.web.ops), when served here.
        self.ops = dict(ops or {})
        self.files = StaticFiles(str(static_dir))
        self.frame_ancestors = tuple(frame_ancestors)

    def getChildWithDefault(self, path: bytes, request: Any) -> Any:
        for name, value in security_headers(
            request.getHeader(b"host"), request.isSecure(), self.frame_ancestors
        ).items():
            request.setHeader(name, value)
        if not plain_path([path, *request.postpath]):
            return NOT_FOUND
        if path == b"ws" and not request.postpath:
            return self.websocket
        if path in self.ops and not request.postpath:
            return self.ops[path]
        if path == b"" and not request.postpath:
            index = self.files.getChild(b"index.html", request)
            if isinstance(index, static.File) and index.isfile():
                return index
            return NotFound("The page is not installed (asttapi_server/web/static/index.html is missing).")
        if path == b"static":
            return self.files
        return self.files.getChild(path, request)


def make_site(websocket: resource.Resource, *, static_dir: Path = STATIC_DIR,
              frame_ancestors: Iterable[str] = (), ops: Mapping[bytes, resource.Resource] | None = None,
              clients: Any = None, web: Any = None) -> WebSite:
    """The site a web listener serves; ``clients`` (the ClientFactory) counts its connections, ``web`` is ``[web]``."""
    root = WebRoot(websocket, static_dir=static_dir, frame_ancestors=frame_ancestors, ops=ops)
    return WebSite(root, clients=clients, **http_options(web))


def http_options(web: Any) -> dict[str, Any]:
    """WebSite's keyword arguments from a ``config.WebConfig`` (None: the defaults)."""
    if web is None:
        return {}
    return {"request_timeout": web.request_timeout, "idle_timeout": web.idle_timeout, "access_log": web.access_log}
