"""Fixtures for the real-browser tests: a server process (harness.py) and a headless Chromium."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from . import chromium

ROOT = Path(__file__).resolve().parents[2]


class Server:
    """The harness process: the server on the demo PBX, a relay to cut, a command pipe."""

    def __init__(self, users: bool, log_path: Path, first_run: bool = False) -> None:
        args = [sys.executable, "-m", "tests.browser.harness"] + (["--users"] if users else [])
        args += ["--first-run"] if first_run else []
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            args, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log
        )
        self._lock = threading.Lock()
        self._ready: dict | None = None

    def ready(self) -> dict:
        """The harness's ready line, read at first use: the server starts while Chromium does."""
        if self._ready is None:
            ready = self._read()
            if "ready" not in ready:
                raise RuntimeError(f"harness did not start: {ready}; log in {self.log_path}")
            self._ready = ready["ready"]
        return self._ready

    @property
    def url(self) -> str:
        return self.ready()["url"]

    @property
    def tcp_port(self) -> int:
        return self.ready()["tcp"]

    @property
    def logged_urls(self) -> list[str]:
        return self.ready()["logged_urls"]

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(5)
            raise RuntimeError(f"harness exited ({self.proc.returncode}); log in {self.log_path}:\n"
                               + self.log_path.read_text()[-3000:])
        return json.loads(line)

    def command(self, cmd: str, **kw):
        self.ready()
        with self._lock:
            self.proc.stdin.write(json.dumps({"cmd": cmd, **kw}).encode() + b"\n")
            self.proc.stdin.flush()
            answer = self._read()
        if "error" in answer:
            raise AssertionError(f"harness command {cmd} failed: {answer['error']}")
        return answer["ok"]

    def play(self, kind: str = "inbound", until_done: bool = False, **kwargs) -> None:
        self.command("play", kind=kind, kwargs=kwargs, until_done=until_done)

    def actions(self, name: str | None = None) -> list[dict]:
        return self.command("actions", name=name)

    def stop(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(10)
        except Exception:
            self.proc.kill()
            self.proc.wait(5)
        self._log.close()


@pytest.fixture
def shots() -> Path:
    path = chromium.screenshot_dir()
    print(f"\nbrowser screenshots and server logs: {path}")
    return path


# A Chromium and a server take about a second each to go away; a test's
# teardown hands that to a thread, so the next test starts meanwhile. The
# session waits for all of them at its end.
_closing: list[threading.Thread] = []


def _close_later(close) -> None:
    thread = threading.Thread(target=close, name="browser-test-teardown")
    thread.start()
    _closing.append(thread)


@pytest.fixture(scope="session", autouse=True)
def _closed_at_the_end():
    yield
    for thread in _closing:
        thread.join(60)


def _server(request, shots: Path, users: bool, first_run: bool = False) -> Server:
    server = Server(users, shots / f"{request.node.name}.server.log", first_run)
    request.addfinalizer(lambda: _close_later(server.stop))
    return server


@pytest.fixture
def server(request, shots):
    """A server that needs no login (loopback only, as the demo)."""
    return _server(request, shots, users=False)


@pytest.fixture
def first_run_server(request, shots):
    """``make run`` with no config: the demo plays calls by itself, the log names the URL."""
    return _server(request, shots, users=False, first_run=True)


@pytest.fixture
def login_server(request, shots):
    """A server with one user: ``desk`` / ``desk-secret-token``, lines line_1 and line_2."""
    return _server(request, shots, users=True)


# One Chromium per window size in a pytest process, handed to one test after
# another: starting one took a second or more per test. Each test's server
# is a new origin; still, what a test leaves behind is removed before the
# next gets the browser: its page (about:blank), the storage of the origin it
# was on, scripts it injected over CDP, and console messages. A browser that
# cannot be reset is quit, and the next test gets a fresh one.
_idle: dict[tuple[int, int], object] = {}


@pytest.fixture(scope="session", autouse=True)
def _quit_idle_browsers():
    yield
    while _idle:
        _close_later(_idle.popitem()[1].quit)


def _lend(request, width: int, height: int):
    driver = _idle.pop((width, height), None) or chromium.start(width, height)
    driver.get_log("browser")  # nothing from before this test
    cdp = type(driver).execute_cdp_cmd.__get__(driver)
    scripts: list[str] = []

    def execute_cdp_cmd(cmd: str, cmd_args: dict):
        result = cdp(cmd, cmd_args)
        if cmd == "Page.addScriptToEvaluateOnNewDocument":
            scripts.append(result["identifier"])
        return result

    driver.execute_cdp_cmd = execute_cdp_cmd  # type: ignore[method-assign]

    def give_back() -> None:
        try:
            del driver.execute_cdp_cmd
            for identifier in scripts:
                cdp("Page.removeScriptToEvaluateOnNewDocument", {"identifier": identifier})
            origin = driver.execute_script("return location.origin")
            if origin and origin.startswith("http"):
                driver.execute_script("sessionStorage.clear()")  # the tab's own: CDP leaves it
                cdp("Storage.clearDataForOrigin", {"origin": origin, "storageTypes": "all"})
            driver.get("about:blank")
            driver.get_log("browser")
        except Exception:
            _close_later(driver.quit)
            return
        if request.node.session.testsfailed:
            _close_later(driver.quit)  # after a failure, nothing is trusted: a fresh browser
            return
        _idle[(width, height)] = driver

    request.addfinalizer(give_back)
    return driver


@pytest.fixture
def browser(request):
    return _lend(request, 1280, 900)


@pytest.fixture
def phone(request):
    return _lend(request, 360, 740)
