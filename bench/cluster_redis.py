"""Cluster Redis benchmark: the client's round trip and the event log's fenced appends, against a
redis-server this script starts on a loopback port (Debian package redis-server).

Measured in one process, against one redis-server, in the same run:

* **round trip**: ``--n`` serial PINGs, median and p99 (``asttapi_server.cluster.client``);
* **fenced appends, one per script call**: ``--n`` APPEND scripts (the lease check and the XADD
  in one Lua call), all issued at once on one connection: appends/s;
* **fenced appends through EventAppender**: the same events queued as the active node queues
  them (a batch per round trip): events/s;
* **append to delivery**: events appended at ``--rate`` per second for ``--seconds``, each timed
  from ``append`` to its arrival through a LogFollower on another connection (what every node's
  hub waits for): p50 and p99 in ms.

The same first two figures for the alternatives considered (docs/scaling.md "The Redis client"),
when they are installed (they are not dependencies: ``pip install txredisapi redis``):
txredisapi (Twisted-native), and redis-py run in Twisted's thread pool (4 threads; and its
pipeline, 100 commands per thread hop). Ratios are ours against each.

    .venv/bin/python bench/cluster_redis.py
    .venv/bin/python bench/cluster_redis.py --n 20000 --json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from twisted.internet import defer, threads  # noqa: E402

from asttapi_server.cluster import scripts  # noqa: E402
from asttapi_server.cluster.address import parse_redis_url  # noqa: E402
from asttapi_server.cluster.client import RedisClient  # noqa: E402
from asttapi_server.cluster.keys import Keys  # noqa: E402
from asttapi_server.cluster.lease import Tenure  # noqa: E402
from asttapi_server.cluster.log import EventAppender, LogFollower  # noqa: E402
from tests.cluster.reactor import run, sleep  # noqa: E402
from tests.cluster.redis_server import RedisServer  # noqa: E402

TENURE = Tenure(1, "bench/1")
DATA = json.dumps({"m": "LINE_CALLSTATE", "l": "line_1", "c": 1, "p": "LINECALLSTATE_OFFERING",
                   "i": {"callerid": "0301234567", "calleridname": "Ext Caller", "calledid": "100"}}).encode()


def append_args(batch: str) -> tuple[list[str], list[Any]]:
    k = Keys()
    return ([k.lease("p1"), k.events("p1"), k.log("p1"), k.seq],
            [TENURE.value, batch, 100_000, 3_600_000, TENURE.token, "e", DATA])


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


async def ours(reactor: Any, url: str, n: int, rate: int, seconds: float) -> dict[str, Any]:
    client = RedisClient(reactor, parse_redis_url(url), name="bench")
    follow = RedisClient(reactor, parse_redis_url(url), name="bench-log")
    client.startService()
    follow.startService()
    try:
        await client.when_connected()
        await client.execute("SET", Keys().lease("p1"), TENURE.value)
        rtt = []
        for _ in range(n // 4):
            t = time.perf_counter()
            await client.execute("PING")
            rtt.append(time.perf_counter() - t)
        keys, args = append_args("x")
        await client.run(scripts.APPEND, keys, args)  # loaded
        t = time.perf_counter()
        await defer.gatherResults([client.run(scripts.APPEND, keys, [args[0], f"b{i}", *args[2:]]) for i in range(n)])
        one_per_call = n / (time.perf_counter() - t)
        appender = EventAppender(client, Keys(), reactor)
        t = time.perf_counter()
        await defer.gatherResults([appender.append("p1", TENURE, "e", DATA) for _ in range(n)])
        batched = n / (time.perf_counter() - t)
        # Append to delivery through a follower: each event carries its number, timed from append().
        sent: dict[int, float] = {}
        delays: list[float] = []

        def entry(e: Any) -> None:
            at = sent.pop(json.loads(e.data)["c"], None)
            if at is not None:
                delays.append(time.perf_counter() - at)

        follower = LogFollower(follow, Keys(), ["p1"], on_restart=lambda epoch, seq: None, on_entry=entry,
                               on_gap=lambda gap: None, block=1.0)
        follower.start()
        await sleep(reactor, 0.3)
        total = int(rate * seconds)
        began = time.perf_counter()
        i = 0
        while i < total:  # paced by the clock, 10 ms at a time (a 1 ms sleep is not one on a busy machine)
            due = min(total, int((time.perf_counter() - began) * rate) + 1)
            while i < due:
                sent[i] = time.perf_counter()
                appender.append("p1", TENURE, "e",
                                json.dumps({"m": "LINE_CALLSTATE", "l": "line_1", "c": i}).encode())
                i += 1
            await sleep(reactor, 0.01)
        achieved = total / (time.perf_counter() - began)
        await sleep(reactor, 0.5)
        await follower.stop()
        return {
            "rtt_ms_p50": statistics.median(rtt) * 1000, "rtt_ms_p99": pct(rtt, 0.99) * 1000,
            "append_one_per_call_per_s": one_per_call, "append_batched_per_s": batched,
            "delivery_ms_p50": statistics.median(delays) * 1000 if delays else None,
            "delivery_ms_p99": pct(delays, 0.99) * 1000 if delays else None, "delivered": len(delays),
            "rate": achieved,
        }
    finally:
        await client.stopService()
        await follow.stopService()


async def txredisapi_figures(reactor: Any, port: int, n: int) -> dict[str, Any] | None:
    try:
        import txredisapi
    except ImportError:
        return None
    # txredisapi connects with the global reactor: run it there is not possible here, so it gets
    # this run's reactor installed as its module-level one for the duration.
    saved = txredisapi.reactor
    txredisapi.reactor = reactor
    try:
        c = await txredisapi.Connection("127.0.0.1", port, convertNumbers=False, charset=None)
        await c.set(Keys().lease("p1"), TENURE.value)
        rtt = []
        for _ in range(n // 4):
            t = time.perf_counter()
            await c.ping()
            rtt.append(time.perf_counter() - t)
        keys, args = append_args("t")
        sha = await c.execute_command("SCRIPT", "LOAD", scripts.APPEND.source)
        t = time.perf_counter()
        await defer.gatherResults([c.execute_command("EVALSHA", sha, len(keys), *keys, args[0], f"t{i}", *args[2:])
                                   for i in range(n)])
        per_s = n / (time.perf_counter() - t)
        await c.disconnect()
        return {"rtt_ms_p50": statistics.median(rtt) * 1000, "append_one_per_call_per_s": per_s}
    finally:
        txredisapi.reactor = saved


async def redis_py_figures(reactor: Any, port: int, n: int) -> dict[str, Any] | None:
    try:
        import redis
    except ImportError:
        return None
    pool = reactor.getThreadPool()
    pool.adjustPoolsize(4, 4)
    r = redis.Redis(port=port)
    r.set(Keys().lease("p1"), TENURE.value)
    keys, args = append_args("r")
    script = r.register_script(scripts.APPEND.source)
    rtt = []
    for _ in range(n // 4):
        t = time.perf_counter()
        await threads.deferToThreadPool(reactor, pool, r.ping)
        rtt.append(time.perf_counter() - t)
    t = time.perf_counter()
    await defer.gatherResults([threads.deferToThreadPool(reactor, pool, script, keys, [args[0], f"r{i}", *args[2:]])
                               for i in range(n)])
    per_s = n / (time.perf_counter() - t)

    def batch(first: int) -> Any:
        p = r.pipeline(transaction=False)
        for i in range(first, first + 100):
            script(keys, [args[0], f"rp{i}", *args[2:]], client=p)
        return p.execute()

    t = time.perf_counter()
    await defer.gatherResults([threads.deferToThreadPool(reactor, pool, batch, i) for i in range(0, n, 100)])
    pipelined = n / (time.perf_counter() - t)
    return {"rtt_ms_p50": statistics.median(rtt) * 1000, "append_one_per_call_per_s": per_s,
            "append_pipelined_per_s": pipelined}


def measure(n: int = 10_000, rate: int = 1000, seconds: float = 2.0) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp)).start()
        try:
            async def go(reactor: Any) -> dict[str, Any]:
                figures = {"ours": await ours(reactor, server.url, n, rate, seconds)}
                server.cli("FLUSHALL")
                figures["txredisapi"] = await txredisapi_figures(reactor, server.port, n)
                server.cli("FLUSHALL")
                figures["redis_py_threads"] = await redis_py_figures(reactor, server.port, n)
                return figures

            figures = run(go, timeout=600)
        finally:
            server.stop(kill=True)
    figures["n"] = n
    figures["load"] = os.getloadavg()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--json", action="store_true")
    a = parser.parse_args()
    f = measure(a.n, a.rate, a.seconds)
    if a.json:
        print(json.dumps(f))
        return
    o = f["ours"]
    print(f"cluster Redis client, {f['n']:,} commands per figure, load {f['load'][0]:.2f}")
    print(f"  round trip (PING)                 p50 {o['rtt_ms_p50']:.3f} ms, p99 {o['rtt_ms_p99']:.3f} ms")
    print(f"  fenced append, one per call       {o['append_one_per_call_per_s']:,.0f}/s")
    print(f"  fenced append, EventAppender      {o['append_batched_per_s']:,.0f}/s")
    if o["delivery_ms_p50"] is not None:
        print(f"  append -> follower delivery       p50 {o['delivery_ms_p50']:.2f} ms, p99 {o['delivery_ms_p99']:.2f} ms"
              f" ({o['delivered']:,} events, {o['rate']:,.0f}/s)")
    for name, label in (("txredisapi", "txredisapi"), ("redis_py_threads", "redis-py in 4 threads")):
        other = f[name]
        if other is None:
            print(f"  {label}: not installed (pip install {'txredisapi' if name == 'txredisapi' else 'redis'})")
            continue
        ratio = o["append_one_per_call_per_s"] / other["append_one_per_call_per_s"]
        line = (f"  {label}: round trip p50 {other['rtt_ms_p50']:.3f} ms, fenced append one per call"
                f" {other['append_one_per_call_per_s']:,.0f}/s (ours {ratio:.1f}x)")
        if "append_pipelined_per_s" in other:
            line += f", pipelined by 100 {other['append_pipelined_per_s']:,.0f}/s"
        print(line)


if __name__ == "__main__":
    main()
