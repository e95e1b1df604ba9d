"""More than one server node: leases, the event log, forwarded requests and call state in Redis.

Pure parts (sans-IO, ``now`` in, effects out): :mod:`.resp` (the Redis wire),
:mod:`.address` (the ``[cluster] redis`` URL), :mod:`.keys` (key names),
:mod:`.scripts` (the Lua scripts), :mod:`.lease` (the holder's state machine),
:mod:`.entries` (what a stream entry holds), :mod:`.follow` (ordering the
event log into one seq) and :mod:`.forward` (requests in flight and their
timeouts). Thin Twisted adapters: :mod:`.client` (the connection),
:mod:`.node` (leases, log, requests, call state and claims carried out).
The design is docs/scaling.md.
"""
