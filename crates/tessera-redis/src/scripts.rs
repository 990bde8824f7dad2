//! The Lua scripts that make each write one atomic step on the server.
//!
//! A live record is a hash `{prefix}{<id>}` with the fields
//! `k` (the current token hash, hex), `r` (the encoded record), `v` (version),
//! `s` (last seen, ms), `i` (idle timeout, ms), `a` (absolute deadline, ms),
//! `f` (forget deadline, ms) and `u` (subject, see `keys::encode_subject`).
//! Its expiry is `PEXPIREAT f`; touching moves `s`, `f` and the expiry
//! without rewriting `r`. Times are milliseconds since the Unix epoch, well
//! inside the 2^53 that Lua's numbers hold exactly.

use std::sync::LazyLock;

use redis::Script;

/// Reads what a token hash names once its session id is known.
/// KEYS: live, tombstone. ARGV: key.
/// Returns `{1, record, last_seen}`, `{2, tombstone}` or nil.
pub(crate) static LOAD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local cur = redis.call('HMGET', KEYS[1], 'k', 'r', 's')
if cur[1] == ARGV[1] then return {1, cur[2], cur[3]} end
local t = redis.call('GET', KEYS[2])
if t then return {2, t} end
return false
",
    )
});

/// The same in one step from the pointer (one server only: the record
/// keys are derived inside the script).
/// KEYS: pointer. ARGV: key, prefix.
pub(crate) static LOAD_VIA_POINTER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local id = redis.call('GET', KEYS[1])
if not id then return false end
local live = ARGV[2] .. '{' .. id .. '}'
local cur = redis.call('HMGET', live, 'k', 'r', 's')
if cur[1] == ARGV[1] then return {1, cur[2], cur[3]} end
local t = redis.call('GET', live .. ':t:' .. ARGV[1])
if t then return {2, t} end
return false
",
    )
});

/// Stores a new live record unless the session id exists.
/// KEYS: live. ARGV: k r v s i a f u. Returns 1 if created, 0 if not.
pub(crate) static CREATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'k', ARGV[1], 'r', ARGV[2], 'v', ARGV[3], 's', ARGV[4],
  'i', ARGV[5], 'a', ARGV[6], 'f', ARGV[7], 'u', ARGV[8])
redis.call('PEXPIREAT', KEYS[1], ARGV[7])
return 1
",
    )
});

/// [`CREATE`] on a single server, in one step with claiming the pointer
/// and joining the subject index (all keys on one server, so one script).
/// KEYS: pointer, live, and the subject index when there is a subject.
/// ARGV: k r v s i a f u, id, pointer deadline. Returns 1 if created, 0 if
/// the pointer or the id exists.
pub(crate) static CREATE_ONE_STEP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if KEYS[3] then
  redis.call('ZADD', KEYS[3], 'GT', ARGV[7], ARGV[9])
  {tidy}
end
redis.call('SET', KEYS[1], ARGV[9], 'PXAT', ARGV[10])
redis.call('HSET', KEYS[2], 'k', ARGV[1], 'r', ARGV[2], 'v', ARGV[3], 's', ARGV[4],
  'i', ARGV[5], 'a', ARGV[6], 'f', ARGV[7], 'u', ARGV[8])
redis.call('PEXPIREAT', KEYS[2], ARGV[7])
return 1
",
        tidy = INDEX_TIDY.replace("KEYS[1]", "KEYS[3]")
    ))
});

/// [`UPDATE`] on a single server, raising the subject index's score in
/// the same step. KEYS: live, and the subject index when there is a
/// subject. ARGV: as [`UPDATE`], then the session id. Returns as [`UPDATE`].
pub(crate) static UPDATE_ONE_STEP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"
local cur = redis.call('HMGET', KEYS[1], 'k', 'v', 'f', 'u')
if not cur[1] or cur[1] ~= ARGV[1] or tonumber(cur[3]) <= tonumber(ARGV[3]) then
  return {{0}}
end
if cur[2] ~= ARGV[2] then return {{1, cur[2]}} end
if KEYS[2] then
  redis.call('ZADD', KEYS[2], 'GT', ARGV[9], ARGV[11])
  {tidy}
end
redis.call('HSET', KEYS[1], 'r', ARGV[4], 'v', ARGV[5], 's', ARGV[6],
  'i', ARGV[7], 'a', ARGV[8], 'f', ARGV[9], 'u', ARGV[10])
redis.call('PEXPIREAT', KEYS[1], ARGV[9])
return {{2, cur[4]}}
",
        tidy = INDEX_TIDY.replace("KEYS[1]", "KEYS[2]")
    ))
});

/// Compare-and-swap of a live record.
/// KEYS: live. ARGV: key expected_version now, then r v s i a f u.
/// Returns `{0}` not found, `{1, current_version}` conflict, `{2, old_subject}` written.
pub(crate) static UPDATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local cur = redis.call('HMGET', KEYS[1], 'k', 'v', 'f', 'u')
if not cur[1] or cur[1] ~= ARGV[1] or tonumber(cur[3]) <= tonumber(ARGV[3]) then
  return {0}
end
if cur[2] ~= ARGV[2] then return {1, cur[2]} end
redis.call('HSET', KEYS[1], 'r', ARGV[4], 'v', ARGV[5], 's', ARGV[6],
  'i', ARGV[7], 'a', ARGV[8], 'f', ARGV[9], 'u', ARGV[10])
redis.call('PEXPIREAT', KEYS[1], ARGV[9])
return {2, cur[4]}
",
    )
});

/// Moves `last_seen` forward (never back) and with it the forget deadline.
/// KEYS: live. ARGV: key last_seen now retention_ms.
/// Returns `{0}` not found or `{1, forget_at, subject}`.
pub(crate) static TOUCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local cur = redis.call('HMGET', KEYS[1], 'k', 's', 'i', 'a', 'f', 'u')
if not cur[1] or cur[1] ~= ARGV[1] or tonumber(cur[5]) <= tonumber(ARGV[3]) then
  return {0}
end
local s = math.max(tonumber(cur[2]), tonumber(ARGV[2]))
local f = math.min(s + tonumber(cur[3]), tonumber(cur[4])) + tonumber(ARGV[4])
local fs = string.format('%d', f)
redis.call('HSET', KEYS[1], 's', string.format('%d', s), 'f', fs)
redis.call('PEXPIREAT', KEYS[1], fs)
return {1, fs, cur[6]}
",
    )
});

/// Compare-and-swap rotation: the record moves to the new key and a
/// tombstone stays at the old one, in one step.
/// KEYS: live, tombstone-at-old-key.
/// ARGV: old_key expected_version now new_key, r v s i a f u, tombstone tombstone_forget.
/// Returns as [`UPDATE`].
pub(crate) static ROTATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local cur = redis.call('HMGET', KEYS[1], 'k', 'v', 'f', 'u')
if not cur[1] or cur[1] ~= ARGV[1] or tonumber(cur[3]) <= tonumber(ARGV[3]) then
  return {0}
end
if cur[2] ~= ARGV[2] then return {1, cur[2]} end
redis.call('HSET', KEYS[1], 'k', ARGV[4], 'r', ARGV[5], 'v', ARGV[6], 's', ARGV[7],
  'i', ARGV[8], 'a', ARGV[9], 'f', ARGV[10], 'u', ARGV[11])
redis.call('PEXPIREAT', KEYS[1], ARGV[10])
redis.call('SET', KEYS[2], ARGV[12])
redis.call('PEXPIREAT', KEYS[2], ARGV[13])
return {2, cur[4]}
",
    )
});

/// Deletes a live record. KEYS: live.
/// Returns `{0}` if there was none, or `{1, key, subject}`.
pub(crate) static DELETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local cur = redis.call('HMGET', KEYS[1], 'k', 'u')
if not cur[1] then return {0} end
redis.call('DEL', KEYS[1])
return {1, cur[1], cur[2]}
",
    )
});

/// Shared by the index scripts: drop members whose forget deadline passed
/// (by the server's clock, the one `PEXPIREAT` uses), then let the index
/// itself expire with its last member.
const INDEX_TIDY: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now))
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if last[2] then redis.call('PEXPIREAT', KEYS[1], last[2]) end
";

/// Adds a session to a subject index, or raises its score (never lowers).
/// KEYS: index. ARGV: id forget_at.
pub(crate) static INDEX_ADD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "redis.call('ZADD', KEYS[1], 'GT', ARGV[2], ARGV[1])\n{INDEX_TIDY}\nreturn 1"
    ))
});

/// Removes a session from a subject index. KEYS: index. ARGV: id.
pub(crate) static INDEX_REMOVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "redis.call('ZREM', KEYS[1], ARGV[1])\n{INDEX_TIDY}\nreturn 1"
    ))
});

/// The session ids of a subject index, after tidying it. KEYS: index.
pub(crate) static INDEX_LIST: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{INDEX_TIDY}\nreturn redis.call('ZRANGE', KEYS[1], 0, -1)"
    ))
});
