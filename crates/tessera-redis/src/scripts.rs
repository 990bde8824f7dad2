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
/// A missing counter counts as the start value (and is written when the
/// raise does not move it).
/// KEYS: epoch. ARGV: value (decimal), start value (decimal).
pub(crate) static RAISE_EPOCH: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        r"
local stored = redis.call('GET', KEYS[1])
local current = tonumber(stored or ARGV[2])
local wanted = tonumber(ARGV[1])
if wanted > current then
  redis.call('SET', KEYS[1], ARGV[1])
  return wanted
end
if not stored and ARGV[2] ~= '0' then redis.call('SET', KEYS[1], ARGV[2]) end
return current
"
        .to_owned(),
    )
});

/// Moves an epoch counter on by one; a missing counter starts at the
/// start value first. Returns the new value.
/// KEYS: epoch. ARGV: start value (decimal).
pub(crate) static BUMP_EPOCH: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('SET', KEYS[1], ARGV[1]) end
return redis.call('INCR', KEYS[1])
"
        .to_owned(),
    )
});

/// Writes an attachment if its stored generation is the expected one.
/// The stored value is the generation and the forget deadline (8 bytes
/// each, big-endian) and the attachment's bytes; one past its deadline
/// counts as none.
/// KEYS: attachment. ARGV: expected generation (decimal, empty for none),
/// the new value, its forget deadline (ms, decimal), now (ms, decimal).
/// Returns `{1}` written, `{0}` no attachment, `{0, generation}` another.
pub(crate) static STORE_ATTACHMENT: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(format!(
        r"{MILLIS}
local v = redis.call('GET', KEYS[1])
local current = nil
if v and #v >= 16 and ms(v, 9) > tonumber(ARGV[4]) then current = ms(v, 1) end
local expected = nil
if ARGV[1] ~= '' then expected = tonumber(ARGV[1]) end
if current ~= expected then
  if current then return {{0, current}} end
  return {{0}}
end
redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3])
return {{1}}
"
    ))
});
