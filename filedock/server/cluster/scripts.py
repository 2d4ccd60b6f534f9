"""The Lua scripts that change the cluster's shared state in Redis, one per change.

Each runs atomically on the Redis server (``EVALSHA``; redis-py loads it with
``SCRIPT LOAD`` and again on ``NOSCRIPT``), reads Redis's own clock (``TIME``:
every node's leases are scored on one clock) and first drops the slots whose
lease ran out, so a node that died frees its slots at the first call past its
lease, whoever makes it. Every change is told to every node on one channel
(``PUBLISH``), which the nodes' local copies of the table follow.

Keys, all under ``filedock:`` (standalone Redis: the scripts name their keys):

- ``names``: the last number given (names are never reused);
- ``slots``: sorted set, number -> when its lease ends (ms, Redis time);
- ``rows``: hash, number -> ``name TAB node TAB address TAB accepted-ms``;
- ``owner`` / ``source``: hash, number -> the node / source group holding it;
- ``per-source``: hash, source group -> slots it holds;
- ``finished``: hash, number -> when it finished (ms: its end, or when its
  lease ran out); ``history``: list of
  finished numbers, oldest first, at most ``--history`` long;
- ``nodes``: sorted set, node -> when its own lease ends.

Messages on ``filedock:events``: ``c TAB number TAB name TAB node TAB address
TAB accepted`` (a slot taken) and ``f TAB number TAB finished [TAB dropped…]``
(a slot freed, and the finished rows that fell out of the history).
"""

from __future__ import annotations

PREFIX = "filedock:"
CHANNEL = PREFIX + "events"

# Every script's ARGV[1] is the history bound and ARGV[2] the lease in ms.
_COMMON = """
local P = '@PREFIX@'
local SLOTS, ROWS, OWNER, SOURCE = P .. 'slots', P .. 'rows', P .. 'owner', P .. 'source'
local PER_SOURCE, FINISHED, HISTORY = P .. 'per-source', P .. 'finished', P .. 'history'
local NAMES, NODES, CHANNEL = P .. 'names', P .. 'nodes', '@CHANNEL@'
local history = tonumber(ARGV[1])
local lease = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

local function release(num, ended)
  redis.call('ZREM', SLOTS, num)
  redis.call('HDEL', OWNER, num)
  local source = redis.call('HGET', SOURCE, num)
  if source then
    redis.call('HDEL', SOURCE, num)
    if redis.call('HINCRBY', PER_SOURCE, source, -1) <= 0 then
      redis.call('HDEL', PER_SOURCE, source)
    end
  end
  redis.call('HSET', FINISHED, num, now)
  redis.call('RPUSH', HISTORY, num)
  local message = 'f\\t' .. num .. '\\t' .. now
  while redis.call('LLEN', HISTORY) > history do
    local old = redis.call('LPOP', HISTORY)
    redis.call('HDEL', ROWS, old)
    redis.call('HDEL', FINISHED, old)
    message = message .. '\\t' .. old
  end
  redis.call('PUBLISH', CHANNEL, message)
end

-- A slot whose lease ran out (its node died, or was cut off) finished then.
local expired = redis.call('ZRANGEBYSCORE', SLOTS, '-inf', now, 'WITHSCORES')
for i = 1, #expired, 2 do
  release(expired[i], expired[i + 1])
end

local function held_by(source)
  return tonumber(redis.call('HGET', PER_SOURCE, source) or '0')
end

local function record(num, name, node, address, source, accepted)
  redis.call('ZADD', SLOTS, now + lease, num)
  redis.call('HSET', ROWS, num, name .. '\\t' .. node .. '\\t' .. address .. '\\t' .. accepted)
  redis.call('HSET', OWNER, num, node)
  redis.call('HSET', SOURCE, num, source)
  redis.call('HINCRBY', PER_SOURCE, source, 1)
  redis.call('PUBLISH', CHANNEL, 'c\\t' .. num .. '\\t' .. name .. '\\t' .. node .. '\\t'
    .. address .. '\\t' .. accepted)
end

local function keep_names_above(top)
  if tonumber(redis.call('GET', NAMES) or '0') < top then
    redis.call('SET', NAMES, top)
  end
end
""".replace("@PREFIX@", PREFIX).replace("@CHANNEL@", CHANNEL)

# NAME for a batch of new connections, in order: ARGV[3] the cap, ARGV[4] the
# highest number this node knows (a Redis restarted empty must not give it
# again), then per connection its source group and that group's cap (0: none).
# For each: its number, -1 (every slot taken) or -2 (its source's cap); a
# refused connection takes no number.
TAKE = (
    _COMMON
    + """
local cap = tonumber(ARGV[3])
keep_names_above(tonumber(ARGV[4]))
local taken = redis.call('ZCARD', SLOTS)
local last = tonumber(redis.call('GET', NAMES) or '0')
local answers = {}
for i = 5, #ARGV, 2 do
  local limit = tonumber(ARGV[i + 1])
  if taken >= cap then
    answers[#answers + 1] = -1
  elseif limit > 0 and held_by(ARGV[i]) >= limit then
    answers[#answers + 1] = -2
  else
    last = last + 1
    answers[#answers + 1] = last
  end
end
redis.call('SET', NAMES, last)
return answers
"""
)

# A slot at HELLO: ARGV[3] the cap, ARGV[4] its source's cap (0: none), then
# number, name, node, address, source. The number is the connection's id: a
# call retried after a timeout finds the slot it took and answers the same.
# Answers {1, accepted-ms}, {-1} (every slot taken), {-2} (its source's cap),
# {-3} (the slot it took is gone already).
ADMIT = (
    _COMMON
    + """
local cap, limit = tonumber(ARGV[3]), tonumber(ARGV[4])
local num, name, node, address, source = ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
if redis.call('ZSCORE', SLOTS, num) then
  local row = redis.call('HGET', ROWS, num)
  return {1, tonumber(string.match(row, '([^\\t]*)$'))}
end
if redis.call('HEXISTS', FINISHED, num) == 1 then
  return {-3}
end
if redis.call('ZCARD', SLOTS) >= cap then
  return {-1}
end
if limit > 0 and held_by(source) >= limit then
  return {-2}
end
record(num, name, node, address, source, now)
redis.call('ZADD', NODES, now + lease, node)
return {1, now}
"""
)

# The end of a session: ARGV[3] number, ARGV[4] node. Only the node holding the
# slot frees it. Answers 1, or 0 (not held by that node: freed already).
FINISH = (
    _COMMON
    + """
local num, node = ARGV[3], ARGV[4]
if redis.call('HGET', OWNER, num) ~= node or not redis.call('ZSCORE', SLOTS, num) then
  return 0
end
release(num, now)
return 1
"""
)

# A node's lease, every lease/3: ARGV[3] node, ARGV[4] the highest number it
# knows, then per slot it holds: number, name, address, source, accepted-ms.
# A slot still held is renewed; one whose row Redis lost (restarted empty) is
# recorded again; one freed meanwhile (its lease ran out) is lost. Answers
# {nodes alive, lost numbers…}.
RENEW = (
    _COMMON
    + """
local node = ARGV[3]
keep_names_above(tonumber(ARGV[4]))
redis.call('ZADD', NODES, now + lease, node)
redis.call('ZREMRANGEBYSCORE', NODES, '-inf', now)
local answers = {redis.call('ZCARD', NODES)}
for i = 5, #ARGV, 5 do
  local num = ARGV[i]
  if redis.call('ZSCORE', SLOTS, num) and redis.call('HGET', OWNER, num) == node then
    redis.call('ZADD', SLOTS, 'XX', now + lease, num)
  elseif redis.call('HEXISTS', ROWS, num) == 0 then
    record(num, ARGV[i + 1], node, ARGV[i + 2], ARGV[i + 3], ARGV[i + 4])
  else
    answers[#answers + 1] = tonumber(num)
  end
end
return answers
"""
)

# The whole table, for a node's copy when it (re)subscribes: answers
# {rows as a flat hash, finished as a flat hash}.
TABLE = (
    _COMMON
    + """
return {redis.call('HGETALL', ROWS), redis.call('HGETALL', FINISHED)}
"""
)
