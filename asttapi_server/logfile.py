"""A log file that stays bounded: ``twistd --logger asttapi_server.logfile.observer``.

twistd's own ``--logfile`` rotates at 1 MB but keeps every rotated file, so
a flood of log lines (or just years of uptime) fills the disk. This observer
writes the same text format to ``$ASTTAPI_LOGFILE`` (default
``asttapi.log``), rotates it at ``$ASTTAPI_LOG_ROTATE_BYTES`` (default 10 MB)
and keeps ``$ASTTAPI_LOG_KEEP`` rotated files (default 5): at most
(KEEP + 1) x ROTATE bytes on disk. twistd's ``--logger`` takes a name, no
arguments, hence the environment. Under systemd, ``--logfile=-`` to the
journal (bounded by journald's ``SystemMaxUse=``) is the other way.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from twisted.logger import ILogObserver, textFileLogObserver
from twisted.python.logfile import LogFile

from asttapi_server import settings as setting

DEFAULT_PATH = "asttapi.log"
DEFAULT_ROTATE_BYTES = 10 * 1024 * 1024
DEFAULT_KEEP = 5


def _positive(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return setting.integer(raw, 1, text_ok=True)
    except setting.Expected as exc:
        raise SystemExit(f"asttapi: ${name}: {exc}") from None


def observer(environ: Mapping[str, str] | None = None) -> ILogObserver:
    """The twistd ``--logger`` factory: a text log that rotates and keeps a bounded number of files."""
    env = os.environ if environ is None else environ
    path = os.path.abspath(env.get("ASTTAPI_LOGFILE") or DEFAULT_PATH)
    log_file = LogFile(
        os.path.basename(path),
        os.path.dirname(path),
        rotateLength=_positive(env, "ASTTAPI_LOG_ROTATE_BYTES", DEFAULT_ROTATE_BYTES),
        maxRotatedFiles=_positive(env, "ASTTAPI_LOG_KEEP", DEFAULT_KEEP),
    )
    return textFileLogObserver(log_file)
