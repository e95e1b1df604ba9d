"""The Lua scripts: every lease operation and every fenced write, each atomic in Redis.

A *fenced* script starts with :data:`FENCE`: ``KEYS[1]`` is the PBX's lease
key and ``ARGV[1]`` the caller's tenure (``"TOKEN HOLDER"``, see
:class:`.lease.Tenure`); unless the lease key holds exactly that value, the
script writes nothing and answers ``-STALE ...``, which the adapter raises as
:class:`asttapi_server.errors.StaleLease`. The check and the write run in
one script, so nothing can come between them: a node that lost its lease
(expired while it was stopped, or taken over) can no longer append an event,
save a call, claim a request or a piece of work.

Times that matter across nodes (a request's expiry, the log's age limit)
are read from Redis's own clock (``TIME``), never from a node's.

Pure module: the sources and their names; :class:`.client.Script` runs them.
"""

from __future__ import annotations

import hashlib

__all__ = ["Script", "FENCE", "ACQUIRE", "RENEW", "RELEASE", "APPEND", "START", "CLAIM", "ANSWER", "ORPHAN", "ONCE",
           "SAVE_CALLS", "ALL"]

class Script:
    """A Lua script run by EVALSHA (loaded by EVAL the first time a server lacks it)."""

    __slots__ = ("name", "source", "sha")

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source
        self.sha = hashlib.sha1(source.encode("utf-8")).hexdigest()

    def __repr__(self) -> str:
        return f"Script({self.name!r})"


#: The first lines of every fenced script (see the module docstring).
FENCE = """
local held = redis.call('GET', KEYS[1])
if held ~= ARGV[1] then
  return redis.error_reply('STALE lease ' .. KEYS[1] .. ' is held by ' .. tostring(held) .. ', not by ' .. ARGV[1])
end
"""

_NOW_MS = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

#: KEYS lease, token; ARGV holder, ttl_ms, floor -> {1, "TOKEN HOLDER", ttl_ms} | {0, current value, pttl_ms}.
#: The token is one more than both the counter and ``floor`` (the highest token the caller has
#: seen), so tokens keep growing even after Redis lost the counter.
ACQUIRE = Script("acquire", """
local held = redis.call('GET', KEYS[1])
if held then
  return {0, held, redis.call('PTTL', KEYS[1])}
end
local token = redis.call('INCR', KEYS[2])
local floor = tonumber(ARGV[3])
if token <= floor then
  token = floor + 1
  redis.call('SET', KEYS[2], string.format('%d', token))
end
local value = string.format('%d', token) .. ' ' .. ARGV[1]
redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
return {1, value, tonumber(ARGV[2])}
""")

#: KEYS lease; ARGV tenure, ttl_ms -> {1} | {0, current value or ""}.
RENEW = Script("renew", """
local held = redis.call('GET', KEYS[1])
if held == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1}
end
return {0, held or ''}
""")

#: KEYS lease; ARGV tenure -> 1 released | 0 not ours.
RELEASE = Script("release", """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
""")

#: Fenced. KEYS lease, events, log, seq; ARGV tenure, batch id, maxlen, max_age_ms, token,
#: then (kind, data) pairs -> the seqs given, in order. A batch id equal to the last one applied
#: (a retry after a lost reply) answers the seqs it got then and appends nothing.
APPEND = Script("append", FENCE + _NOW_MS + """
local log = redis.call('HMGET', KEYS[3], 'seq', 'batch', 'seqs')
if log[2] == ARGV[2] then
  return cjson.decode(log[3])
end
local prev = log[1] or '0'
local seqs = {}
for i = 6, #ARGV, 2 do
  local seq = string.format('%d', redis.call('INCR', KEYS[4]))
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 's', seq, 'p', prev, 't', ARGV[5],
             'k', ARGV[i], 'd', ARGV[i + 1])
  prev = seq
  seqs[#seqs + 1] = tonumber(seq)
end
local age = tonumber(ARGV[4])
if age > 0 then
  local minid = now_ms() - age
  if minid > 0 then
    redis.call('XTRIM', KEYS[2], 'MINID', '~', string.format('%d', minid))
  end
end
redis.call('HSET', KEYS[3], 'seq', prev, 'batch', ARGV[2], 'seqs', cjson.encode(seqs))
return seqs
""")

#: KEYS seq, then for each PBX its events and log keys -> {seq, id1, last1, id2, last2, ...}: where
#: a reader starting now begins (the last entry's ID, "0-0" for none) and the seq of each PBX's
#: last entry, all at one instant.
START = Script("start", """
local out = {redis.call('GET', KEYS[1]) or '0'}
for i = 2, #KEYS, 2 do
  local last = redis.call('XREVRANGE', KEYS[i], '+', '-', 'COUNT', 1)
  out[#out + 1] = last[1] and last[1][1] or '0-0'
  out[#out + 1] = redis.call('HGET', KEYS[i + 1], 'seq') or '0'
end
return out
""")

#: Fenced. KEYS lease, claim; ARGV tenure, request time (ms, from its stream ID), ttl_ms, keep_ms
#: -> "claimed" | "expired" | the claim's value (claimed before, or "answered").
CLAIM = Script("claim", FENCE + _NOW_MS + """
if now_ms() > tonumber(ARGV[2]) + tonumber(ARGV[3]) then
  return 'expired'
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[4]) then
  return 'claimed'
end
return redis.call('GET', KEYS[2]) or 'expired'
""")

#: KEYS claim, replies; ARGV tenure, request id, status, body, maxlen -> 1 sent | 0 not our claim.
#: Not fenced by the lease: an action that was sent has an answer worth giving even if the lease
#: was lost since; but only while the claim is ours (a successor may have answered it already).
ANSWER = Script("answer", """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], 'answered', 'KEEPTTL')
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 'id', ARGV[2], 'st', ARGV[3], 'b', ARGV[4])
return 1
""")

#: Fenced. KEYS lease, claim, replies; ARGV tenure, request id, body, maxlen
#: -> "orphaned" (answered with ``body``) | "answered" (it was) | "unclaimed" (nobody took it).
ORPHAN = Script("orphan", FENCE + """
local claim = redis.call('GET', KEYS[2])
if not claim then
  return 'unclaimed'
end
if claim == 'answered' then
  return 'answered'
end
redis.call('SET', KEYS[2], 'answered', 'KEEPTTL')
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 'id', ARGV[2], 'st', 'error', 'b', ARGV[3])
return 'orphaned'
""")

#: Fenced. KEYS lease, once; ARGV tenure, keep_ms -> 1 first claim | 0 claimed before.
ONCE = Script("once", FENCE + """
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
return 0
""")

#: Fenced. KEYS lease, calls; ARGV tenure, header JSON, n, then n (handle, record JSON) pairs,
#: then handles to delete -> n.
SAVE_CALLS = Script("save_calls", FENCE + """
redis.call('HSET', KEYS[2], '_head', ARGV[2])
local n = tonumber(ARGV[3])
for i = 0, n - 1 do
  redis.call('HSET', KEYS[2], ARGV[4 + 2 * i], ARGV[5 + 2 * i])
end
for i = 4 + 2 * n, #ARGV do
  redis.call('HDEL', KEYS[2], ARGV[i])
end
return n
""")

ALL = (ACQUIRE, RENEW, RELEASE, APPEND, START, CLAIM, ANSWER, ORPHAN, ONCE, SAVE_CALLS)
