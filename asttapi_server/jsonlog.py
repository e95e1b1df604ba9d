"""JSON-lines logs for a log shipper: one object per line on stdout.

Switch it on with twistd's own option, before the plugin name::

    twistd -n --logger=asttapi_server.jsonlog.logger asttapi --config asttapi.toml

Each line is one JSON object: ``time`` (ISO 8601, UTC, milliseconds),
``level`` (debug, info, warn, error, critical), ``namespace`` (the logging
module), ``message`` (the text the plain log would show) and, for a logged
failure, ``error`` (its traceback as one string). Nothing else of the event
is written, so no field a caller passed for the text alone (and never a
secret: the server logs none) ends up in the shipper's index.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from typing import IO, Any

from twisted.logger import ILogObserver, formatEvent
from zope.interface import implementer

__all__ = ["logger", "format_event", "JSONLinesObserver"]


def format_event(event: dict[str, Any]) -> str:
    """One log event as one JSON line (with its newline)."""
    when = event.get("log_time")
    stamp = (
        datetime.fromtimestamp(when, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        if isinstance(when, (int, float)) else None
    )
    level = event.get("log_level")
    record: dict[str, Any] = {
        "time": stamp,
        "level": getattr(level, "name", "info"),
        "namespace": event.get("log_namespace", "?"),
        "message": formatEvent(event),
    }
    failure = event.get("log_failure")
    if failure is not None:
        try:
            record["error"] = failure.getTraceback()
        except Exception:  # a broken failure must not lose the line
            record["error"] = repr(failure)
    return json.dumps(record, ensure_ascii=False, default=str) + "\n"


@implementer(ILogObserver)
class JSONLinesObserver:
    """Writes :func:`format_event` lines to a text stream and flushes each."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def __call__(self, event: dict[str, Any]) -> None:
        self.out.write(format_event(event))
        self.out.flush()


def logger() -> JSONLinesObserver:
    """twistd's ``--logger`` factory: JSON lines on stdout (the journal under systemd)."""
    return JSONLinesObserver(sys.stdout)
