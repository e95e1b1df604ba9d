"""Processes for the kill -9 restart test (tests/faults/test_restart_processes.py).

``python -m tests.faults.serve_restart pbx`` runs the demo PBX alone (it must
outlive the server) and prints ``AMI <port>``; stdin lines ``inbound TALK``
play one inbound call that talks TALK seconds (ring 0.1 s), ``channels``
answers ``CHANNELS <n>`` (the PBX's live channels), ``quit`` stops.

``python -m tests.faults.serve_restart server CONFIG`` runs the full server
(``make_service``, as twistd does) and prints ``PORT <n>`` once the AMI link is
in service; SIGKILL is a crash, SIGTERM a clean stop (as under twistd).
"""

from __future__ import annotations

import sys

from twisted.internet import reactor, stdio
from twisted.logger import globalLogBeginner, textFileLogObserver
from twisted.protocols.basic import LineReceiver

from asttapi_server.config import load_config
from asttapi_server.demo.scenarios import Timing
from asttapi_server.demo.server import DemoPBX
from asttapi_server.service import make_service
from tests.faults.serve_full import when_in_service


def pbx() -> None:
    demo = DemoPBX(reactor, port=0, username="asttapi", secret="restart-test", autoplay=False,
                   timing=Timing(first_call=0.05, gap=0.2, scale=1.0, auth_fail_delay=0.0))
    demo.startService()

    class Control(LineReceiver):
        delimiter = b"\n"

        def lineReceived(self, line: bytes) -> None:
            cmd, *args = line.decode().split()
            if cmd == "inbound":
                demo.play("inbound", ring=0.1, talk=float(args[0]))
            elif cmd == "channels":
                sys.stdout.write(f"CHANNELS {len(demo.engine.channels)}\n")
                sys.stdout.flush()
            elif cmd == "quit":
                reactor.stop()

        def connectionLost(self, reason=None) -> None:
            if reactor.running:
                reactor.stop()

    stdio.StandardIO(Control())
    sys.stdout.write(f"AMI {demo.listening_port()}\n")
    sys.stdout.flush()
    reactor.run()


def server(path: str) -> None:
    app = make_service(load_config(path), reactor)
    app.startService()
    # What twistd does on SIGTERM: stop the services (the store writes once more).
    reactor.addSystemEventTrigger("before", "shutdown", app.stopService)

    def ready(port: int) -> None:
        sys.stdout.write(f"PORT {port}\n")
        sys.stdout.flush()

    when_in_service(app, ready)
    reactor.run()


if __name__ == "__main__":
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=False)
    if sys.argv[1] == "pbx":
        pbx()
    else:
        server(sys.argv[2])
