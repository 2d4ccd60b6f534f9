"""The Lua scripts that change the cluster's shared state in Redis.

Each runs atomically on the Redis server (``EVALSHA``; redis-py loads it with
``SCRIPT LOAD`` and again on ``NOSCRIPT``), reads Redis's own clock (``TIME``:
every node's leases are scored on one clock) and first drops the slots whose
lease ran out, so a node that died frees its slots at the first call past its
lease, whoever makes it. What a call changed is told to every node on one
channel (``PUBLISH``, one message a call), which the nodes' local copies of
the table follow.

Keys, all under ``filedock:`` (standalone Redis: the scripts name their keys):

- ``names``: the last number given (names are never reused);
- ``slots``: sorted set, number -> when its lease ends (ms, Redis time);
- ``rows``: hash, number -> ``name TAB node TAB address TAB accepted-ms``;
- ``owner`` / ``source``: hash, number -> the node / source group holding it;
- ``per-source``: hash, source group -> slots it holds;
- ``finished``: hash, number -> when it finished (ms: its end, or the call
  that found its lease run out); ``history``: list of
  finished numbers, oldest first, at most ``--history`` long;
- ``nodes``: sorted set, node -> when its own lease ends;
- ``settling``: set for 1.5 s (lease/3 + 0.5 s if shorter) when a node found
  Redis emptied under it: no new slot is given meanwhile.

Messages on ``filedock:events``, one line per change: ``c TAB number TAB name
TAB node TAB address TAB accepted`` (a slot taken) and ``f TAB number TAB
finished [TAB dropped…]`` (a slot freed, and the finished rows that fell out
of the history).
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
local SETTLING = P .. 'settling'
local history = tonumber(ARGV[1])
local lease = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

-- What a call changed, told to every node in one message at its end, a line each.
local events = {}
local function publish()
  if #events > 0 then
    redis.call('PUBLISH', CHANNEL, table.concat(events, '\\n'))
  end
end

local function release(num)
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
  events[#events + 1] = message
end

-- A slot whose lease ran out (its node died, or was cut off) finishes now.
for _, num in ipairs(redis.call('ZRANGEBYSCORE', SLOTS, '-inf', now)) do
  release(num)
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
  events[#events + 1] = 'c\\t' .. num .. '\\t' .. name .. '\\t' .. node .. '\\t'
    .. address .. '\\t' .. accepted
end

-- A node that knows a number finds no count at all: this Redis lost
-- everything (restarted without persistence). A restart broke every node's
-- connection, so each is renewing every half second and tells its slots again
-- within one of Redis being back; until then a new slot could take one of
-- theirs, past the cap: none is given (SETTLING, which expires by itself).
local function emptied_under(floor)
  if floor > 0 and redis.call('EXISTS', NAMES) == 0 then
    redis.call('SET', SETTLING, now, 'PX', math.min(math.floor(lease / 3), 1000) + 500)
  end
end

local function keep_names_above(top)
  emptied_under(top)
  if tonumber(redis.call('GET', NAMES) or '0') < top then
    redis.call('SET', NAMES, top)
  end
end
""".replace("@PREFIX@", PREFIX).replace("@CHANNEL@", CHANNEL)

# Every change a node has for Redis at one moment, in one call (while one is in
# flight, the node gathers the next): ARGV[3] the cap, ARGV[4] the node,
# ARGV[5] the highest number it knows (a Redis restarted empty must not give
# it again), ARGV[6..8] how many ends, slots and names follow, in that order:
#
# - an end: number. Only the node holding the slot frees it (one freed
#   already is left alone: a retried call ends nothing twice).
# - a slot at HELLO: number, name, address, source, its source's cap (0:
#   none). The number is the connection's id: a call retried after a timeout
#   finds the slot it took and answers the same.
# - a name at NAME: source, its source's cap. A refused connection takes no
#   number.
#
# Ends go first, so the slots they free are there for the rest. Answers, flat:
# per slot two numbers, {1, accepted-ms}, {-1, 0} (every slot taken), {-2, 0}
# (its source's cap), {-3, 0} (the slot it took is gone already), {-4, 0}
# (Redis lost everything a moment ago: the nodes are telling their slots
# again); then per name its number, -1 (every slot taken) or -2 (its source's
# cap).
CHANGES = (
    _COMMON
    + """
local cap, node = tonumber(ARGV[3]), ARGV[4]
keep_names_above(tonumber(ARGV[5]))
local ends, slots, names = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local i = 9
for _ = 1, ends do
  local num = ARGV[i]
  i = i + 1
  if redis.call('HGET', OWNER, num) == node and redis.call('ZSCORE', SLOTS, num) then
    release(num)
  end
end
local answers = {}
local admitted = false
local function admit(num, name, address, source, limit)
  if redis.call('ZSCORE', SLOTS, num) then
    local row = redis.call('HGET', ROWS, num)
    return 1, tonumber(string.match(row, '([^\\t]*)$'))
  end
  if redis.call('HEXISTS', FINISHED, num) == 1 then
    return -3, 0
  end
  if redis.call('EXISTS', SETTLING) == 1 then
    return -4, 0
  end
  if redis.call('ZCARD', SLOTS) >= cap then
    return -1, 0
  end
  if limit > 0 and held_by(source) >= limit then
    return -2, 0
  end
  record(num, name, node, address, source, now)
  admitted = true
  return 1, now
end
for _ = 1, slots do
  local num, name, address, source = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local code, accepted = admit(num, name, address, source, tonumber(ARGV[i + 4]))
  answers[#answers + 1] = code
  answers[#answers + 1] = accepted
  i = i + 5
end
if admitted then
  redis.call('ZADD', NODES, now + lease, node)
end
if names > 0 then
  local taken = redis.call('ZCARD', SLOTS)
  local last = tonumber(redis.call('GET', NAMES) or '0')
  for _ = 1, names do
    local source, limit = ARGV[i], tonumber(ARGV[i + 1])
    i = i + 2
    if taken >= cap then
      answers[#answers + 1] = -1
    elseif limit > 0 and held_by(source) >= limit then
      answers[#answers + 1] = -2
    else
      last = last + 1
      answers[#answers + 1] = last
    end
  end
  redis.call('SET', NAMES, last)
end
publish()
return answers
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
publish()
return answers
"""
)

# The whole table, for a node's copy when it (re)subscribes: answers
# {rows as a flat hash, finished as a flat hash}.
TABLE = (
    _COMMON
    + """
publish()
return {redis.call('HGETALL', ROWS), redis.call('HGETALL', FINISHED)}
"""
)
