//! The statements the store runs, rendered once for the configured schema and prefix.
//!
//! Every read filters on `forget_at > $now`, so nothing past its forget
//! time is returned even before the sweeper deletes it.

use crate::migrations::render;

/// The statements, with the schema and table prefix filled in.
#[derive(Debug)]
pub(crate) struct Queries {
    pub create: String,
    pub load: String,
    pub load_by_id: String,
    pub update: String,
    pub current_version: String,
    pub touch: String,
    pub tombstone: String,
    pub delete: String,
    pub list_by_subject: String,
    pub delete_by_subject: String,
    pub global_epoch: String,
    pub bump_global_epoch: String,
    pub subject_epoch: String,
    pub bump_subject_epoch: String,
    pub sweep: String,
    pub export_page: String,
}

/// `$1..$9` of a live row: key, id, subject, version, last_seen_at,
/// idle_timeout_ms, absolute_expires_at, forget_at, record.
const CREATE: &str = r#"
INSERT INTO "{schema}"."{prefix}sessions"
    (token_hash, session_id, live, subject, version, last_seen_at,
     idle_timeout_ms, absolute_expires_at, forget_at, record)
VALUES ($1, $2, true, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT DO NOTHING"#;

const LOAD: &str = r#"
SELECT live, last_seen_at, record FROM "{schema}"."{prefix}sessions"
WHERE token_hash = $1 AND forget_at > $2"#;

const LOAD_BY_ID: &str = r#"
SELECT token_hash, last_seen_at, record FROM "{schema}"."{prefix}sessions"
WHERE session_id = $1 AND live AND forget_at > $2"#;

/// Compare-and-swap in one statement: the UPDATE writes only when the
/// version matches (re-checked on the newest row version after waiting for
/// a concurrent writer), and the same statement reports the version it saw.
/// `$1` key, `$2` now, `$3` expected version, `$4` session id, then
/// subject, version, last_seen_at, idle_timeout_ms, absolute_expires_at,
/// forget_at, record as `$5..$11`.
const UPDATE: &str = r#"
WITH target AS (
    SELECT version FROM "{schema}"."{prefix}sessions"
    WHERE token_hash = $1 AND live AND forget_at > $2 AND session_id = $4
), written AS (
    UPDATE "{schema}"."{prefix}sessions"
    SET subject = $5, version = $6, last_seen_at = $7, idle_timeout_ms = $8,
        absolute_expires_at = $9, forget_at = $10, record = $11
    WHERE token_hash = $1 AND live AND forget_at > $2 AND session_id = $4
      AND version = $3
    RETURNING 1
)
SELECT (SELECT version FROM target), EXISTS (SELECT 1 FROM written)"#;

/// The version now (a fresh snapshot), to report a conflict exactly.
const CURRENT_VERSION: &str = r#"
SELECT version FROM "{schema}"."{prefix}sessions"
WHERE token_hash = $1 AND live AND forget_at > $2 AND session_id = $3"#;

/// Slides the idle deadline: `last_seen_at` only moves forward, and
/// `forget_at` follows as `min(last_seen_at + idle, absolute) + retention`.
/// `$1` key, `$2` last_seen_at, `$3` now, `$4` retention in ms.
const TOUCH: &str = r#"
UPDATE "{schema}"."{prefix}sessions"
SET last_seen_at = GREATEST(last_seen_at, $2),
    forget_at = LEAST(
        LEAST(GREATEST(last_seen_at, $2)::numeric + idle_timeout_ms,
              absolute_expires_at::numeric) + $4::bigint,
        9223372036854775807)::bigint
WHERE token_hash = $1 AND live AND forget_at > $3"#;

/// Step one of a rotation: the old key's live row becomes a tombstone if
/// its version matches (same shape as [`UPDATE`]). `$1` old key, `$2` now,
/// `$3` expected version, `$4` session id, `$5` tombstone forget_at, `$6`
/// tombstone record.
const TOMBSTONE: &str = r#"
WITH target AS (
    SELECT version FROM "{schema}"."{prefix}sessions"
    WHERE token_hash = $1 AND live AND forget_at > $2 AND session_id = $4
), written AS (
    UPDATE "{schema}"."{prefix}sessions"
    SET live = false, subject = NULL, version = 0, last_seen_at = 0,
        idle_timeout_ms = 0, absolute_expires_at = 0, forget_at = $5, record = $6
    WHERE token_hash = $1 AND live AND forget_at > $2 AND session_id = $4
      AND version = $3
    RETURNING 1
)
SELECT (SELECT version FROM target), EXISTS (SELECT 1 FROM written)"#;

const DELETE: &str = r#"
DELETE FROM "{schema}"."{prefix}sessions" WHERE session_id = $1 AND live"#;

const LIST_BY_SUBJECT: &str = r#"
SELECT last_seen_at, record FROM "{schema}"."{prefix}sessions"
WHERE subject = $1 AND live AND forget_at > $2"#;

/// `$3` is the session to keep, or NULL.
const DELETE_BY_SUBJECT: &str = r#"
DELETE FROM "{schema}"."{prefix}sessions"
WHERE subject = $1 AND live AND forget_at > $2
  AND ($3::bytea IS NULL OR session_id <> $3::bytea)
RETURNING session_id"#;

const GLOBAL_EPOCH: &str = r#"SELECT epoch FROM "{schema}"."{prefix}global_epoch""#;

const BUMP_GLOBAL_EPOCH: &str =
    r#"UPDATE "{schema}"."{prefix}global_epoch" SET epoch = epoch + 1 RETURNING epoch"#;

const SUBJECT_EPOCH: &str =
    r#"SELECT epoch FROM "{schema}"."{prefix}subject_epochs" WHERE subject = $1"#;

const BUMP_SUBJECT_EPOCH: &str = r#"
INSERT INTO "{schema}"."{prefix}subject_epochs" AS e (subject, epoch) VALUES ($1, 1)
ON CONFLICT (subject) DO UPDATE SET epoch = e.epoch + 1
RETURNING epoch"#;

/// One sweeper batch: locks at most `$2` forgettable rows, skipping rows
/// another node's sweeper (or a writer) holds, and deletes them. Each batch
/// is its own short transaction.
const SWEEP: &str = r#"
DELETE FROM "{schema}"."{prefix}sessions"
WHERE forget_at <= $1 AND token_hash IN (
    SELECT token_hash FROM "{schema}"."{prefix}sessions"
    WHERE forget_at <= $1
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)"#;

/// One page of live sessions in key order after `$2` (the empty string
/// sorts first): `$1` now, `$3` the page size.
const EXPORT_PAGE: &str = r#"
SELECT token_hash, last_seen_at, record FROM "{schema}"."{prefix}sessions"
WHERE live AND forget_at > $1 AND token_hash > $2
ORDER BY token_hash
LIMIT $3"#;

impl Queries {
    /// The statements for one schema and prefix.
    pub(crate) fn new(schema: &str, prefix: &str) -> Self {
        let r = |sql: &str| render(sql, schema, prefix);
        Self {
            create: r(CREATE),
            load: r(LOAD),
            load_by_id: r(LOAD_BY_ID),
            update: r(UPDATE),
            current_version: r(CURRENT_VERSION),
            touch: r(TOUCH),
            tombstone: r(TOMBSTONE),
            delete: r(DELETE),
            list_by_subject: r(LIST_BY_SUBJECT),
            delete_by_subject: r(DELETE_BY_SUBJECT),
            global_epoch: r(GLOBAL_EPOCH),
            bump_global_epoch: r(BUMP_GLOBAL_EPOCH),
            subject_epoch: r(SUBJECT_EPOCH),
            bump_subject_epoch: r(BUMP_SUBJECT_EPOCH),
            sweep: r(SWEEP),
            export_page: r(EXPORT_PAGE),
        }
    }
}
