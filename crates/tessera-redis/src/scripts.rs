//! The Lua scripts of the writes that must read before they write:
//! compare-and-swap, touch, and raising an epoch. Each touches one key.
//!
//! A record is the codec's bytes (`tessera_core::codec`); the scripts read
//! only its fixed header: byte 1 the format (2), bytes 2–41 (Lua counts
//! from 1) the revision, 42–49 `last_seen_at` and 50–57 the forget
//! deadline, both `i64` milliseconds big-endian. Times are compared as
//! numbers (exact below 2^53, far beyond any millisecond timestamp), never
//! as strings: Lua compares strings by the server's locale. No script
//! computes a deadline; each takes the one the manager gave (as raw bytes
//! for the record and as decimal text for `PXAT`).

use std::sync::LazyLock;

use redis::Script;

/// A script's text and its SHA-1 (what `EVALSHA` names).
pub(crate) struct Lua {
    /// The text, for `SCRIPT LOAD`.
    pub(crate) source: String,
    /// The hash, for `EVALSHA`.
    pub(crate) hash: String,
}

impl Lua {
    fn new(source: String) -> Self {
        let hash = Script::new(&source).get_hash().to_owned();
        Self { source, hash }
    }
}

/// Reads 8 bytes at `at` of `s` as a big-endian number.
const MILLIS: &str = r"
local function ms(s, at)
  local n = 0
  for i = at, at + 7 do n = n * 256 + string.byte(s, i) end
  return n
end
";

/// Replaces a record if its revision is the expected one and it is not
/// forgotten by `now`.
/// KEYS: record. ARGV: expected revision (40 bytes), new record,
/// forget deadline (ms, decimal), now (ms, decimal).
/// Returns 1 written, 0 not found, 2 not a record of this format, or the
/// stored revision (40 bytes) on a conflict.
pub(crate) static UPDATE: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(format!(
        r"{MILLIS}
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
if string.byte(v, 1) ~= 2 or #v < 57 then return 2 end
if ms(v, 50) <= tonumber(ARGV[4]) then return 0 end
local current = string.sub(v, 2, 41)
if current ~= ARGV[1] then return current end
redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3])
return 1
"
    ))
});

/// Raises a record's `last_seen_at` and forget deadline (each only if the
/// new one is later) and its expiry with the deadline, keeping the rest;
/// never creates a record.
/// KEYS: record. ARGV: last seen (8 bytes), forget deadline (8 bytes),
/// forget deadline (ms, decimal), now (ms, decimal).
/// Returns 1 written, 0 not found, 2 not a record of this format.
pub(crate) static TOUCH: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(format!(
        r"{MILLIS}
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
if string.byte(v, 1) ~= 2 or #v < 57 then return 2 end
local forget = ms(v, 50)
if forget <= tonumber(ARGV[4]) then return 0 end
local seen = string.sub(v, 42, 49)
if ms(seen, 1) < ms(ARGV[1], 1) then seen = ARGV[1] end
if forget < ms(ARGV[2], 1) then
  redis.call('SET', KEYS[1], string.sub(v, 1, 41) .. seen .. ARGV[2] .. string.sub(v, 58), 'PXAT', ARGV[3])
elseif seen ~= string.sub(v, 42, 49) then
  redis.call('SET', KEYS[1], string.sub(v, 1, 41) .. seen .. string.sub(v, 50), 'KEEPTTL')
end
return 1
"
    ))
});

/// Converts a session of the previous layout in one step on a single
/// server: writes its record unless the old hash changed or went (another
/// node converted it, or it was deleted), and removes the old hash. (In a
/// cluster the two keys live in different slots and the store takes two
/// steps.)
/// KEYS: old hash, record. ARGV: the old hash's token hash (`k`) as read,
/// the record, its forget deadline (ms, decimal).
/// Returns 1 converted, 0 not.
pub(crate) static CONVERT: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        r"
if redis.call('HGET', KEYS[1], 'k') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PXAT', ARGV[3])
redis.call('DEL', KEYS[1])
return 1
"
        .to_owned(),
    )
});

/// Raises an epoch counter to at least a value; returns the value reached.
/// KEYS: epoch. ARGV: value (decimal).
pub(crate) static RAISE_EPOCH: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        r"
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local wanted = tonumber(ARGV[1])
if wanted > current then
  redis.call('SET', KEYS[1], ARGV[1])
  return wanted
end
return current
"
        .to_owned(),
    )
});
