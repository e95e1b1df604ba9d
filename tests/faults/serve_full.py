"""The full server on the demo PBX in its own process, for the mass-connect test.

``python -m tests.faults.serve_full`` prints ``PORT <n>`` once the AMI link is
in service, then answers lines on stdin: ``stat`` -> ``STAT {json}`` (client
connections, open lines, tracked calls, RSS in KiB; ``stat gc`` collects
garbage first), ``play`` -> plays one
demo inbound call, ``quit``.
"""

from __future__ import annotations

import gc
import json
import sys

from twisted.internet import reactor, stdio, task
from twisted.logger import globalLogBeginner
from twisted.protocols.basic import LineReceiver

from asttapi_server.config import load_config
from asttapi_server.demo.scenarios import Timing
from asttapi_server.service import make_service


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def when_in_service(app, then) -> None:
    """Call ``then(client port)`` once the AMI link is in service and the first listener is bound."""
    def ready() -> None:
        if app.bridge.link_up and app.listeners[0].port is not None:
            loop.stop()
            then(app.listeners[0].port.getHost().port)

    loop = task.LoopingCall(ready)
    loop.start(0.01)


def main() -> None:
    globalLogBeginner.beginLoggingTo([lambda event: None], redirectStandardIO=False)
    # A thousand clients, all from 127.0.0.1: lift the per-address limit (docs/security.md).
    config = load_config(None, {"server.listen": ["tcp:0:interface=127.0.0.1:backlog=2048"], "web.listen": [],
                                "server.max_clients_per_address": 2000, "server.max_clients": 2000})
    app = make_service(config, reactor, demo_options={"timing": Timing.fast(), "autoplay": False})
    app.startService()

    class Control(LineReceiver):
        delimiter = b"\n"

        def lineReceived(self, line: bytes) -> None:
            cmd = line.decode().strip()
            if cmd in ("stat", "stat gc"):
                if cmd == "stat gc":  # count only what is still referenced, not garbage awaiting the GC
                    gc.collect()
                self.sendLine(b"STAT " + json.dumps({
                    "connections": len(app.client_factory.connections), "open_lines": app.hub.open_lines,
                    "tracked": app.model.tracked, "rss_kib": rss_kib(),
                }).encode())
            elif cmd == "play":
                app.demo.play("inbound", ring=0.05)
            elif cmd == "quit":
                reactor.stop()

        def connectionLost(self, reason=None) -> None:
            if reactor.running:
                reactor.stop()

    def ready(port: int) -> None:
        stdio.StandardIO(Control())
        sys.stdout.write(f"PORT {port}\n")
        sys.stdout.flush()

    when_in_service(app, ready)
    reactor.run()


if __name__ == "__main__":
    main()
