"""A [metrics] listen endpoint beyond loopback without [users]: refused for what it would show (issue 23)."""

from __future__ import annotations

import pytest


def test_a_metrics_listener_beyond_loopback_without_users_is_refused_for_what_it_would_show():
    from asttapi_server.clients.auth import check_listen_security
    from asttapi_server.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        check_listen_security(["tcp:9150:interface=10.0.0.5"], {}, key="metrics.listen")
    assert str(info.value) == (
        "metrics.listen: 'tcp:9150:interface=10.0.0.5' accepts connections from other machines, but no "
        "[users.NAME] are configured, so anyone could read its metrics and readiness, which a server without "
        "users shows only on this machine; add users with tokens, or listen on interface=127.0.0.1 only")
    with pytest.raises(ConfigError, match="anyone could watch and place calls"):
        check_listen_security(["tcp:5039:interface=10.0.0.5"], {}, key="server.listen")
