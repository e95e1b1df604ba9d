"""What a hostile or broken PBX costs the server (issue 11, items 6 and 8).

    .venv/bin/python bench/pbx_limits.py            # both figures
    .venv/bin/python bench/pbx_limits.py --quick    # fewer repetitions

Runs the production path in one process (AMIParser -> TAPI UserEvent plugin
-> Bridge -> CallModel -> Hub with its replay ring and one subscribed
client), without sockets, and prints:

* **big caller name**: a live call gets ``SET CALLERIDNAME`` with a
  1,000,000-character value followed by ``LINE_CALLINFO`` again and again
  (the issue's reproduction); RSS before and after, and the bytes of the
  largest event a client received.
* **20,000-line TAPIEVENT**: milliseconds the reactor would be held by one
  ``LINE_NEWCALL`` naming 20,000 lines (median of several, each on a fresh
  call).
* **calls that never end**: 300,000 ``LINE_NEWCALL``s whose IDLE never comes:
  RSS, calls still tracked, log lines written.

Figures depend on the machine; the script says what was run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    import os

    return pages * os.sysconf("SC_PAGE_SIZE") / (1 << 20)


class _AMI:
    """The AMI client's surface the bridge uses; actions are recorded, never answered."""

    def __init__(self) -> None:
        self.observers: list = []
        self.actions: list = []

    def set_event_filter(self, names) -> None:
        pass

    def add_event_observer(self, fn) -> None:
        self.observers.append(fn)

    def add_link_observer(self, fn) -> None:
        pass

    def send_action(self, action, **_kw):
        from twisted.internet.defer import Deferred, succeed

        action, headers = action  # an ami.actions.Action

        self.actions.append((action, list(headers)))
        if action == "CoreShowChannels":
            return succeed([])  # the resync after login: no channel is up
        if action == "Getvar":  # a caller's presentation, read before the pop: presented
            from asttapi_server.ami.message import Message

            return succeed(Message.from_items([("Response", "Success"), ("Value", "allowed_not_screened")]))
        return Deferred()


class _Client:
    sid = "bench"

    def __init__(self) -> None:
        self.received = 0
        self.largest = 0

    def send(self, data: bytes) -> None:
        self.received += 1
        self.largest = max(self.largest, len(data))


def _server():
    from twisted.internet.task import Clock

    from asttapi_server.ami.parser import AMIParser
    from asttapi_server.service import build_bridge
    from asttapi_server.clients.hub import Hub
    from asttapi_server.config import load_config
    from asttapi_server.core.model import CallModel
    from asttapi_server.plugin_host import build_plugin_manager

    config = load_config(None, {})
    clock = Clock()
    clock.advance(1_795_674_000)
    model = CallModel(**config.calls.model_args())
    plugins = build_plugin_manager(config.plugins, config=config, clock=clock)
    hub = Hub(ring_size=config.server.replay_ring)
    ami = _AMI()
    bridge = build_bridge(config, ami, model, plugins, hub, clock)
    plugins.app = bridge.plugin_context
    bridge.on_link_state(True)
    client = _Client()
    hub.subscribe(client, "line_1")
    parser = AMIParser()

    def feed(data: bytes) -> None:
        for msg in parser.feed(data):
            if msg.kind == "event":
                bridge.on_ami_event(msg)

    return feed, client, bridge


def user_event(uid: str, text: str) -> bytes:
    return (
        b"Event: UserEvent\r\nPrivilege: user,all\r\nChannel: PJSIP/trunk-00000001\r\n"
        b"Uniqueid: " + uid.encode() + b"\r\nUserEvent: TAPI\r\nTAPIEVENT: " + text.encode() + b"\r\n\r\n"
    )


def big_caller_name(repeats: int) -> dict:
    feed, client, _bridge = _server()
    uid = "1795674354.1"
    feed(user_event(uid, "LINE_NEWCALL line_1"))
    feed(user_event(uid, "LINE_CALLSTATE LINECALLSTATE_OFFERING"))
    # Ten different names (so no step is a no-op), built before the first RSS figure.
    blobs = [user_event(uid, "SET CALLERIDNAME " + str(i) + "x" * 999_999)
             + user_event(uid, "LINE_CALLINFO LINECALLINFOSTATE_CALLERID") for i in range(10)]
    before = rss_mib()
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        feed(blobs[i % 10])
        times.append((time.perf_counter() - t0) * 1000)
    return {"repeats": repeats, "rss_before_mib": round(before, 1), "rss_after_mib": round(rss_mib(), 1),
            "largest_event_bytes": client.largest, "ms_median": round(statistics.median(times), 2)}


def many_lines(lines: int, repeats: int) -> dict:
    feed, client, _bridge = _server()
    names = " ".join(f"l{i}" for i in range(lines))
    times = []
    for i in range(repeats):
        data = user_event(f"1795674355.{i}", "LINE_NEWCALL " + names)
        t0 = time.perf_counter()
        feed(data)
        times.append((time.perf_counter() - t0) * 1000)
    return {"lines": lines, "repeats": repeats, "ms_median": round(statistics.median(times), 2),
            "ms_max": round(max(times), 2)}


def endless_calls(calls: int) -> dict:
    """``calls`` LINE_NEWCALLs that never see IDLE or Hangup: RSS, calls tracked, log lines."""
    from twisted.logger import globalLogPublisher

    feed, _client, bridge = _server()
    lines = []
    globalLogPublisher.addObserver(lines.append)
    try:
        before = rss_mib()
        batch = []
        for i in range(calls):
            batch.append(user_event(f"1795674356.{i}", "LINE_NEWCALL line_1"))
            if len(batch) == 1000:
                feed(b"".join(batch))
                batch.clear()
        feed(b"".join(batch))
        after = rss_mib()
    finally:
        globalLogPublisher.removeObserver(lines.append)
    return {"calls": calls, "rss_before_mib": round(before, 1), "rss_after_mib": round(after, 1),
            "tracked": bridge.model.tracked, "log_lines": len(lines)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    big = big_caller_name(50 if args.quick else 200)
    print(f"big caller name: {big['repeats']} x (1,000,000-char SET CALLERIDNAME + LINE_CALLINFO) on a live call:"
          f" RSS {big['rss_before_mib']} -> {big['rss_after_mib']} MiB;"
          f" largest event sent {big['largest_event_bytes']} bytes; {big['ms_median']} ms median per pair")
    wide = many_lines(20_000, 3 if args.quick else 10)
    print(f"20,000-line TAPIEVENT: {wide['ms_median']} ms median, {wide['ms_max']} ms max"
          f" per event (parser -> plugin -> bridge -> model -> hub), {wide['repeats']} events")
    endless = endless_calls(30_000 if args.quick else 300_000)
    print(f"calls that never end: {endless['calls']} LINE_NEWCALLs without IDLE: RSS {endless['rss_before_mib']}"
          f" -> {endless['rss_after_mib']} MiB; {endless['tracked']} calls tracked; {endless['log_lines']} log lines")


if __name__ == "__main__":
    main()
