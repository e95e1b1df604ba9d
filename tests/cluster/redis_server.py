"""A real redis-server (and Sentinel) for the tests: started on a loopback port in a temp dir.

Tests skip with a clear reason when the binary is missing (Debian: redis-server;
``.ci/run`` installs it). :class:`RedisServer` can stop (cleanly or by SIGKILL)
and start again on the same port and directory: Redis restarting is a test case.
No fixed sleeps: starting waits until the server answers PING (or exits).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

REDIS_SERVER = shutil.which("redis-server") or ("/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None)

needs_redis = pytest.mark.skipif(
    REDIS_SERVER is None,
    reason="redis-server is not installed (Debian package redis-server; .ci/run installs it)",
)


def free_port() -> int:
    """A loopback port the OS says is free now (redis-server cannot take port 0 and say which it got)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ping(port: int, timeout: float = 0.5, password: str | None = None) -> bytes | None:
    """One PING over a plain socket: the first reply line, or None if nothing answers."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            if password is not None:
                s.sendall(b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(password), password.encode()))
                s.recv(100)
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            return s.recv(100).split(b"\r\n")[0]
    except OSError:
        return None


class RedisServer:
    """One redis-server process; ``conf`` lines go into its config file (``appendonly yes``...)."""

    def __init__(self, directory: Path, *conf: str, sentinel: bool = False, port: int | None = None) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf = list(conf)
        self.sentinel = sentinel
        self.port = port
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> "RedisServer":
        """Start; a port picked here that another process takes meanwhile is picked again."""
        assert REDIS_SERVER is not None
        fixed = self.port is not None
        for _attempt in range(5):
            if not fixed:
                self.port = free_port()
            path = self.dir / ("sentinel.conf" if self.sentinel else "redis.conf")
            if not self.sentinel or not path.exists():  # Sentinel rewrites its own file
                lines = [f"port {self.port}", "bind 127.0.0.1", f"dir {self.dir}", "daemonize no",
                         f"logfile {self.dir / 'redis.log'}"]
                if not self.sentinel:
                    lines += ['save ""', "appendonly no"]
                path.write_text("\n".join(lines + self.conf) + "\n")
            args = [REDIS_SERVER, str(path)] + (["--sentinel"] if self.sentinel else [])
            self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                         start_new_session=True)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break  # exited: the port was taken meanwhile (or the config is wrong)
                answer = ping(self.port)
                if answer is not None and (answer == b"+PONG" or answer.startswith(b"-NOAUTH")):
                    return self
                time.sleep(0.01)  # polling for the server to come up, not a fixed wait
            else:
                self.stop(kill=True)
                raise RuntimeError(f"redis-server on port {self.port} did not answer in {timeout}s: "
                                   + self.log_tail())
            if fixed:
                raise RuntimeError(f"redis-server exited at start: {self.log_tail()}")
        raise RuntimeError("redis-server could not find a free port")

    def log_tail(self) -> str:
        try:
            return (self.dir / "redis.log").read_text()[-2000:]
        except OSError:
            return "(no log)"

    def stop(self, *, kill: bool = False) -> None:
        """SIGTERM (Redis saves per its config and exits) or SIGKILL (a crash); waits for the exit."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def restart(self, *, kill: bool = False) -> None:
        """Stop and start again on the same port and directory."""
        self.stop(kill=kill)
        self.start()

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def cli(self, *args: str) -> str:
        """Ask the server something over a plain socket (no redis-cli needed)."""
        return raw_command(self.port, *args)


def raw_command(port: int, *args: str | bytes, timeout: float = 5.0) -> str:
    """One command over a plain socket, the reply returned as text (for tests' checks only)."""
    from asttapi_server.cluster.resp import NEED_DATA, Reader, command

    reader = Reader()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(command(*args))
        while True:
            data = s.recv(65536)
            if not data:
                raise ConnectionError("closed")
            reader.feed(data)
            reply = reader.next()
            if reply is not NEED_DATA:
                return reply
