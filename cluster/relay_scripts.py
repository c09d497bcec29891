"""What a clustered relay keeps in Redis, and the Lua scripts that change it.

Per service (``{prefix}:relay:{service}``):

- ``…:state``, a hash: ``e`` the service's epoch, ``n`` the number of events
  ever published (the service sequence: one order for every event, whatever
  its channels);
- ``…:log``, a stream of the last ~``LOG_SIZE`` events, entry id ``n``, fields
  ``r`` (the record, see :mod:`cluster.relays`) and ``p`` (its placements):
  what a node reads to catch up on what it missed on pub/sub;
- the pub/sub channel ``{prefix}:relay:{service}`` itself, on which every
  publish announces its events to every node.

Per channel:

- ``…:meta:{channel}``, a hash: ``e`` the channel's epoch, ``o`` its last
  offset; it expires ``meta_ttl`` after its last use, and is created (with a
  new random epoch) whenever it is missing, so a lost or expired numbering can
  never be mistaken for the old one;
- ``…:history:{channel}``, a stream of its last ~``history_size`` events,
  entry id = the offset (so recovery is ``XRANGE since+1 +``), fields ``r``
  and ``t`` (Redis's time in ms, for ``history_age``); it expires
  ``history_age`` after the last publish.

One script run does a whole publish atomically (every event of a
``POST /publish`` list, every channel of each event), which is what makes
offsets, the service sequence and the pub/sub order one order.

The publish script refuses to run past a deadline (``STALE``): a command
written to a Redis that was frozen (SIGSTOP, a stalled VM) runs when Redis
wakes up, long after the publisher timed out and reported the publish as
failed. Refusing it keeps "failed" meaning "not published". The deadline is
on Redis's own clock (:attr:`cluster.relays.RelayCluster.skew` is measured at each
reconnection), so nodes' clocks need not agree with Redis's.
"""

from __future__ import annotations

LOG_SIZE = 10_000  # events a node can catch up on after losing pub/sub
META_TTL = 7 * 24 * 3600  # seconds a channel's numbering outlives its last use

# KEYS: service state, service log, then (meta, history) per channel of the publish (each
#       channel once, however many of its events place on it).
# ARGV: pub/sub channel, deadline (ms, Redis clock), a fresh random epoch, history size,
#       history ttl (s), meta ttl (s), log size, event count, then per event: record, the
#       event's channels as numbers into KEYS' channels (1 = the first pair), space-separated.
# Returns the header it published: JSON [service epoch, first sequence number,
#       [[[offset, epoch] per channel] per event]].
# A channel's numbering is read once and written once per publish, not per event: a batch
# of a hundred events on two channels costs two HMGETs, not two hundred HINCRBYs.
PUBLISH = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now > tonumber(ARGV[2]) then
  return redis.error_reply('STALE publish arrived after its deadline')
end
local state = redis.call('HMGET', KEYS[1], 'e', 'n')
local service, n = state[1], tonumber(state[2] or 0)
if not service then
  service, n = ARGV[3], 0
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'e', service)
end
local epochs, offsets = {}, {}
for c = 1, (#KEYS - 2) / 2 do
  local meta = redis.call('HMGET', KEYS[2 * c + 1], 'e', 'o')
  if meta[1] then
    epochs[c], offsets[c] = meta[1], tonumber(meta[2])
  else
    epochs[c], offsets[c] = ARGV[3], 0
    redis.call('DEL', KEYS[2 * c + 2])
  end
end
local first, arg = n + 1, 9
local placed, records = {}, {}
for i = 1, tonumber(ARGV[8]) do
  local record = ARGV[arg]
  local event = {}
  for word in string.gmatch(ARGV[arg + 1], '%d+') do
    local c = tonumber(word)
    local offset = offsets[c] + 1
    offsets[c] = offset
    redis.call('XADD', KEYS[2 * c + 2], 'MAXLEN', '~', ARGV[4], offset, 'r', record, 't', now)
    event[#event + 1] = {offset, epochs[c]}
  end
  arg = arg + 2
  n = n + 1
  placed[i] = event
  records[i] = record
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[7], n, 'r', record, 'p', cjson.encode(event))
end
redis.call('HSET', KEYS[1], 'n', n)
for c = 1, (#KEYS - 2) / 2 do
  redis.call('HSET', KEYS[2 * c + 1], 'e', epochs[c], 'o', offsets[c])
  redis.call('EXPIRE', KEYS[2 * c + 1], ARGV[6])
  redis.call('EXPIRE', KEYS[2 * c + 2], ARGV[5])
end
local header = cjson.encode({service, first, placed})
redis.call('PUBLISH', ARGV[1], header .. '\\n' .. table.concat(records, '\\n'))
return header
"""

# KEYS: service state, channel meta, channel history.
# ARGV: a fresh random epoch, since (-1: none), history size, meta ttl.
# Returns {service epoch or '', service sequence, channel epoch, channel offset,
#          now (ms), the history entries after since (when history can hold them)}.
SUBSCRIBE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'e', 'n')
local epoch = redis.call('HGET', KEYS[2], 'e')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[3])
  redis.call('HSET', KEYS[2], 'e', epoch, 'o', 0)
end
redis.call('EXPIRE', KEYS[2], ARGV[4])
local offset = tonumber(redis.call('HGET', KEYS[2], 'o'))
local since = tonumber(ARGV[2])
local entries = {}
if since >= 0 and since < offset and offset - since <= tonumber(ARGV[3]) then
  entries = redis.call('XRANGE', KEYS[3], since + 1, '+')
end
return {state[1] or '', tonumber(state[2] or 0), epoch, offset, now, entries}
"""


class RelayKeys:
    """The names of one service's keys (see the module docstring)."""

    def __init__(self, prefix: str, service: str) -> None:
        base = f"{prefix}:relay:{service}"
        self.channel = base  # pub/sub
        self.state = f"{base}:state"
        self.log = f"{base}:log"
        self._meta = f"{base}:meta:"
        self._history = f"{base}:history:"

    def meta(self, channel: str) -> str:
        return self._meta + channel

    def history(self, channel: str) -> str:
        return self._history + channel
