"""The collector settled once the server is up (docs/operations.md, "Garbage collection").

``service.settle_heap`` changes the interpreter's global collector state, so
the checks of what it does run in a child interpreter of their own; the test
run itself never freezes (``make_service`` leaves it off, only ``tap.py``,
the real server process, turns it on).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_settle_heap_freezes_what_lives_and_a_reload_frees_what_died_since():
    script = textwrap.dedent("""
        import gc, weakref
        from asttapi_server.service import settle_heap

        class Node:
            pass

        def cycle():
            a, b = Node(), Node()
            a.other, b.other = b, a
            return a

        garbage = weakref.ref(cycle())          # unreachable already: collected, never frozen
        kept = cycle()                          # alive at start-up: frozen
        died_later = weakref.ref(kept)
        settle_heap()
        assert garbage() is None, "garbage was frozen"
        assert gc.get_freeze_count() > 0 and gc.get_threshold() == (700, 10, 10)  # Python's own
        frozen = gc.get_freeze_count()
        del kept                                # a start-up object becomes cyclic garbage
        gc.collect()
        assert died_later() is not None, "frozen objects are out of the collector's reach"
        settle_heap()                           # the end of a reload: unfreeze, collect, freeze again
        assert died_later() is None, "a reload must free what died since the last freeze"
        assert 0 < gc.get_freeze_count() < frozen + 10
        print("ok")
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr


def test_only_the_server_process_settles_its_heap(monkeypatch):
    """tap.py (twistd) turns it on; a server built in a test run's process does not touch the collector."""
    from asttapi_server import service, tap
    from asttapi_server.config import load_config

    settled: list[int] = []
    monkeypatch.setattr(service, "settle_heap", lambda: settled.append(1))
    app = service.make_service(load_config(None, {}))
    assert app.tune_gc is False
    app.notify_ready()
    assert settled == []
    app.tune_gc = True
    app.notify_ready()  # READY=1 at start and at the end of each reload
    assert settled == [1]
    opts = tap.Options()
    opts.parseOptions([])
    assert tap.makeService(opts).tune_gc is True
