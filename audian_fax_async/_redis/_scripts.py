"""The Lua scripts behind the Redis limiter and idempotency store, and the key layout.

Each script is one atomic step on the server. Times come from ``redis.call('TIME')`` inside the
script, never from a client clock, so hosts whose clocks disagree still agree on every lease. Since
Redis 5 scripts replicate their effects, not their source, so calling ``TIME`` before a write is
allowed and replicas see the same scores.

An account's keys share one hash tag, ``{account}``, so the scripts also run on Redis Cluster::

    <prefix>{<account>}:holders   sorted set: member = holder token, score = lease end (ms, Redis time)
    <prefix>{<account>}:wake      list: one entry pushed per released slot, popped by a waiter (BLPOP)
    <prefix>{<account>}:meta      hash: run_id, quiet_until (ms), highest, total
"""

from __future__ import annotations

import hashlib

from attrs import frozen

__all__ = [
    "ACQUIRE",
    "CLAIM",
    "COMPLETE",
    "INSPECT",
    "RELEASE",
    "RELEASE_CLAIM",
    "RENEW",
    "AccountKeys",
    "account_keys",
]

# Redis time in milliseconds, as a Lua number (exact: well below 2^53).
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

ACQUIRE = (
    _NOW
    + """
-- KEYS: holders, meta. ARGV: token, limit, lease_ms, quiet_ms (at most lease_ms).
-- Returns {admitted (1/0), holders now, ms until the earliest change worth polling for}.
local holders, meta = KEYS[1], KEYS[2]
local token, limit, lease = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])

-- Holders admitted by an earlier Redis server (before a restart, with or without its data restored)
-- may still be downloading: each stops when it finds its lease gone at its next renewal, or at the
-- latest when its lease would have ended unrenewed, before this server's start + lease. So the
-- first time an account is seen by this server (a new run_id), nobody is admitted until the server
-- has been up for quiet_ms (at most the lease; a shorter one counts on prompt renewals). A first
-- use on a server up for longer than that costs nothing. Without INFO (a managed Redis may refuse
-- it in scripts) a missing record is the sign, and the wait is quiet_ms from now.
local quiet = tonumber(redis.call('HGET', meta, 'quiet_until') or '-1')
local seen_run = redis.call('HGET', meta, 'run_id')
local info = redis.pcall('INFO', 'server')
local run, up = nil, nil
if type(info) == 'string' then
  run = string.match(info, 'run_id:(%x+)')
  up = tonumber(string.match(info, 'uptime_in_seconds:(%d+)'))
end
if (run and run ~= seen_run) or (not run and not seen_run) then
  local wait = tonumber(ARGV[4])
  if up then
    -- uptime_in_seconds is the difference of two truncated wall-clock seconds: it can read 1 after
    -- 0.01 s of real uptime (it read 1 after 0.16 s here). One second less is the uptime's floor.
    wait = math.max(0, wait - math.max(0, up - 1) * 1000)
  end
  quiet = now + wait
  redis.call('HSET', meta, 'quiet_until', quiet, 'run_id', run or '?')
end
if now < quiet then
  return {0, 0, quiet - now}
end

redis.call('ZREMRANGEBYSCORE', holders, '-inf', now)
if redis.call('ZSCORE', holders, token) then
  -- A retry of an attempt whose answer was lost: the slot is already ours.
  redis.call('ZADD', holders, now + lease, token)
  return {1, redis.call('ZCARD', holders), 0}
end
local n = redis.call('ZCARD', holders)
if n >= limit then
  local first = redis.call('ZRANGE', holders, 0, 0, 'WITHSCORES')
  return {0, n, tonumber(first[2]) - now}
end
redis.call('ZADD', holders, now + lease, token)
n = n + 1
redis.call('HINCRBY', meta, 'total', 1)
if n > tonumber(redis.call('HGET', meta, 'highest') or '0') then
  redis.call('HSET', meta, 'highest', n)
end
return {1, n, 0}
"""
)

RENEW = (
    _NOW
    + """
-- KEYS: holders. ARGV: token, lease_ms. Returns 1 if the lease was extended, 0 if it is gone.
-- An expired lease is never revived: its holder may already have been counted out.
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then
  return 0
end
if tonumber(score) <= now then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return 1
"""
)

RELEASE = """
-- KEYS: holders, wake. ARGV: token, limit, wake_ttl_ms. Returns 1 if the token held a slot.
-- One wake entry per freed slot wakes one blocked waiter; the list is capped and expires, so
-- entries nobody waited for only cause a spurious (harmless) retry later.
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
if removed == 1 then
  redis.call('LPUSH', KEYS[2], '1')
  redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[2]) - 1)
  redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[3]))
end
return removed
"""

INSPECT = (
    _NOW
    + """
-- KEYS: holders, meta. Returns {now_ms, highest, total, token1, end1, token2, end2, ...} (live only).
local out = {now, tonumber(redis.call('HGET', KEYS[2], 'highest') or '0'),
             tonumber(redis.call('HGET', KEYS[2], 'total') or '0')}
local live = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf', 'WITHSCORES')
for i = 1, #live do
  out[#out + 1] = live[i]
end
return out
"""
)

# -- the idempotency store ----------------------------------------------------------------------

CLAIM = """
-- KEYS: key. ARGV: token, lease_ms. Returns 1 claimed, 2 done, 3 in flight.
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
if redis.call('GET', KEYS[1]) == 'done' then
  return 2
end
return 3
"""

COMPLETE = """
-- KEYS: key. ARGV: token, ttl_ms. Marks the key done only while the token still holds it.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], 'done', 'PX', ARGV[2])
  return 1
end
return 0
"""

RELEASE_CLAIM = """
-- KEYS: key. ARGV: token. Frees the key only while the token still holds it.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""


@frozen
class AccountKeys:
    """The Redis keys of one account's slots."""

    holders: str
    wake: str
    meta: str


def account_keys(prefix: str, account: str) -> AccountKeys:
    """The keys of ``account`` under ``prefix``, sharing one Redis Cluster hash tag.

    An account name that could break the hash tag (braces) is replaced by its digest.
    """
    if not account or "{" in account or "}" in account:
        account = hashlib.sha256(account.encode()).hexdigest()[:32]
    base = f"{prefix}{{{account}}}"
    return AccountKeys(holders=f"{base}:holders", wake=f"{base}:wake", meta=f"{base}:meta")
