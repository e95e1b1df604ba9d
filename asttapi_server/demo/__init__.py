"""The embedded demo PBX: a SIMULATED Asterisk speaking real AMI on loopback.

It is the newcomer's first run (``twistd -n asttapi`` with no AMI host) and
the fake PBX of the integration tests. Public API (details in :mod:`asttapi_server.demo.server`)::

    from asttapi_server.demo import DemoPBX, Timing, start_demo_pbx

Modules: ``channels`` (header layouts copied from real Asterisk 22 captures),
``scenarios`` (the manual's call flows), ``engine`` (channels, flows, what the
actions do), ``server`` (the AMI protocol and the DemoPBX service).
"""

from asttapi_server.demo.server import DemoPBX, DemoPBXService, start_demo_pbx
from asttapi_server.demo.scenarios import Timing

__all__ = ["DemoPBX", "DemoPBXService", "Timing", "start_demo_pbx"]
