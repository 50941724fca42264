"""The Lua scripts, run by SHA1 (EVALSHA) with a fallback to EVAL when the server says NOSCRIPT.

An attempt whose value no node can hold yet and that queues no waiter (``try_lock()`` with a
value drawn for the call, see ``commands``) needs neither ACQUIRE's re-arming of our own key nor
its queueing: it sends ``SET key value NX PX ttl`` and ``PTTL key`` instead, whose replies
decode to what ACQUIRE would answer. Every other attempt runs ACQUIRE.

Replies other than 1 and 0 encode the other holder's remaining TTL as ``-2 - PTTL``: -1 means a
foreign key without expiry, -2 - t means a foreign key that expires in t ms.

Release notices: a script that deletes a lock publishes on the channel named like the key
(channels are a namespace apart from keys), with PUBLISH or, on Redis Cluster, SPUBLISH (a
sharded channel lives in the key's slot). ``redis.pcall`` keeps a refused publish (ACL
NOPERM) from failing the delete: notices are hints for waiters, never part of the lock.

Waiter queues: a waiting ``lock()`` call that finds a key held queues itself in a sorted set
beside the key (``_algorithm.queues.wait_key``: same slot, under the key prefix) by its rank, and a
release pops the oldest waiter and names it in the notice, so that one release wakes one
waiting process, not all of them. The queue expires with the waiters' TTL; it is a hint too.

Hand-over: a queue member is ``<id> <ttl_ms> <value>`` (``queues.queue_member``). A release
that pops such a member sets the key to that waiter's value with its TTL and publishes the
notice on the waiter's wake channel; when nobody received it (PUBLISH counts 0: that process
is gone or not subscribed here), the key is deleted again and the next waiter is tried. The
waiter holds the lock once a quorum of nodes handed it over (``_algorithm.flows``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

__all__ = [
    "ACQUIRE",
    "ACQUIRE_ALL",
    "ACQUIRE_ANY",
    "DELETE",
    "EXTEND",
    "EXTEND_ALL",
    "EXTEND_MANY",
    "FENCE",
    "FENCED_ACQUIRE",
    "GET_ALL",
    "INSPECT",
    "LEAVE",
    "RELEASE",
    "RELEASE_ALL",
    "SCAN_PAGE",
    "SCAN_PAGE_CLUSTER",
    "SWAP",
    "Script",
    "decode_foreign_ttl",
]


@dataclass(frozen=True)
class Script:
    """A Lua script with its SHA1 digest (how Redis names cached scripts)."""

    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        digest = hashlib.sha1(self.source.encode(), usedforsecurity=False).hexdigest()
        object.__setattr__(self, "sha", digest)


# A fresh value with no waiter goes as SET NX PX and PTTL instead (``commands.command``): keep
# what this script answers then (1, or -2 - PTTL) equal to what those two replies decode to.
ACQUIRE = Script(
    """-- set-if-free, telling when the other holder's key expires; queues a waiting lock() call
-- KEYS[1]: the lock key; ARGV[1]: our value; ARGV[2]: TTL in ms
-- KEYS[2..3], ARGV[3..5] (a waiting lock() call only): the key's waiter queue and turn, the
--   waiter's queue member (``<id> <ttl_ms> <value>``), its rank (older first), '1' when an
--   earlier attempt may have queued it (it leaves the queue once set), '0' on its first
--   attempt (then the turn of a woken waiter keeps it from taking a free key)
-- returns 1: set (or it already held our value, maybe handed over: TTL re-armed); <0: another
--   value, or the turn of a woken waiter, -2 - PTTL
local turn = 0
if ARGV[5] == '0' then
  turn = redis.pcall('PTTL', KEYS[3])
  if type(turn) ~= 'number' then turn = 0 end
end
if turn <= 0 and redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  if ARGV[5] == '1' then redis.pcall('ZREM', KEYS[2], ARGV[3]) end
  return 1
end
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  if ARGV[5] == '1' then redis.pcall('ZREM', KEYS[2], ARGV[3]) end
  return 1
end
if KEYS[2] then
  redis.pcall('ZADD', KEYS[2], 'NX', ARGV[4], ARGV[3])
  redis.pcall('PEXPIRE', KEYS[2], ARGV[2])
end
if not v then return -2 - turn end
return -2 - redis.call('PTTL', KEYS[1])
"""
)

# The release notice (after a delete: the key is free). With the key's waiter queue and
# ``wake`` '1', ZPOPMIN takes the oldest waiter off it and the notice goes to that waiter's
# process only, on its channel ``<key>:wake:<inbox>`` (in the key's slot: the queue's hash
# tag), its payload naming it after the released value's digest (``<digest> <id>``; an id is
# ``<inbox>.<n>``). A member that carries the waiter's TTL and value (``<id> <ttl_ms>
# <value>``) is handed the key: SET to its value for its TTL, and the payload ends in ' +' and
# 12 hex digits of the value's SHA1 (``queues.handover_proof``: only that waiter counts it); if
# no subscriber received that notice, the key is deleted again and the next member is tried
# (up to 3). A member without them (an id alone) gets the turn key instead, which holds its
# id for ``turn_ms``: the first attempt of a new lock() call does not take the free key from
# the woken waiter in the meantime (a dead waiter costs new callers that long). With nobody
# queued the notice goes to the key's channel, for every waiter. A waiter's clean-up after a
# failed attempt queues it again (``member``, ``rank``, the queue's TTL ``ttl``) after the
# pop, and with ``wake`` '0' publishes only when nobody else is queued. pcall (here, in
# ACQUIRE and LEAVE): a queue or turn key that the ACL or its type refuses is none.
_NOTICE = """
local function publish(mode, channel, payload)
  if mode == 'p' then return redis.pcall('PUBLISH', channel, payload) end
  if mode == 's' then return redis.pcall('SPUBLISH', channel, payload) end
  return 0
end
local function notice(key, queue, turn, mode, payload, wake, turn_ms, member, rank, ttl)
  if mode == '' then return end
  local channel = key
  local woken = payload
  if queue then
    if wake == '1' then
      for _ = 1, 3 do
        local popped = redis.pcall('ZPOPMIN', queue)
        if type(popped) ~= 'table' or #popped == 0 then break end
        local id, ms, value = string.match(popped[1], '^(%S+) (%d+) (.*)$')
        local inbox = string.match(popped[1], '^[^.]*')
        channel = key .. ':wake:' .. inbox .. string.sub(queue, #key + 6)
        if not id then
          redis.pcall('SET', turn, popped[1], 'PX', turn_ms)
          woken = payload .. ' ' .. popped[1]
          break
        end
        redis.call('SET', key, value, 'PX', ms)
        local proof = '+' .. string.sub(redis.sha1hex(value), 1, 12)
        local heard = publish(mode, channel, payload .. ' ' .. id .. ' ' .. proof)
        if type(heard) == 'number' and heard > 0 then
          mode = ''  -- handed over: no other notice
          break
        end
        redis.call('DEL', key)
        channel = key
      end
    else
      local waiting = redis.pcall('ZCARD', queue)
      if type(waiting) == 'number' and waiting > 0 then mode = '' end
    end
    if member then
      redis.pcall('ZADD', queue, 'NX', rank, member)
      redis.pcall('PEXPIRE', queue, ttl)
    end
  end
  publish(mode, channel, woken)
end
"""

RELEASE = Script(
    """-- compare-and-delete, then a release notice that wakes the oldest queued waiter
-- KEYS[1]: the lock key; KEYS[2..3] (optional): its waiter queue and turn; ARGV[1]: our value
-- ARGV[2]: notice by 'p' PUBLISH, 's' SPUBLISH or '' none; ARGV[3]: the notice's payload
-- ARGV[4..5] (with KEYS[2]): '1' to wake the oldest queued waiter ('0': only when nobody is
--   queued), the woken one's turn in ms
-- ARGV[6..9] (optional): 'queue' and a waiter to queue again after the pop (its member, rank,
--   the queue's TTL in ms), or 'leave' and the member of the holder's lock() call, taken off
--   the queue first (it may still be queued where the key was not handed over to it)
-- returns 1: deleted our value; 0: no such key; <0: another value, -2 - PTTL"""
    + _NOTICE
    + """if ARGV[6] == 'leave' then redis.pcall('ZREM', KEYS[2], ARGV[7]) end
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('DEL', KEYS[1])
  local again = ARGV[6] == 'queue'
  notice(KEYS[1], KEYS[2], KEYS[3], ARGV[2], ARGV[3], ARGV[4], ARGV[5], again and ARGV[7],
    ARGV[8], ARGV[9])
  return 1
end
if not v then return 0 end
return -2 - redis.call('PTTL', KEYS[1])
"""
)

DELETE = Script(
    """-- delete whatever the value (forced release by an operator), then a release notice
-- KEYS[1]: the lock key; KEYS[2..3] (optional): its waiter queue and turn
-- ARGV[1]: notice by 'p' PUBLISH, 's' SPUBLISH or '' none; ARGV[2]: the notice's payload
-- ARGV[3..4] (with KEYS[2]): '1' to wake the oldest queued waiter, its turn in ms
-- returns 1: deleted; 0: no such key"""
    + _NOTICE
    + """local n = redis.call('DEL', KEYS[1])
if n == 1 then notice(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4]) end
return n
"""
)

LEAVE = Script(
    """-- take a waiter off the key's queue; with ARGV[5] '1' (it gives up): if the key was handed
-- over to it since its last attempt, release it, and if a release woke it and the key is
-- free, wake (or hand the key to) the next one
-- KEYS[1]: the lock key; KEYS[2..3]: its waiter queue and turn
-- ARGV[1]: notice by 'p' PUBLISH, 's' SPUBLISH or '' none; ARGV[2]: the notice's payload
-- ARGV[3]: the waiter's queue member; ARGV[4]: the next one's turn in ms; ARGV[5]: '1' or '0'
-- returns 1"""
    + _NOTICE
    + """redis.pcall('ZREM', KEYS[2], ARGV[3])
local id, _, value = string.match(ARGV[3], '^(%S+) (%d+) (.*)$')
local hand_on = false
if ARGV[5] == '1' and value and redis.call('GET', KEYS[1]) == value then
  redis.call('DEL', KEYS[1])
  hand_on = true
end
if redis.pcall('GET', KEYS[3]) == (id or ARGV[3]) then
  redis.pcall('DEL', KEYS[3])
  hand_on = hand_on or (ARGV[5] == '1' and not redis.call('GET', KEYS[1]))
end
if hand_on then notice(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], '1', ARGV[4]) end
return 1
"""
)

EXTEND = Script(
    """-- compare-and-PEXPIRE (with ARGV[3] == '1': SET NX PX when the key is missing)
-- KEYS[1]: the lock key; ARGV[1]: our value; ARGV[2]: TTL in ms; ARGV[3]: '1' or '0'
-- returns 1: TTL reset (or key re-created); 0: no such key; <0: another value, -2 - PTTL
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not v then
  if ARGV[3] == '1' then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], 'NX')
    return 1
  end
  return 0
end
return -2 - redis.call('PTTL', KEYS[1])
"""
)

EXTEND_MANY = Script(
    """-- compare-and-PEXPIRE of many locks in one round trip (auto-extension batches)
-- KEYS[i]: lock keys; ARGV[2i - 1]: our value for KEYS[i]; ARGV[2i]: its TTL in ms
-- returns an array: for each key 1 (TTL reset), 0 (no such key) or -2 - PTTL (another value)
local out = {}
for i, key in ipairs(KEYS) do
  local v = redis.call('GET', key)
  if v == ARGV[2 * i - 1] then
    redis.call('PEXPIRE', key, ARGV[2 * i])
    out[i] = 1
  elseif not v then
    out[i] = 0
  else
    out[i] = -2 - redis.call('PTTL', key)
  end
end
return out
"""
)

SWAP = Script(
    """-- compare-and-set: take a lock over from the holder of another value
-- KEYS[1]: the lock key; ARGV[1]: the value taken over; ARGV[2]: our value; ARGV[3]: TTL in ms
-- returns 1: now our value (also when it already was); 0: no such key; <0: another value,
-- -2 - PTTL
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] or v == ARGV[2] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
if not v then return 0 end
return -2 - redis.call('PTTL', KEYS[1])
"""
)

INSPECT = Script(
    """-- read a lock for status tools
-- KEYS[1]: the lock key
-- returns {value or false, PTTL}
return {redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1])}
"""
)

SCAN_PAGE = Script(
    """-- one SCAN page with what a lock listing needs of each key (one round trip per page)
-- KEYS: none (SCAN finds them); ARGV[1]: cursor; ARGV[2]: MATCH pattern; ARGV[3]: COUNT;
-- ARGV[4]: the longest value read, in bytes (a longer string is no lock value: not sent back)
-- returns {next cursor, {key, type, value (strings up to ARGV[4] bytes, else false), PTTL}, ...}
local page = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', ARGV[3])
local out = {page[1]}
for _, key in ipairs(page[2]) do
  local kind = redis.call('TYPE', key)['ok']
  local value = false
  if kind == 'string' and redis.call('STRLEN', key) <= tonumber(ARGV[4]) then
    value = redis.call('GET', key)
  end
  out[#out + 1] = {key, kind, value, redis.call('PTTL', key)}
end
return out
"""
)

FENCED_ACQUIRE = Script(
    """-- ACQUIRE, and where it succeeded, read the fencing counter (first step of a fenced lock)
-- KEYS[1]: the lock key; KEYS[2]: its fencing counter; ARGV[1]: our value; ARGV[2]: TTL in ms
-- returns {1, counter (0 when none)}: set (or it already held our value: TTL re-armed);
-- -1 or -2 - PTTL: another value holds the key
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -2 - redis.call('PTTL', KEYS[1]) end
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return {1, tonumber(redis.call('GET', KEYS[2]) or '0')}
"""
)

FENCE = Script(
    """-- raise the fencing counter to our token while the key holds our value (never lower it)
-- KEYS[1]: the lock key; KEYS[2]: its fencing counter; ARGV[1]: our value; ARGV[2]: the token
-- returns 1: the key holds our value (counter now >= token); 0: no such key; <0: -2 - PTTL
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  if tonumber(redis.call('GET', KEYS[2]) or '0') < tonumber(ARGV[2]) then
    redis.call('SET', KEYS[2], ARGV[2])
  end
  return 1
end
if not v then return 0 end
return -2 - redis.call('PTTL', KEYS[1])
"""
)

# A cluster master refuses scripts that touch keys of several slots unless they say they do.
SCAN_PAGE_CLUSTER = Script("#!lua flags=allow-cross-slot-keys\n" + SCAN_PAGE.source)


# --- several keys at once: semaphore permits and multi-mutexes ------------------------------
# A node runs each of these atomically, so one round trip per node covers every key (on Redis
# Cluster only when the keys share a hash slot; the transport splits them otherwise).

ACQUIRE_ANY = Script(
    """-- take one semaphore permit: the first key of KEYS that is free or holds our value already
-- KEYS: the permit keys, in the order to try; ARGV[1]: our value; ARGV[2]: TTL in ms
-- returns i >= 1: KEYS[i] now holds our value with that TTL; <0: every key holds another
--   value, -2 - the smallest PTTL among them (-1: none of them expires)
local soonest = -1
for i, key in ipairs(KEYS) do
  local v = redis.call('GET', key)
  if not v or v == ARGV[1] then
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
    return i
  end
  local t = redis.call('PTTL', key)
  if t >= 0 and (soonest < 0 or t < soonest) then soonest = t end
end
if soonest < 0 then return -1 end
return -2 - soonest
"""
)

ACQUIRE_ALL = Script(
    """-- take every key or none (a multi-mutex on one node)
-- KEYS: the lock keys; ARGV[1]: our value; ARGV[2]: TTL in ms
-- returns 1: every key holds our value; <0: some key holds another value and none was set,
--   -2 - the longest PTTL among those keys (-1: one of them never expires)
local longest = nil
for _, key in ipairs(KEYS) do
  local v = redis.call('GET', key)
  if v and v ~= ARGV[1] then
    local t = redis.call('PTTL', key)
    if t < 0 then return -1 end
    if not longest or t > longest then longest = t end
  end
end
if longest then return -2 - longest end
for _, key in ipairs(KEYS) do
  redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
end
return 1
"""
)

_ALL_VERDICT = """
if foreign then return foreign end
if missing then return 0 end
return 1
"""

RELEASE_ALL = Script(
    """-- compare-and-delete every key (keys holding another value are left alone), then a
-- release notice on the channel of each key deleted
-- KEYS: the lock keys; ARGV[1]: our value
-- ARGV[2]: notices by 'p' PUBLISH, 's' SPUBLISH or '' none; ARGV[3]: the notices' payload
-- returns 1: every key held our value; 0: some key was missing; <0: some key holds another
--   value, -2 - its PTTL"""
    + _NOTICE
    + """local missing, foreign = false, nil
for _, key in ipairs(KEYS) do
  local v = redis.call('GET', key)
  if v == ARGV[1] then
    redis.call('DEL', key)
    notice(key, nil, nil, ARGV[2], ARGV[3])
  elseif not v then
    missing = true
  else
    foreign = -2 - redis.call('PTTL', key)
  end
end"""
    + _ALL_VERDICT
)

EXTEND_ALL = Script(
    """-- compare-and-PEXPIRE every key (with ARGV[3] == '1': SET NX PX the missing ones)
-- KEYS: the lock keys; ARGV[1]: our value; ARGV[2]: TTL in ms; ARGV[3]: '1' or '0'
-- returns 1: every key holds our value (TTL reset); 0: some key was missing; <0: some key
--   holds another value, -2 - its PTTL
local missing, foreign = false, nil
for _, key in ipairs(KEYS) do
  local v = redis.call('GET', key)
  if v == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
  elseif not v then
    if ARGV[3] == '1' then
      redis.call('SET', key, ARGV[1], 'PX', ARGV[2], 'NX')
    else
      missing = true
    end
  else
    foreign = -2 - redis.call('PTTL', key)
  end
end"""
    + _ALL_VERDICT
)

GET_ALL = Script(
    """-- compare every key with our value
-- KEYS: the lock keys; ARGV[1]: our value
-- returns 1: every key holds our value; 0: some key is missing; <0: some key holds another
--   value, -2 - its PTTL
local missing, foreign = false, nil
for _, key in ipairs(KEYS) do
  local v = redis.call('GET', key)
  if not v then
    missing = true
  elseif v ~= ARGV[1] then
    foreign = -2 - redis.call('PTTL', key)
  end
end"""
    + _ALL_VERDICT
)


def decode_foreign_ttl(code: int) -> int | None:
    """Return the other holder's TTL in ms from a negative script reply (None: no expiry)."""
    return None if code == -1 else -2 - code
