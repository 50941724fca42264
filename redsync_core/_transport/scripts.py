"""The Lua scripts, run by SHA1 (EVALSHA) with a fallback to EVAL when the server says NOSCRIPT.

Replies other than 1 and 0 encode the other holder's remaining TTL as ``-2 - PTTL``: -1 means a
foreign key without expiry, -2 - t means a foreign key that expires in t ms.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

__all__ = [
    "EXTEND",
    "EXTEND_MANY",
    "INSPECT",
    "RELEASE",
    "SCAN_PAGE",
    "SCAN_PAGE_CLUSTER",
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


RELEASE = Script(
    """-- compare-and-delete
-- KEYS[1]: the lock key; ARGV[1]: our value
-- returns 1: deleted our value; 0: no such key; <0: another value, -2 - PTTL
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then return redis.call('DEL', KEYS[1]) end
if not v then return 0 end
return -2 - redis.call('PTTL', KEYS[1])
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

# A cluster master refuses scripts that touch keys of several slots unless they say they do.
SCAN_PAGE_CLUSTER = Script("#!lua flags=allow-cross-slot-keys\n" + SCAN_PAGE.source)


def decode_foreign_ttl(code: int) -> int | None:
    """Return the other holder's TTL in ms from a negative script reply (None: no expiry)."""
    return None if code == -1 else -2 - code
