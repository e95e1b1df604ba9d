"""A small blocking client for the asttapi-server JSON-RPC protocol.

Plain sockets, no reactor, so scripts and the ``asttapi`` command can use it::

    from asttapi_server.rpc_client import Client

    with Client("127.0.0.1", 5039) as c:
        c.login("alice", token)            # only if c.hello["login_required"]
        print(c.line_open("line_1"))       # {"calls": [...], "seq": ..., "epoch": ...}
        for ev in c.events():              # {"method": "LINE_CALLSTATE", "params": {...}}
            print(ev)

Notifications that arrive while waiting for a response are kept, in order,
for :meth:`Client.next_event`. ``Client.pbx_connected`` says whether the
server has its PBX link (False: its calls are not the PBX's, requests that
need the PBX fail). See ``docs/protocol.md`` for every method.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
from collections import deque
from collections.abc import Iterator
from typing import Any


#: LINEDEVSTATE values that say whether the server's PBX link is up.
_DEVSTATE_LINK = {"LINEDEVSTATE_INSERVICE": True, "LINEDEVSTATE_OUTOFSERVICE": False}


class ClientError(Exception):
    """Base of this module's errors."""


class ConnectionClosed(ClientError):
    """The server closed the connection (``last_error`` holds its goodbye, if any)."""

    def __init__(self, message: str, last_error: dict | None = None) -> None:
        self.last_error = last_error
        super().__init__(message)


class RemoteError(ClientError):
    """The server answered a request with an error."""

    def __init__(self, error: dict) -> None:
        self.code: int = error.get("code", 0)
        self.message: str = error.get("message", "")
        self.data: dict = error.get("data") or {}
        self.lineerr: str | None = self.data.get("lineerr")
        super().__init__(f"{self.message} ({self.lineerr or self.code})")


class Client:
    """One connection. Not thread-safe; use one per thread."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 5039,
        *,
        tls: bool = False,
        cafile: str | None = None,
        verify: bool = True,
        timeout: float = 10.0,
        max_line_bytes: int = 16 << 20,
    ) -> None:
        self.timeout = timeout
        self.max_line_bytes = max_line_bytes
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls:
            ctx = ssl.create_default_context(cafile=cafile)
            if not verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            sock = ctx.wrap_socket(sock, server_hostname=host)
        self.sock = sock
        self._buf = b""
        self._events: deque[dict] = deque()
        self._next_id = 0
        self.last_seq: int | None = None
        hello = self._read_message(timeout)
        if hello.get("method") != "hello":
            raise ClientError(f"expected hello from the server, got {hello!r}")
        self.hello: dict = hello["params"]
        #: Whether the server has its link to the PBX: hello's ``pbx``, then
        #: every LINE_LINEDEVSTATE IN/OUTOFSERVICE; None if the server does not say.
        self.pbx_connected: bool | None = {"up": True, "down": False}.get(self.hello.get("pbx"))

    # -- plumbing -------------------------------------------------------------

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _decode(self, line: bytes) -> dict:
        """One JSON-RPC message; anything else says what answered instead (an
        Asterisk manager on our port, a web server, a TLS port read as plain)."""
        try:
            message = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            text = line[:60].decode("ascii", "replace").strip()
            if self.last_seq is None and not self._next_id:
                raise ClientError(f"not an asttapi-server on this port: it said {text!r}"
                                  + (" (an Asterisk manager? asttapi listens on 5039 by default)"
                                     if text.startswith("Asterisk Call Manager") else "")) from None
            raise ClientError(f"the server sent a line that is not JSON: {text!r}") from None
        if not isinstance(message, dict):
            raise ClientError(f"the server sent a JSON {type(message).__name__}, not a message")
        return message

    def _read_message(self, timeout: float | None) -> dict:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0:
                line, self._buf = self._buf[:nl], self._buf[nl + 1 :]
                if line.strip():
                    return self._decode(line)
                continue
            if len(self._buf) > self.max_line_bytes:
                raise ClientError("the server sent a line that is too long")
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if remaining == 0.0:
                raise TimeoutError("no message from the server in time")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                raise TimeoutError("no message from the server in time") from None
            if not data:
                raise ConnectionClosed("the server closed the connection")
            self._buf += data

    def _note(self, msg: dict) -> None:
        params = msg.get("params") if isinstance(msg.get("params"), dict) else {}
        seq = params.get("seq")
        if isinstance(seq, int):
            self.last_seq = seq if self.last_seq is None else max(self.last_seq, seq)
        if msg.get("method") == "LINE_LINEDEVSTATE" and not params.get("replayed"):
            up = _DEVSTATE_LINK.get(params.get("devstate"))
            if up is not None:
                self.pbx_connected = up

    def call(self, method: str, **params: Any) -> Any:
        """Send a request and wait for its response; raises :class:`RemoteError`."""
        self._next_id += 1
        rid = self._next_id
        msg = {"jsonrpc": "2.0", "id": rid, "method": method, "params": params}
        self.sock.sendall(json.dumps(msg, separators=(",", ":")).encode() + b"\n")
        while True:
            try:
                reply = self._read_message(self.timeout)
            except ConnectionClosed as e:
                raise ConnectionClosed(f"the server closed the connection during {method}") from e
            if "method" in reply:
                self._note(reply)
                self._events.append(reply)
            elif reply.get("id") == rid:
                if "error" in reply:
                    raise RemoteError(reply["error"])
                return reply.get("result")
            elif reply.get("id") is None and "error" in reply:
                # the server's goodbye (line too long, too many errors ...)
                raise ConnectionClosed(reply["error"].get("message", "closed"), reply["error"])

    def next_event(self, timeout: float | None = None) -> dict | None:
        """The next notification (``{"method", "params"}``), or ``None`` on timeout."""
        if self._events:
            return self._events.popleft()
        while True:
            try:
                msg = self._read_message(timeout)
            except TimeoutError:
                return None
            if "method" in msg:
                self._note(msg)
                return msg
            if msg.get("id") is None and "error" in msg:
                raise ConnectionClosed(msg["error"].get("message", "closed"), msg["error"])

    def events(self, timeout: float | None = None) -> Iterator[dict]:
        """Notifications until ``timeout`` passes without one (forever if None)."""
        while True:
            ev = self.next_event(timeout)
            if ev is None:
                return
            yield ev

    # -- methods (docs/protocol.md) ----------------------------------------------

    def ping(self) -> dict:
        return self.call("ping")

    def login(self, username: str, token: str) -> dict:
        return self.call("login", username=username, token=token)

    def line_open(self, line: str, seq: int | None = None, epoch: str | None = None) -> dict:
        params: dict[str, Any] = {"line": line}
        if seq is not None:
            params["seq"] = seq
            if epoch is not None:
                params["epoch"] = epoch
        result = self.call("lineOpen", **params)
        up = _DEVSTATE_LINK.get(result.get("devstate")) if isinstance(result, dict) else None
        if up is not None:
            self.pbx_connected = up
        return result

    def line_close(self, line: str) -> None:
        self.call("lineClose", line=line)

    def line_get_calls(self, line: str) -> list[dict]:
        return self.call("lineGetCalls", line=line)["calls"]

    def line_get_call_info(self, call: int) -> dict:
        return self.call("lineGetCallInfo", call=call)

    def make_call(self, line: str, number: str) -> int:
        return self.call("lineMakeCall", line=line, number=number)["call"]

    def drop(self, call: int) -> None:
        self.call("lineDrop", call=call)

    def blind_transfer(self, call: int, number: str) -> None:
        self.call("lineBlindTransfer", call=call, number=number)
