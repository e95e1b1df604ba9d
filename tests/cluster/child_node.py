"""A cluster node in a process of its own, for the kill tests (SIGKILL, SIGSTOP/SIGCONT).

    python -m tests.cluster.child_node REDIS_URL NODE PBX [--publish SECONDS]

Prints one line per fact, flushed: ``NAMED``, ``ACTIVE <token>``, ``INACTIVE <why>``,
``PUBLISHED <seq>``, and after a stop it notices (the monotonic clock jumped): ``WOKE``,
then the answer Redis gives a write with the tenure it held before the stop:
``ROGUE refused`` or ``ROGUE accepted``. While active it publishes one event every
``--publish`` seconds (only while it may act). With ``--act-delay`` it carries out forwarded
requests: ``ACT <op> <args>``, answered ``{"handle": 7}`` that many seconds later.
"""

from __future__ import annotations

import argparse
import sys
import time

from twisted.internet import defer, reactor, task

from asttapi_server.cluster.address import parse_redis_url
from asttapi_server.cluster.client import RedisClient
from asttapi_server.cluster.entries import EVENT
from asttapi_server.cluster.node import ClusterNode
from asttapi_server.core.events import TapiEvent
from asttapi_server.errors import StaleLease


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("redis")
    ap.add_argument("node")
    ap.add_argument("pbx")
    ap.add_argument("--publish", type=float, default=0.0)
    ap.add_argument("--ttl", type=float, default=1.0)
    ap.add_argument("--renew", type=float, default=0.25)
    ap.add_argument("--act-delay", type=float, default=None,
                    help="carry out forwarded requests: print ACT, answer {'handle': 7} after this many seconds")
    args = ap.parse_args()
    address = parse_redis_url(args.redis)
    held = {}

    def active(pbx, tenure):
        held["tenure"] = tenure
        say(f"ACTIVE {tenure.token}")

    def handler(pbx, op, request_args):
        say(f"ACT {op} {sorted(request_args.items())}")
        return task.deferLater(reactor, args.act_delay, lambda: {"handle": 7})

    node = ClusterNode(reactor, lambda name: RedisClient(reactor, address, name=name), node=args.node,
                       handler=handler if args.act_delay is not None else None,
                       pbxs=[args.pbx], lease_ttl=args.ttl, lease_renew=args.renew, on_active=active,
                       on_inactive=lambda pbx, why: say(f"INACTIVE {why}"))
    node.startService()
    defer.ensureDeferred(node.started()).addCallback(lambda _: say("NAMED"))
    n = [0]
    last = [time.monotonic()]

    def beat():
        now = time.monotonic()
        woke = now - last[0] > 0.3  # ten beats and more: the process was stopped
        last[0] = now
        if woke and "tenure" in held:
            say("WOKE")
            # The rogue write: the tenure held before the stop, straight to the append script.
            d = node.appender.append(args.pbx, held["tenure"], EVENT, b'{"m":"ROGUE","l":null}')
            d.addCallbacks(lambda seq: say("ROGUE accepted"),
                           lambda f: say("ROGUE refused" if f.check(StaleLease) else f"ROGUE error {f.value}"))
            return
        if args.publish and node.holds(args.pbx):
            n[0] += 1
            event = TapiEvent(msg="LINE_CALLSTATE", line="line_1", call=n[0], param="LINECALLSTATE_OFFERING",
                              callinfo={"n": n[0]})
            node.publish(args.pbx, event).addCallbacks(lambda seq: say(f"PUBLISHED {seq}"), lambda f: None)

    task.LoopingCall(beat).start(args.publish or 0.05)
    reactor.run()


if __name__ == "__main__":
    main()
