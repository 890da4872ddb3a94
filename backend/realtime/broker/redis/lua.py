"""The Lua scripts of the Redis broker: every read-modify-write on shared state is one script.

Payloads published to a room's channel are built by the helpers :data:`.wire.LUA` generates
(the same constants :mod:`.wire` parses with).

Keys of one room share the hash tag ``{room}`` (``<prefix>:{<room>}:<name>``), so each script
touches one slot. Scripts read the server clock with ``TIME``, never an instance's clock, so
expiries agree across instances. docs/WEBSOCKET_INFRASTRUCTURE.md describes each contract.
"""

from __future__ import annotations

from realtime.broker.redis.wire import LUA as _WIRE

_ENSURE_EPOCH = (
    _WIRE
    + """
local function ensure_epoch(meta, log, candidate)
  local epoch = redis.call('HGET', meta, 'epoch')
  if not epoch then
    epoch = candidate
    redis.call('HSET', meta, 'epoch', epoch, 'offset', 0)
    redis.call('DEL', log)
  end
  return epoch
end
"""
)

APPEND = (
    _ENSURE_EPOCH
    + """
-- KEYS: meta (hash epoch/offset), log (stream), idem (string of this user's client id)
-- ARGV: epoch candidate, frame head (up to "offset":), frame tail (after the epoch),
--       history size, history ttl s, idempotency ttl s, message channel, PUBLISH|SPUBLISH
-- returns {duplicate 0|1, offset, epoch, frame}
local epoch = ensure_epoch(KEYS[1], KEYS[2], ARGV[1])
local seen = redis.call('GET', KEYS[3])
if seen then
  local seen_epoch, seen_offset, seen_frame = wire_parse_head(seen)
  if seen_epoch == epoch then
    return {1, seen_offset, epoch, seen_frame}
  end
end
local offset = redis.call('HINCRBY', KEYS[1], 'offset', 1)
local frame = ARGV[2] .. offset .. ',"epoch":"' .. epoch .. '"' .. ARGV[3]
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[4], offset .. '-0', 'f', frame)
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('EXPIRE', KEYS[2], ARGV[5])
redis.call('SET', KEYS[3], wire_head(epoch, offset) .. frame, 'EX', ARGV[6])
redis.call(ARGV[8], ARGV[7], wire_message(epoch, offset, frame))
return {0, offset, epoch, frame}
"""
)

HISTORY = (
    _ENSURE_EPOCH
    + """
-- KEYS: meta, log
-- ARGV: epoch candidate, since offset, client epoch ('' for none), history ttl s,
--       want frames (0 = only epoch and offset)
-- returns {recovered 0|1, epoch, last offset, offset1, frame1, offset2, frame2, ...}
local epoch = ensure_epoch(KEYS[1], KEYS[2], ARGV[1])
local last = tonumber(redis.call('HGET', KEYS[1], 'offset'))
redis.call('EXPIRE', KEYS[1], ARGV[4])
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
local out = {0, epoch, last}
if ARGV[5] == '0' then
  return out
end
local since = tonumber(ARGV[2])
local entries
if ARGV[3] == epoch and since <= last then
  if since == last then
    out[1] = 1
    return out
  end
  entries = redis.call('XRANGE', KEYS[2], (since + 1) .. '-0', '+')
  if #entries > 0 and entries[1][1] == (since + 1) .. '-0' then
    out[1] = 1
  else
    entries = nil
  end
end
if not entries then
  entries = redis.call('XRANGE', KEYS[2], '-', '+')
end
for _, entry in ipairs(entries) do
  local id = entry[1]
  out[#out + 1] = tonumber(string.sub(id, 1, string.find(id, '-', 1, true) - 1))
  out[#out + 1] = entry[2][2]
end
return out
"""
)

_PRESENCE_LIB = (
    _WIRE
    + """
-- KEYS: expiry (zset conn -> expiry ms), conns (hash conn -> user id),
--       counts (hash user id -> live connections), names (hash user id -> name),
--       leaves (hash user id -> encoded leave frame): all in the room's slot
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- remove one connection; returns the leave frame when its user went offline, else false
local function remove(conn)
  if redis.call('ZREM', KEYS[1], conn) == 0 then
    return false
  end
  local user = redis.call('HGET', KEYS[2], conn)
  redis.call('HDEL', KEYS[2], conn)
  if not user then
    return false
  end
  if redis.call('HINCRBY', KEYS[3], user, -1) > 0 then
    return false
  end
  local frame = redis.call('HGET', KEYS[5], user)
  redis.call('HDEL', KEYS[3], user)
  redis.call('HDEL', KEYS[4], user)
  redis.call('HDEL', KEYS[5], user)
  return frame or ''
end

local function drop_if_empty()
  if redis.call('ZCARD', KEYS[1]) == 0 then
    redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
  end
end
"""
)

PRESENCE_JOIN = (
    _PRESENCE_LIB
    + """
-- ARGV: entry ttl ms, key ttl s, room (unused), then per connection: conn, user id, name,
--       leave frame
-- adds or refreshes each entry; returns the user ids that came online
local expires = now_ms() + tonumber(ARGV[1])
local online = {}
for i = 4, #ARGV, 4 do
  local conn, user = ARGV[i], ARGV[i + 1]
  if redis.call('ZADD', KEYS[1], expires, conn) == 1 then
    redis.call('HSET', KEYS[2], conn, user)
    redis.call('HSET', KEYS[4], user, ARGV[i + 2])
    redis.call('HSET', KEYS[5], user, ARGV[i + 3])
    if redis.call('HINCRBY', KEYS[3], user, 1) == 1 then
      online[#online + 1] = user
    end
  end
end
for k = 1, 5 do
  redis.call('EXPIRE', KEYS[k], ARGV[2])
end
return online
"""
)

PRESENCE_LEAVE = (
    _PRESENCE_LIB
    + """
-- ARGV: room (unused), conn; returns 1 when the connection's user went offline in the room
local went = remove(ARGV[2])
drop_if_empty()
if went then
  return 1
end
return 0
"""
)

PRESENCE_REAP = (
    _PRESENCE_LIB
    + """
-- ARGV: room (unused), events channel, PUBLISH|SPUBLISH
-- removes expired entries, publishes one leave per user who went offline; returns their count
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms())
local gone = 0
for _, conn in ipairs(expired) do
  local frame = remove(conn)
  if frame then
    gone = gone + 1
    if frame ~= '' then
      redis.call(ARGV[3], ARGV[2], wire_presence(frame))
    end
  end
end
drop_if_empty()
return gone
"""
)
