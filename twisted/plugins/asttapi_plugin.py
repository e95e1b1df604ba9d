"""twistd dropin: ``twistd -n asttapi`` (options in asttapi_server/tap.py).

No ``__init__.py`` in ``twisted/`` or ``twisted/plugins/``: this directory is
merged into Twisted's own plugin package, never a package of its own.
"""

from twisted.application.service import ServiceMaker

asttapi = ServiceMaker(
    "asttapi",
    "asttapi_server.tap",
    "CTI bridge: Asterisk AMI TAPIEVENTs to JSON-RPC clients (demo PBX if no AMI host)",
    "asttapi",
)
