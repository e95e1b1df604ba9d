"""Each configuration default is written once (issue 25 item 5): in the part that uses it.

``[server]`` and ``[calls]`` defaults in config.py are read from the classes
and signatures that use the values; this test builds each part the way
``from_config`` does and compares, so a default changed in one place only
cannot slip through.
"""

from __future__ import annotations

import inspect

from asttapi_server.clients.auth import LoginLimits
from asttapi_server.clients.hub import Hub
from asttapi_server.clients.limits import ConnectionLimits
from asttapi_server.clients.protocol import ClientFactory
from asttapi_server.clients.session import Session
from asttapi_server.config import CallsConfig, ServerConfig
from asttapi_server.core.model import CallModel


def defaults(fn) -> dict:
    return {name: p.default for name, p in inspect.signature(fn).parameters.items()
            if p.default is not inspect.Parameter.empty}


def test_server_defaults_are_the_client_parts_own():
    server = ServerConfig()
    for key, value in vars(ConnectionLimits()).items():
        assert getattr(server, key) == value, key
    for key, value in vars(LoginLimits()).items():
        if key != "max_tracked":  # not a configuration key
            assert getattr(server, "login_" + key) == value, key
    factory = defaults(ClientFactory.__init__)
    for key in ("max_line_bytes", "send_buffer_bytes", "max_lines_per_session", "request_rate", "request_burst",
                "user_request_rate", "user_request_burst"):
        assert getattr(server, key) == factory[key], key
    hub = defaults(Hub.__init__)
    assert (server.replay_ring, server.replay_ring_bytes) == (hub["ring_size"], hub["ring_bytes"])
    assert server.max_lines_per_session == defaults(Session.__init__)["max_lines"]


def test_calls_defaults_are_the_call_models_own():
    model = defaults(CallModel.__init__)
    calls = CallsConfig()
    for key in ("hangup_grace", "max_age", "linger", "max_calls", "max_lines", "max_field_bytes"):
        assert getattr(calls, key) == model[key], key


def test_the_model_takes_every_calls_key_but_the_store_file():
    import dataclasses

    keys = {f.name for f in dataclasses.fields(CallsConfig)} - {"state_file"}
    assert set(CallsConfig().model_args()) == keys
    assert keys <= set(defaults(CallModel.__init__))
