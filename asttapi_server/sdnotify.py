"""The sd_notify protocol: tell systemd (``Type=notify``) that we are ready, reloading, stopping.

systemd passes ``$NOTIFY_SOCKET``, a unix datagram socket (a path, or an
abstract name written with a leading ``@``); each notification is one
datagram of ``KEY=VALUE`` lines (``READY=1``, ``STATUS=...``,
``RELOADING=1``, ``STOPPING=1``). Without the variable (not under systemd)
every call does nothing, so the server never needs to know how it runs.
A send that fails is logged once and never stops the server. Nothing is
sent after ``STOPPING=1``: what the stop itself does (the PBX link closing)
is not news for ``systemctl status``.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

from twisted.logger import Logger

log = Logger()

__all__ = ["Notifier"]


class Notifier:
    """Sends notifications to ``$NOTIFY_SOCKET`` (read once, when built)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            address = "\0" + address[1:]  # the abstract namespace
        self.address = address
        self._warned = False
        self.stopped = False

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, *fields: str) -> bool:
        """Send ``KEY=VALUE`` lines as one datagram; False if not under systemd or it failed."""
        if not self.address or self.stopped:
            return False
        data = "\n".join(f.replace("\n", " ") for f in fields).encode("utf-8", "replace")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self.address)
                sock.sendall(data)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warn("sd_notify to $NOTIFY_SOCKET failed: {error}", error=exc.strerror or str(exc))
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1", *((f"STATUS={status}",) if status else ()))

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def reloading(self) -> bool:
        # MONOTONIC_USEC: systemd 253+ (Type=notify-reload) wants it with RELOADING=1.
        return self.send("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}",
                         "STATUS=reloading the configuration")

    def stopping(self) -> bool:
        sent = self.send("STOPPING=1", "STATUS=stopping")
        self.stopped = True
        return sent
