"""The cost of an event: Python calls per AMI event, and where the server's CPU goes.

Two measurements of the real server child (``bench/e2e_throughput.py``'s
``Server``: ``service.make_service``, a real AMI login and one client with
every line of the mix open), on one of its mixes (``--mix``, default
``tapi-dense``):

* **Calls per event** (deterministic): a ``sys.setprofile`` tracer in the
  child records every function call made while ``Bridge.on_ami_event``
  handles an event, from the observer call to the JSON line written to the
  client's transport, for every event of one call of the mix, and while
  ``AMIProtocol._response`` handles the answer to one of the server's
  actions (the Getvar of a caller's presentation: the call's events wait
  for it). The call store is off in this child (its batch writes follow the
  clock, which would make the count vary); it costs one or two calls per
  event where it is on.  Per event
  name (per TAPI verb for UserEvents): Python calls, C calls, the distinct
  Python functions passed through ("stops") and their modules.  Framing
  costs outside ``on_ami_event`` are listed apart: per kept block one
  ``Message.__init__`` (Python) in ``AMIParser._frame``; the read loop
  (``dataReceived``, ``feed``, ``_frame``) is paid once per socket read,
  shared by the events of that read.  ``--show`` prints the ordered call
  list of each traced event.
* **Profile**: cProfile in the child over one whole pass of the mix's
  stream (``--events``), after one unprofiled warm-up pass; the top
  functions by own time and the call counts per TAPI UserEvent
  (ncalls / UserEvents of the pass).  cProfile's own overhead inflates the
  share of small functions: read its times as a ranking, its call counts as
  exact.  ``--pstats FILE`` keeps the raw profile for ``python -m pstats``.
* **Instructions** (``--instructions``; deterministic to about 0.5%, so a
  before/after on a shared, loaded machine still means something): the same
  wiring in one process on the tests' fakes (``tests.ami.fakes``: the real
  ``AMILink`` and protocol on a memory reactor, the real bridge, plugin host,
  model, metrics, hub and a client session on a ``StringTransport``; the
  server's Getvars answered one 64 KiB read late, as a socket's round trip
  does), one warm-up pass, then one counted pass of the mix under callgrind
  (Debian package ``valgrind``): CPU instructions per AMI event and per call,
  the socket I/O of the real server left out. For before/after of the
  server's own code; not a stand-in for the ratio (the naive consumer's C
  string scans retire several instructions per cycle, the interpreter about
  one).

    .venv/bin/python bench/event_cost.py
    .venv/bin/python bench/event_cost.py --mix real --show --json
    .venv/bin/python bench/event_cost.py --instructions --mix tapi-dense --events 5000
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# -- in the server child --------------------------------------------------------------


class Tracer:
    """``sys.setprofile`` hook: every call made inside ``Bridge.on_ami_event`` (an AMI
    event) or ``AMIProtocol._response`` (the answer to one of our actions: a Getvar's
    releases the call events held for it), one list per event or answer."""

    def __init__(self, on_event: Any, on_response: Any) -> None:
        self.on_event = on_event  # the code objects of Bridge.on_ami_event, AMIProtocol._response
        self.on_response = on_response
        self.events: list[dict[str, Any]] = []
        self.calls: list[tuple[int, str, str, str]] | None = None
        self.depth = 0

    def __call__(self, frame: Any, event: str, arg: Any) -> None:
        if self.calls is None:
            if event != "call":
                return
            code = frame.f_code
            if code is self.on_event:
                message = frame.f_locals.get("message")
                name = str(getattr(message, "name", "?"))
                if name == "UserEvent":
                    name = f"UserEvent {(message.get('TAPIEVENT') or '').split(']')[-1].strip()}"
            elif code is self.on_response:
                msg = frame.f_locals.get("msg")
                pending = frame.f_locals["self"]._pending.get(getattr(msg, "action_id", None))
                name = f"Response to {getattr(pending, 'action', '?')}"
            else:
                return
            self.calls = []
            self.depth = 0
            self.events.append({"event": name, "calls": self.calls})
            return
        if event == "call":
            self.depth += 1
            self.calls.append((self.depth, "py", frame.f_globals.get("__name__", "?"), frame.f_code.co_qualname))
        elif event == "c_call":
            self.depth += 1
            owner = getattr(arg, "__self__", None)
            module = getattr(arg, "__module__", None) or type(owner).__module__
            qual = getattr(arg, "__qualname__", getattr(arg, "__name__", "?"))
            self.calls.append((self.depth, "c", str(module), qual))
        elif event == "return" or event == "c_return" or event == "c_exception":
            self.depth -= 1
            if self.depth < 0:
                self.calls = None


_state: dict[str, Any] = {}


def child_command(app: Any, cmd: str) -> str | None:
    """``profile on`` / ``profile off PATH`` / ``trace on`` / ``trace off PATH``
    from the bench driver (``bench/e2e_latency.py``'s control channel); the
    answer line, or None for a command that is not ours."""
    import cProfile

    words = cmd.split(None, 2)
    if words[:2] == ["profile", "on"]:
        _state["profile"] = cProfile.Profile()
        _state["profile"].enable()
    elif words[:2] == ["profile", "off"]:
        profile = _state.pop("profile")
        profile.disable()
        profile.dump_stats(words[2])
    elif words[:2] == ["trace", "on"]:
        from asttapi_server.ami.protocol import AMIProtocol

        _state["trace"] = Tracer(type(app.bridge).on_ami_event.__code__, AMIProtocol._response.__code__)
        sys.setprofile(_state["trace"])
    elif words[:2] == ["trace", "off"]:
        sys.setprofile(None)
        Path(words[2]).write_text(json.dumps(_state.pop("trace").events))
    else:
        return None
    return "OK"


# -- the driver (this process) ----------------------------------------------------------


def _command(server: Any, cmd: str) -> None:
    server.proc.stdin.write(cmd.encode() + b"\n")
    server.proc.stdin.flush()
    line = server.proc.stdout.readline()
    if line.strip() != b"OK":
        raise RuntimeError(f"the server child answered {line!r} to {cmd!r}")


OURS = "asttapi_server."


def summarise(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Per event or answer: Python calls (all, and ours: in ``asttapi_server`` modules),
    C calls, stops (distinct Python functions) and modules. Then per TAPI UserEvent: the
    UserEvents' own mean, and ``per_call`` everything traced for the call (the events the
    server decodes and the answers to its actions) divided by its UserEvents."""
    rows = []
    for e in events:
        py = [c for c in e["calls"] if c[1] == "py"]
        rows.append({
            "event": e["event"],
            "python_calls": len(py) + 1,  # + on_ami_event itself
            "own_calls": sum(c[2].startswith(OURS) for c in py) + 1,
            "c_calls": len(e["calls"]) - len(py),
            "stops": len({(c[2], c[3]) for c in py}) + 1,
            "modules": len({c[2] for c in py} | {"asttapi_server.bridge"}),
            "by_module": dict(collections.Counter(c[2] for c in py).most_common()),
        })
    user = [r for r in rows if r["event"].startswith("UserEvent")]
    all_py = [c for e in events if e["event"].startswith("UserEvent") for c in e["calls"] if c[1] == "py"]
    by_module = collections.Counter(c[2] for c in all_py)
    n = max(1, len(user))
    every_py = [c for e in events for c in e["calls"] if c[1] == "py"]
    return {
        "events": rows,
        "user_events": len(user),
        "per_call": {
            "python_calls": sum(r["python_calls"] for r in rows),
            "own_calls": sum(r["own_calls"] for r in rows),
            "c_calls": sum(r["c_calls"] for r in rows),
            "python_calls_per_user_event": round(sum(r["python_calls"] for r in rows) / n, 1),
            "own_calls_per_user_event": round(sum(r["own_calls"] for r in rows) / n, 1),
            "stops": len({(c[2], c[3]) for c in every_py}) + 1,
            "modules": len({c[2] for c in every_py} | {"asttapi_server.bridge"}),
            "by_module_per_user_event": {m: round(k / n, 1) for m, k in
                                         collections.Counter(c[2] for c in every_py).most_common()},
        },
        "per_user_event": {
            "python_calls": round(sum(r["python_calls"] for r in user) / n, 1),
            "own_calls": round(sum(r["own_calls"] for r in user) / n, 1),
            "c_calls": round(sum(r["c_calls"] for r in user) / n, 1),
            "stops_mean": round(sum(r["stops"] for r in user) / n, 1),
            "modules_mean": round(sum(r["modules"] for r in user) / n, 1),
            "stops_all": len({(c[2], c[3]) for c in all_py}) + 1,
            "modules_all": len({c[2] for c in all_py} | {"asttapi_server.bridge"}),
            "by_module": {m: round(k / n, 1) for m, k in by_module.most_common()},
        },
    }


def profile_rows(path: str, user_events: int, top: int) -> list[dict[str, Any]]:
    stats = pstats.Stats(path)
    total = sum(v[2] for v in stats.stats.values())  # type: ignore[attr-defined]
    rows = []
    for (file, line, func), (cc, nc, tt, ct, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = file.replace(str(ROOT) + "/", "")
        for marker in ("site-packages/", "lib/python3"):
            if marker in where:
                where = where.split(marker, 1)[1]
        rows.append({"function": f"{where}:{line}({func})", "ncalls": nc, "per_user_event": round(nc / user_events, 2),
                     "tottime_s": round(tt, 4), "cumtime_s": round(ct, 4), "share": round(tt / total, 4)})
    rows.sort(key=lambda r: -r["tottime_s"])
    return rows[:top]


def run(mix_name: str = "tapi-dense", events: int = 100_000, top: int = 25,
        pstats_path: str | None = None, profile: bool = True) -> dict[str, Any]:
    """Trace one call of the mix after a warm-up pass of ``events`` AMI events (every
    line of the mix met, caches filled); then, with ``profile``, cProfile one pass."""
    from bench.e2e_throughput import BASE, Server, build_stream, mixes

    mix = mixes()[mix_name]
    server = Server(devices=mix.devices, lines=mix.lines, store=False)
    tmp = tempfile.mkdtemp(prefix="asttapi-event-cost-")
    try:
        stream, _, calls = build_stream(events, BASE, mix)
        server.run_once(stream, calls, mix.client_events)  # warm-up: caches, first calls
        one, _, _ = build_stream(1, BASE + 20_000_000, mix)
        trace_path = os.path.join(tmp, "trace.json")
        _command(server, "trace on")
        server.run_once(one, 1, mix.client_events)
        _command(server, f"trace off {trace_path}")
        traced = json.loads(Path(trace_path).read_text())
        figures: dict[str, Any] = {"benchmark": "event_cost", "mix": mix_name, "trace": summarise(traced),
                                   "traced_calls": traced}
        if profile:
            stream, total, calls = build_stream(events, BASE + 30_000_000, mix)
            prof_path = pstats_path or os.path.join(tmp, "profile.pstats")
            _command(server, "profile on")
            seconds, cpu, _ = server.run_once(stream, calls, mix.client_events)
            _command(server, f"profile off {prof_path}")
            user_events = calls * sum(e.startswith(b"Event: UserEvent\r\n") for e in mix.events)
            figures["profile"] = {
                "ami_events": total, "user_events": user_events, "seconds_profiled": round(seconds, 3),
                "server_cpu_s_profiled": round(cpu, 2), "top": profile_rows(prof_path, max(1, user_events), top)}
    finally:
        server.close()
    return figures


def in_process(mix_name: str) -> tuple[Any, Any]:
    """The server wired on the tests' fakes with one client holding every line of the mix open:
    ``(feed(stream) -> client events, clock)``."""
    from types import SimpleNamespace

    from asttapi_server.clients.hub import Hub
    from asttapi_server.clients.protocol import ClientFactory
    from asttapi_server.config import load_config
    from asttapi_server.metrics import Metrics
    from asttapi_server.service import build_bridge, build_model
    from asttapi_server.plugin_host import build_plugin_manager
    from bench.e2e_throughput import _pieces, mixes
    from tests.ami.fakes import FakeAsterisk
    from tests.clients.harness import Conn
    from tests.faults.system import coreshowchannels_answer

    mix = mixes()[mix_name]
    config = load_config(None, {"ami.host": "pbx.invalid",
                                **{f"lines.{n}.device": d for n, d in mix.devices.items()}})
    pbx = FakeAsterisk()
    clock = pbx.reactor
    clock.advance(1_795_674_000)
    ami = pbx.client(keepalive=0)
    model = build_model(config)
    plugins = build_plugin_manager(config.plugins, config=config, clock=clock)
    hub = Hub.from_config(config)
    bridge = build_bridge(config, ami, model, plugins, hub, clock)
    factory = ClientFactory.from_config(config, hub, bridge, clock=clock)
    app = SimpleNamespace(ami=ami, hub=hub, plugins=plugins, model=model, bridge=bridge, client_factory=factory,
                          config=config, clock=clock)
    plugins.app = bridge.plugin_context  # what PluginHost.startup hands the plugins
    Metrics().attach(app)
    ami.startService()
    session = pbx.accept()
    pbx.login_md5(session)
    (action,) = session.actions()
    session.send(coreshowchannels_answer(action.action_id, ()))
    conn = Conn(factory, 50001)
    for i, line in enumerate(mix.lines):
        conn.send({"jsonrpc": "2.0", "id": i + 1, "method": "lineOpen", "params": {"line": line}})
    opened = conn.read()
    if sum("result" in m for m in opened) != len(mix.lines):
        raise RuntimeError(f"lineOpen failed: {opened[-1]}")

    from asttapi_server.service import settle_heap

    settle_heap()  # as the real server does once it is up (AppService.notify_ready)

    # The server's Getvars are answered one read late, as over a socket: while
    # the next read is parsed they are pending, as in the real server.
    session.answer_getvar = False
    asked: list[Any] = []

    def answer(actions: list[Any]) -> None:
        for action in actions:
            if action.name != "Getvar":
                raise RuntimeError(f"unexpected action {action.name}")
            session.proto.dataReceived(
                f"Response: Success\r\nActionID: {action.action_id}\r\nVariable: {action.get('Variable')}\r\n"
                "Value: allowed_not_screened\r\n\r\n".encode())

    def feed(stream: bytes) -> int:
        before = hub.seq
        for piece in _pieces(stream):  # 64 KiB reads, each ending with an event (answers come between)
            session.send(piece)
            answer(asked)
            asked[:] = session.actions()
            conn.transport.clear()
        answer(asked)
        asked.clear()
        conn.transport.clear()
        return hub.seq - before

    return feed, clock


def _counted_pass(mix_name: str, events: int) -> None:
    """In the valgrind child: warm up, then count one pass (callgrind_control toggles the count)."""
    from bench.e2e_throughput import BASE, build_stream, mixes

    mix = mixes()[mix_name]
    feed, clock = in_process(mix_name)
    for r, counted in ((0, False), (1, True)):
        stream, total, calls = build_stream(events, BASE + 10_000_000 * r, mix)
        if counted:
            subprocess.run(["callgrind_control", "-i", "on", str(os.getpid())], stdout=subprocess.DEVNULL, check=True)
        got = feed(stream)
        if counted:
            subprocess.run(["callgrind_control", "-i", "off", str(os.getpid())], stdout=subprocess.DEVNULL, check=True)
        if got != calls * mix.client_events:
            raise RuntimeError(f"{got} client events, expected {calls * mix.client_events}")
        clock.advance(120)  # every call of the pass ended and freed
    print(json.dumps({"ami_events": total, "calls": calls}))


def instructions(mix_name: str = "tapi-dense", events: int = 5000) -> dict[str, Any]:
    """CPU instructions of one in-process pass of the mix, counted by callgrind.

    For comparing two versions of the server, not the server with the naive
    consumer: string scans in C run several instructions per cycle, the
    interpreter's dispatch about one, so equal counts are not equal times."""
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise RuntimeError("--instructions needs valgrind (Debian: apt-get install valgrind)")
    with tempfile.TemporaryDirectory(prefix="asttapi-callgrind-") as tmp:
        proc = subprocess.run(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={tmp}/callgrind.out",
             sys.executable, __file__, "--counted-pass", mix_name, "--events", str(events)],
            capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=1800)
    found = re.search(r"Collected : (\d+)", proc.stderr)
    if proc.returncode != 0 or found is None:
        raise RuntimeError(f"the callgrind run failed: {proc.stderr[-2000:]}")
    sizes = json.loads(proc.stdout.strip().splitlines()[-1])
    n = int(found.group(1))
    return {"benchmark": "event_cost_instructions", "mix": mix_name, **sizes, "instructions": n,
            "per_ami_event": round(n / sizes["ami_events"]), "per_call": round(n / sizes["calls"])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mix", default="tapi-dense", choices=("real", "tapi-dense", "device-lines"))
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--show", action="store_true", help="print the ordered calls of each traced event")
    ap.add_argument("--pstats", help="keep the raw cProfile output here")
    ap.add_argument("--no-profile", action="store_true", help="the call counts only")
    ap.add_argument("--instructions", action="store_true",
                    help="instead: CPU instructions per AMI event, in process, under callgrind")
    ap.add_argument("--counted-pass", help=argparse.SUPPRESS)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.counted_pass:
        _counted_pass(args.counted_pass, args.events)
        return 0
    if args.instructions:
        f = instructions(args.mix, args.events)
        if args.json:
            print(json.dumps(f))
        else:
            print(f"{f['mix']}: {f['instructions']:,} instructions for {f['ami_events']:,} AMI events ({f['calls']:,}"
                  f" calls): {f['per_ami_event']:,} per AMI event, {f['per_call']:,} per call (callgrind, in process)")
        return 0
    f = run(args.mix, args.events, args.top, args.pstats, profile=not args.no_profile)
    if args.json:
        print(json.dumps({k: v for k, v in f.items() if k != "traced_calls"}))
        return 0
    t = f["trace"]
    print(f"Calls per event (inside Bridge.on_ami_event) and per answer (AMIProtocol._response), one call of the"
          f" {f['mix']} mix:")
    for r in t["events"]:
        print(f"  {r['event'][:60]:<60} {r['python_calls']:>4} Python calls, {r['c_calls']:>4} C calls, "
              f"{r['stops']:>3} stops, {r['modules']:>2} modules")
    p = t["per_user_event"]
    print(f"Per TAPI UserEvent (mean of {t['user_events']}): {p['python_calls']} Python calls ({p['own_calls']} in"
          f" asttapi_server), {p['c_calls']} C calls, {p['stops_mean']} stops in {p['modules_mean']} modules;"
          f" {p['stops_all']} distinct functions in {p['modules_all']} modules over all of them;"
          " plus Message.__init__ in the framing loop")
    print("  Python calls per UserEvent by module: " + ", ".join(f"{m} {k}" for m, k in p["by_module"].items()))
    c = t["per_call"]
    if t["user_events"]:
        print(f"The whole call (every event and answer above) per TAPI UserEvent: {c['python_calls_per_user_event']}"
              f" Python calls ({c['own_calls_per_user_event']} in asttapi_server); {c['stops']} distinct functions"
              f" in {c['modules']} modules")
        print("  by module: " + ", ".join(f"{m} {k}" for m, k in c["by_module_per_user_event"].items()))
    else:
        print(f"The whole call: {c['python_calls']} Python calls ({c['own_calls']} in asttapi_server);"
              f" {c['stops']} distinct functions in {c['modules']} modules")
    if args.show:
        for e in f["traced_calls"]:
            print(f"\n{e['event']}")
            for depth, kind, module, qual in e["calls"]:
                print(f"  {'  ' * depth}{module}.{qual}" + (" [C]" if kind == "c" else ""))
    if "profile" not in f:
        return 0
    pr = f["profile"]
    print(f"\ncProfile of the server child, {pr['ami_events']:,} AMI events ({pr['user_events']:,} TAPI UserEvents), "
          f"{pr['seconds_profiled']} s, server CPU {pr['server_cpu_s_profiled']} s (with the profiler's overhead):")
    print(f"  {'own s':>7} {'share':>6} {'cum s':>7} {'calls/UE':>8}  function")
    for r in pr["top"]:
        print(f"  {r['tottime_s']:>7.3f} {r['share']:>6.1%} {r['cumtime_s']:>7.3f} {r['per_user_event']:>8}  {r['function']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
