"""Lua run inside Redis, so that each step that must be atomic is one command.

Every script touches only keys of one channel (one hash tag), so it is valid on a Redis
Cluster too. Times come from the Redis server's clock (``TIME``), never a replica's.
"""

from __future__ import annotations

_STORE_AND_PUBLISH = """
local meta, stream = KEYS[1], KEYS[2]
local epoch = redis.call("HGET", meta, "epoch")
if not epoch then
  epoch = ARGV[4]
  redis.call("DEL", stream)
  redis.call("HSET", meta, "epoch", epoch, "top", 0)
end
local top = redis.call("HINCRBY", meta, "top", 1)
local offset = string.format("%d", top)
local frame = ARGV[1] .. ',"offset":' .. offset .. ',"epoch":"' .. epoch .. '"}'
redis.call("XADD", stream, "MAXLEN", ARGV[2], offset .. "-0", "m", frame)
redis.call("PEXPIRE", meta, ARGV[3])
redis.call("PEXPIRE", stream, ARGV[3])
redis.call(ARGV[6], ARGV[5], "#" .. offset .. ":" .. epoch .. ":" .. ARGV[7] .. "\\n" .. frame)
"""

PUBLISH_WITH_HISTORY = (
    """
-- KEYS: meta, stream.
-- ARGV: head, size, ttl_ms, epoch candidate, topic, publish command, published at (us).
"""
    + _STORE_AND_PUBLISH
    + """
return {top, epoch}
"""
)

PUBLISH_WITH_HISTORY_ONCE = (
    """
-- KEYS: meta, stream, idempotency key.
-- ARGV: as PUBLISH_WITH_HISTORY, then the idempotency window (ms).
-- A key seen within the window answers with the first publication's offset and epoch,
-- storing and publishing nothing.
local seen = redis.call("GET", KEYS[3])
if seen then
  local first, first_epoch = string.match(seen, "^(%d+):(.*)$")
  return {first or "0", first_epoch or "", 1}
end
"""
    + _STORE_AND_PUBLISH
    + """
redis.call("SET", KEYS[3], offset .. ":" .. epoch, "PX", ARGV[8])
return {top, epoch, 0}
"""
)

PUBLISH_ONCE = """
-- KEYS: idempotency key. ARGV: envelope, topic, publish command, idempotency window (ms).
-- A channel without history: publish unless the key was seen within the window.
if redis.call("SET", KEYS[1], "", "NX", "PX", ARGV[4]) then
  redis.call(ARGV[3], ARGV[2], ARGV[1])
  return 0
end
return 1
"""

READ_HISTORY = """
-- KEYS: meta, stream. ARGV: epoch candidate, ttl_ms, after (-1: newest), limit (-1: all).
-- Returns {epoch, top, first retained offset, id1, frame1, id2, frame2, ...}.
local meta, stream = KEYS[1], KEYS[2]
local after, limit = tonumber(ARGV[3]), tonumber(ARGV[4])
local epoch = redis.call("HGET", meta, "epoch")
if not epoch then
  epoch = ARGV[1]
  redis.call("DEL", stream)
  redis.call("HSET", meta, "epoch", epoch, "top", 0)
  redis.call("PEXPIRE", meta, ARGV[2])
end
local top = tonumber(redis.call("HGET", meta, "top"))
local first = top + 1
local oldest = redis.call("XRANGE", stream, "-", "+", "COUNT", 1)
if #oldest > 0 then
  first = tonumber(string.match(oldest[1][1], "^%d+"))
end
local entries = {}
if limit ~= 0 then
  if after >= 0 then
    local start = string.format("%d-0", after + 1)
    if limit > 0 then
      entries = redis.call("XRANGE", stream, start, "+", "COUNT", limit)
    else
      entries = redis.call("XRANGE", stream, start, "+")
    end
  elseif limit > 0 then
    entries = redis.call("XREVRANGE", stream, "+", "-", "COUNT", limit)
  end
end
local out = {epoch, top, first}
for _, entry in ipairs(entries) do
  out[#out + 1] = entry[1]
  out[#out + 1] = entry[2][2]
end
return out
"""

_NOW_MS = """
local clock = redis.call("TIME")
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
"""

PRESENCE_ADD = (
    """
-- KEYS: presence hash, expiry zset. ARGV: client, entry, ttl_ms.
"""
    + _NOW_MS
    + """
redis.call("HSET", KEYS[1], ARGV[1], ARGV[2])
redis.call("ZADD", KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
redis.call("PEXPIRE", KEYS[1], 2 * tonumber(ARGV[3]))
redis.call("PEXPIRE", KEYS[2], 2 * tonumber(ARGV[3]))
return 1
"""
)

PRESENCE_REFRESH = (
    """
-- KEYS: presence hash, expiry zset. ARGV: ttl_ms, client1, entry1, client2, entry2, ...
-- Re-adds entries too, so a replica that was paused past the TTL reappears.
"""
    + _NOW_MS
    + """
local expiry = now + tonumber(ARGV[1])
for i = 2, #ARGV, 2 do
  redis.call("HSET", KEYS[1], ARGV[i], ARGV[i + 1])
  redis.call("ZADD", KEYS[2], expiry, ARGV[i])
end
redis.call("PEXPIRE", KEYS[1], 2 * tonumber(ARGV[1]))
redis.call("PEXPIRE", KEYS[2], 2 * tonumber(ARGV[1]))
return 1
"""
)

PRESENCE_READ = (
    """
-- KEYS: presence hash, expiry zset. Drops expired members first.
-- Returns {n_expired, client1, entry1, ..., then the live hash as client, entry pairs}.
"""
    + _NOW_MS
    + """
local expired = redis.call("ZRANGEBYSCORE", KEYS[2], "-inf", now)
local out = {#expired}
for _, client in ipairs(expired) do
  out[#out + 1] = client
  out[#out + 1] = redis.call("HGET", KEYS[1], client) or "{}"
  redis.call("HDEL", KEYS[1], client)
  redis.call("ZREM", KEYS[2], client)
end
local live = redis.call("HGETALL", KEYS[1])
for _, value in ipairs(live) do
  out[#out + 1] = value
end
return out
"""
)
