"""The ``asttapi`` command pointed at something that is not an asttapi-server.

An admin's first mistake is the port: 5038 is Asterisk's manager, and a web
or TLS port answers bytes that are not JSON. The command says what answered,
in one line with status 2, never a traceback.
"""

from __future__ import annotations

import io
import socket
import threading

import pytest

from asttapi_server import cli


def _greeter(greeting: bytes) -> tuple[socket.socket, int]:
    sock = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        try:
            conn, _ = sock.accept()
        except OSError:
            return
        with conn:
            conn.sendall(greeting)
            conn.recv(1024)

    threading.Thread(target=serve, daemon=True).start()
    return sock, sock.getsockname()[1]


@pytest.mark.parametrize(("greeting", "said"), [
    (b"Asterisk Call Manager/11.0.0\r\n", "an Asterisk manager?"),
    (b"HTTP/1.1 400 Bad Request\r\n\r\n", "'HTTP/1.1 400 Bad Request'"),
    (b"[1, 2]\n", "not a message"),
])
def test_a_port_that_is_not_ours_is_one_line(greeting, said, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("ASTTAPI_CLIENT_CONFIG", str(tmp_path / "none.toml"))
    sock, port = _greeter(greeting)
    try:
        status = cli.main(["--port", str(port), "--timeout", "5", "watch", "line_1"], out=io.StringIO())
    finally:
        sock.close()
    err = capsys.readouterr().err
    assert status == 2
    assert said in err and "Traceback" not in err and err.count("\n") == 1
