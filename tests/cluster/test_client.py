"""The Redis client against a real redis-server: commands, scripts, timeouts, reconnects, AUTH."""

from __future__ import annotations

import pytest

from asttapi_server.cluster.address import parse_redis_url
from asttapi_server.cluster.client import RedisClient
from asttapi_server.cluster.scripts import Script
from asttapi_server.errors import RedisReplyError, RedisUnavailable

from .reactor import run, sleep, until
from .redis_server import RedisServer, needs_redis

pytestmark = needs_redis

ECHO = Script("echo", "return {KEYS[1], ARGV[1]}")


def client(reactor, server, **kw):
    c = RedisClient(reactor, parse_redis_url(f"redis://127.0.0.1:{server.port}/{kw.pop('db', 0)}"), **kw)
    c.startService()
    return c


def test_commands_pipeline_and_scripts_load_once(redis_server):
    async def go(reactor):
        c = client(reactor, redis_server, name="asttapi-test")
        try:
            await c.when_connected()
            replies = await __import__("twisted.internet.defer", fromlist=["x"]).gatherResults(
                [c.execute("INCR", "n") for _ in range(500)])
            assert replies == list(range(1, 501))  # in order, one connection
            assert await c.run(ECHO, ["k"], ["v"]) == [b"k", b"v"]  # EVAL: not loaded yet
            assert await c.run(ECHO, ["k"], ["w"]) == [b"k", b"w"]  # EVALSHA
            await c.execute("SCRIPT", "FLUSH")
            assert await c.run(ECHO, ["k"], ["x"]) == [b"k", b"x"]  # NOSCRIPT -> EVAL again
            with pytest.raises(RedisReplyError, match="wrong number of arguments|ERR"):
                await c.execute("GET")
            names = await c.execute("CLIENT", "LIST")
            assert b"name=asttapi-test" in names
        finally:
            await c.stopService()

    run(go)


def test_a_dropped_connection_fails_waiters_and_comes_back(redis_server):
    async def go(reactor):
        c = client(reactor, redis_server)
        try:
            await c.when_connected()
            blocked = c.execute("BLPOP", "nothing", "5", timeout=10)
            redis_server.restart(kill=True)
            with pytest.raises(RedisUnavailable):
                await blocked
            await until(reactor, lambda: c.connected, what="reconnection")
            assert await c.execute("PING") == b"PONG"
            assert c.connections == 2
        finally:
            await c.stopService()

    run(go)


def test_no_reply_in_time_drops_the_connection(redis_server):
    async def go(reactor):
        c = client(reactor, redis_server, reply_timeout=0.3)
        try:
            await c.when_connected()
            redis_server.pause()
            try:
                with pytest.raises(RedisUnavailable, match="no reply in time"):
                    await c.execute("PING")
                with pytest.raises(RedisUnavailable):
                    await c.execute("PING")  # no connection now: fails at once, nothing queued
            finally:
                redis_server.resume()
            await until(reactor, lambda: c.connected, what="reconnection")
            assert await c.execute("PING") == b"PONG"
        finally:
            await c.stopService()

    run(go)


def test_password_acl_user_and_database(tmp_path):
    server = RedisServer(tmp_path / "r", "requirepass topsecret",
                         "user agent on >agentpass ~* &* +@all").start()
    try:
        async def go(reactor):
            plain = client(reactor, server, password="topsecret", db=3)
            acl = client(reactor, server, username="agent", password="agentpass", db=3)
            wrong = client(reactor, server, password="nope")
            try:
                await plain.when_connected()
                await acl.when_connected()
                await plain.execute("SET", "where", "db3")
                assert await acl.execute("GET", "where") == b"db3"
                assert (await acl.execute("ACL", "WHOAMI")) == b"agent"
                await sleep(reactor, 0.3)
                assert not wrong.connected  # refused AUTH: never handed out, retried with backoff
                with pytest.raises(RedisUnavailable):
                    await wrong.execute("PING")
            finally:
                for c in (plain, acl, wrong):
                    await c.stopService()

        run(go)
    finally:
        server.stop(kill=True)


def test_rediss_verifies_the_servers_certificate(tmp_path):
    """TLS to Redis: a server whose certificate the CA file vouches for is used; with another CA,
    never (no command reaches it)."""
    pytest.importorskip("OpenSSL")
    from asttapi_server.cluster.client import tls_options_from
    from tests.security.tlsutil import make_cert

    from .redis_server import free_port

    (tmp_path / "good").mkdir()
    (tmp_path / "other").mkdir()
    key, cert = make_cert(tmp_path / "good")
    _other_key, other_cert = make_cert(tmp_path / "other", ec=True)
    tls_port = free_port()
    server = RedisServer(tmp_path / "r", f"tls-port {tls_port}", f"tls-cert-file {cert}", f"tls-key-file {key}",
                         f"tls-ca-cert-file {cert}", "tls-auth-clients no").start()
    try:
        async def go(reactor):
            good = RedisClient(reactor, parse_redis_url(f"rediss://127.0.0.1:{tls_port}"),
                               tls_options=tls_options_from(str(cert)))
            bad = RedisClient(reactor, parse_redis_url(f"rediss://127.0.0.1:{tls_port}"),
                              tls_options=tls_options_from(str(other_cert)))
            good.startService()
            bad.startService()
            try:
                await good.when_connected()
                assert await good.execute("PING") == b"PONG"
                await sleep(reactor, 0.5)
                assert not bad.connected
                # Not even for a moment: a TCP connect whose TLS handshake then
                # fails never counted as a usable connection.
                assert bad.connections == 0
            finally:
                await good.stopService()
                await bad.stopService()

        run(go)
    finally:
        server.stop(kill=True)
