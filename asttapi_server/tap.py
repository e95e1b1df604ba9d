"""twistd glue: ``twistd -n asttapi [--config FILE] [--ami-host HOST] ...``.

:class:`Options` parses the flags and loads the configuration while twistd is
still parsing its command line, so a bad file stops start-up before anything
runs, with one line on stderr and exit status 1 (``SystemExit`` with a
message): no usage dump, no traceback. Flags win over the file.
:func:`makeService` hands the :class:`~asttapi_server.config.Config` to
:func:`asttapi_server.service.make_service`; what that refuses (a non-loopback
``listen`` without ``[users]``, a plugin's bad settings) ends the same way,
and a client port that cannot be bound ends start-up with one line too
(:class:`asttapi_server.listener.StartupError`), daemon or not.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import IService
from twisted.logger import Logger
from twisted.python import usage

from asttapi_server.config import Config, load_config
from asttapi_server.errors import AstTapiError, ConfigError


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Serve Asterisk's TAPIEVENT dialplan signalling to CRM and desktop clients as "
        "JSON-RPC. Every option can also be set in the --config file; a flag wins over "
        "the file. With no AMI host anywhere it runs on the embedded demo PBX (a simulation)."
    )

    optParameters = [
        ["config", "c", None, "TOML configuration file (see asttapi.example.toml)."],
        ["ami-host", None, None, "Asterisk host to connect to (no host: demo PBX)."],
        ["ami-port", None, None, "Asterisk Manager Interface port. [default: 5038]"],
        ["ami-username", None, None, "AMI username from manager.conf. [default: asttapi]"],
        ["ami-secret", None, None, "AMI secret from manager.conf. Shows in `ps`: prefer "
         "[ami] secret_file or $ASTTAPI_AMI_SECRET."],
        ["demo-pbxs", None, None, "Run this many demo PBXs (1-5), each with lines of its own, "
         "to see several PBXs in one server. [default: 1]"],
    ]
    optFlags = [
        ["demo", None, "Use the embedded demo PBX (a simulation) even if an AMI host is set."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []
        self["web-listen"] = []
        self.config: Config | None = None

    def opt_listen(self, endpoint: str) -> None:
        """Client endpoint, a Twisted server endpoint string; may be repeated.
        [default: tcp:5039:interface=127.0.0.1]"""
        self["listen"].append(endpoint)

    def opt_web_listen(self, endpoint: str) -> None:
        """Browser page and WebSocket endpoint (ssl: for https/wss); may be repeated.
        [default in demo mode: tcp:8080:interface=127.0.0.1]"""
        self["web-listen"].append(endpoint)

    def overrides(self) -> dict[str, Any]:
        """The dotted config keys the flags set (flags not given are left out)."""
        out: dict[str, Any] = {
            "ami.host": self["ami-host"],
            "ami.port": self["ami-port"],
            "ami.username": self["ami-username"],
            "ami.secret": self["ami-secret"],
            "server.listen": list(self["listen"]) or None,
            "web.listen": list(self["web-listen"]) or None,
            "demo": True if self["demo"] else None,
            "demo_pbxs": self["demo-pbxs"],
        }
        return {k: v for k, v in out.items() if v is not None}

    def postOptions(self) -> None:
        try:
            self.config = load_config(self["config"], self.overrides())
        except ConfigError as exc:
            # SystemExit with a message: Python prints it to stderr, exits 1.
            raise SystemExit(f"asttapi: {exc}") from None


log = Logger()


def makeService(options: Options) -> IService:
    from asttapi_server.service import make_service

    assert options.config is not None, "Options.parseOptions() was not called"
    if options["ami-secret"] is not None:
        # twistd buffers this until its log starts, so it lands in the log file too.
        log.warn(
            "--ami-secret is visible to every local user in `ps` and /proc; give the secret in "
            "[ami] secret_file = \"/etc/asttapi/ami.secret\" (mode 0600) or in $ASTTAPI_AMI_SECRET instead"
        )
    try:
        app = make_service(options.config)
    except AstTapiError as exc:
        # A refusal found while building (listen on 0.0.0.0 without [users],
        # a plugin that will not configure): one line, exit 1, before twistd
        # daemonizes or writes a pidfile.
        raise SystemExit(f"asttapi: {exc}") from None
    # SIGHUP (`kill -HUP`, `systemctl reload`, `asttapi reload`) reads the file
    # again with the same command-line flags on top (docs/operations.md).
    path, overrides = options["config"], options.overrides()
    app.config_loader = lambda: load_config(path, overrides)
    app.reload_on_sighup = True
    app.tune_gc = True
    return app
