"""``/healthz``, ``/readyz`` and ``/metrics``: for load balancers, service managers and Prometheus.

Served on every web listener (unless ``[metrics] web = false``) and on the
``[metrics] listen`` endpoints, which serve nothing else. No login: they
show no secret, no user, no line, no number, only counts and one line of
state. The web listener's rules still hold: every response carries its
security headers, and while no ``[users]`` are configured (so every
listener is loopback-only) the ``Host`` must be a loopback name, which
keeps a DNS-rebinding page from reading them. Only GET and HEAD.

* ``/healthz``: ``200 ok`` while the process serves HTTP at all.
* ``/readyz``: ``200 ready`` once logged in to every PBX and resynchronised
  (the first LINEDEVSTATE INSERVICE after login), else ``503`` and one line
  saying why (``AMILink.state_line``, the words systemd's ``STATUS=`` shows:
  ``PBX link DOWN: <the last reason>``); it flips the moment an AMI link does.
  With several PBXs (``[pbx.NAME]``) one line per PBX follows the first,
  ``NAME: up|down: <its state line>``, so a probe that reads the body sees
  which one is down (the metric ``asttapi_pbx_in_service{pbx}`` says it too).
* ``/metrics``: the Prometheus text format (see docs/operations.md).
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger
from twisted.web import resource, server

from asttapi_server.listener import ClientListener
from asttapi_server.web.ws import _origin_key, is_loopback_host

__all__ = ["readiness", "OpsResource", "OpsRoot", "OpsListener", "make_ops_site", "OPS_PATHS"]

log = Logger()

OPS_PATHS = (b"healthz", b"readyz", b"metrics")


def readiness(app: Any) -> str | None:
    """None when ready; otherwise the one line /readyz answers with 503."""
    if not getattr(app, "running", False):
        return "not serving: the server is starting or stopping"
    units = app.units() if hasattr(app, "units") else []
    if not units:
        return "no PBX link configured"
    problems = [(unit.name, why) for unit in units if (why := unit_problem(unit)) is not None]
    if not problems:
        return None
    if len(units) == 1:
        return problems[0][1]
    return f"{len(problems)} of {len(units)} PBXs not in service: " + ", ".join(name for name, _ in problems)


def unit_problem(unit: Any) -> str | None:
    """Why one PBX is not in service (None: it is)."""
    link = unit.link
    if not link.connected:
        return link.state_line  # "PBX link DOWN: <why>", as systemd's STATUS= says it
    if not unit.in_service:
        return f"{link.state_line}, resynchronising calls (CoreShowChannels)"
    return None


def pbx_lines(app: Any) -> str:
    """With several PBXs, one line per PBX for /readyz's body (empty with one)."""
    units = app.units() if hasattr(app, "units") else []
    if len(units) < 2:
        return ""
    out = []
    for unit in units:
        why = unit_problem(unit)
        out.append(f"{unit.name}: up: {unit.state_line}\n" if why is None else f"{unit.name}: down: {why}\n")
    return "".join(out)


class OpsResource(resource.Resource):
    """One of the three endpoints; ``kind`` is its path."""

    isLeaf = True

    def __init__(self, app: Any, kind: bytes, metrics: Any = None) -> None:
        super().__init__()
        self.app = app
        self.kind = kind
        self.metrics = metrics

    def render(self, request: Any) -> bytes:
        if request.method not in (b"GET", b"HEAD"):
            request.setResponseCode(405)
            request.setHeader(b"allow", b"GET, HEAD")
            return _text(request, "method not allowed: use GET\n")
        problem = self._host_problem(request)
        if problem is not None:
            request.setResponseCode(403)
            return _text(request, problem + "\n")
        request.setHeader(b"cache-control", b"no-store")
        if self.kind == b"healthz":
            return _text(request, "ok\n")
        if self.kind == b"readyz":
            why = readiness(self.app)
            if why is not None:
                request.setResponseCode(503)
                return _text(request, why + "\n" + pbx_lines(self.app))
            return _text(request, "ready\n" + pbx_lines(self.app))
        from asttapi_server.metrics import CONTENT_TYPE_LATEST

        if self.metrics is None:
            request.setResponseCode(404)
            return _text(request, "metrics are off ([metrics] enabled = false)\n")
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode("ascii"))
        return self.metrics.exposition()

    def _host_problem(self, request: Any) -> str | None:
        factory = getattr(self.app, "client_factory", None)
        if factory is None or factory.authenticator.login_required:
            return None
        host = (request.getHeader(b"host") or b"").decode("latin-1")
        key = _origin_key("http", host) if host else None
        if key is None or not is_loopback_host(key[1]):
            return (f"host {host[:100]!r} is not a loopback name and no [users] are configured "
                    "(ask http://127.0.0.1:PORT/ or http://localhost:PORT/)")
        return None


def _text(request: Any, text: str) -> bytes:
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    return text.encode("utf-8")


def ops_children(app: Any, metrics: Any) -> dict[bytes, resource.Resource]:
    """``{b"healthz": ..., b"readyz": ..., b"metrics": ...}`` for a web root."""
    return {kind: OpsResource(app, kind, metrics) for kind in OPS_PATHS}


class OpsRoot(resource.Resource):
    """The root of a ``[metrics] listen`` endpoint: the three paths, nothing else."""

    def __init__(self, app: Any, metrics: Any) -> None:
        super().__init__()
        for kind, child in ops_children(app, metrics).items():
            self.putChild(kind, child)

    def getChildWithDefault(self, path: bytes, request: Any) -> Any:
        from asttapi_server.web.resource import security_headers

        for name, value in security_headers(request.getHeader(b"host"), request.isSecure()).items():
            request.setHeader(name, value)
        return super().getChildWithDefault(path, request)


def make_ops_site(app: Any, metrics: Any) -> server.Site:
    """The site of a ``[metrics] listen`` endpoint: its connections count in the server's one budget."""
    from asttapi_server.web.http import WebSite
    from asttapi_server.web.resource import http_options

    config = getattr(app, "config", None)
    return WebSite(OpsRoot(app, metrics), clients=app.client_factory, web=False,
                   **http_options(getattr(config, "web", None)))


class OpsListener(ClientListener):
    """A ``[metrics] listen`` endpoint: no clients connect here, so the log says what it serves."""

    def announce(self, where: str) -> None:
        log.info("Metrics and health checks (/metrics, /healthz, /readyz) on {description} ({where})",
                 description=self.description, where=where)
