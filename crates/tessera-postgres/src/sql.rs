//! The statements the store runs, rendered once for the configured schema and prefix.
//!
//! Every read filters on `forget_at > $now`, so nothing past its forget
//! deadline is returned even before the sweeper deletes it. No statement
//! computes a deadline: they store the one the manager gives, and at most
//! keep the later of two.

use crate::migrations::render;

/// The statements, with the schema and table prefix filled in.
#[derive(Debug)]
pub(crate) struct Queries {
    pub create: String,
    pub load: String,
    pub update: String,
    pub current_revision: String,
    pub touch: String,
    pub delete: String,
    pub find_legacy: String,
    pub ping: String,
    pub list_subject: String,
    pub delete_subject: String,
    pub global_epoch: String,
    pub bump_global_epoch: String,
    pub raise_global_epoch: String,
    pub subject_epoch: String,
    pub bump_subject_epoch: String,
    pub raise_subject_epoch: String,
    pub sweep_records: String,
    pub sweep_pointers: String,
    pub export_page: String,
    pub start_global_epoch: String,
    pub load_attachment: String,
    pub create_attachment: String,
    pub swap_attachment: String,
    pub current_attachment: String,
    pub delete_attachment: String,
    pub sweep_attachments: String,
    pub append_journal: String,
    pub journal_first_page: String,
    pub journal_page: String,
    pub sweep_journal: String,
}

/// `$1` id, `$2` subject, `$3` forget_at, `$4` record.
const CREATE: &str = r#"
INSERT INTO "{schema}"."{prefix}records" (id, subject, forget_at, record)
VALUES ($1, $2, $3, $4)
ON CONFLICT (id) DO NOTHING"#;

/// Validation's one read: by primary key.
const LOAD: &str = r#"
SELECT record FROM "{schema}"."{prefix}records" WHERE id = $1 AND forget_at > $2"#;

/// Compare-and-swap in one statement: the UPDATE writes only while the
/// stored revision (bytes 1..41 of the record) is the expected one,
/// re-checked on the newest row version after waiting for a concurrent
/// writer; when it did not write, the same statement reports the revision
/// its snapshot saw (NULL: no live record). `$1` id, `$2` subject, `$3`
/// forget_at, `$4` record, `$5` now, `$6` expected revision.
const UPDATE: &str = r#"
WITH written AS (
    UPDATE "{schema}"."{prefix}records"
    SET subject = $2, forget_at = $3, record = $4
    WHERE id = $1 AND forget_at > $5 AND substring(record from 2 for 40) = $6
    RETURNING 1
)
SELECT EXISTS (SELECT 1 FROM written),
       CASE WHEN EXISTS (SELECT 1 FROM written) THEN NULL
            ELSE (SELECT substring(record from 2 for 40) FROM "{schema}"."{prefix}records"
                  WHERE id = $1 AND forget_at > $5)
       END"#;

/// The revision now (a fresh snapshot), for a conflict whose statement saw
/// the expected revision before a concurrent writer committed.
const CURRENT_REVISION: &str = r#"
SELECT substring(record from 2 for 40) FROM "{schema}"."{prefix}records"
WHERE id = $1 AND forget_at > $2"#;

/// Raises `last_seen_at` (bytes 41..49) and the forget deadline (bytes
/// 49..57, and the column) inside the record, never lowering either; the
/// revision is untouched. `$1` id, `$2` last_seen_at, `$3` forget_at, `$4`
/// now. The stored `last_seen_at` is read as the signed integer it is.
const TOUCH: &str = r#"
UPDATE "{schema}"."{prefix}records"
SET record = overlay(
        overlay(record placing int8send(GREATEST(
            ('x' || encode(substring(record from 42 for 8), 'hex'))::bit(64)::bigint, $2))
            from 42 for 8)
        placing int8send(GREATEST(forget_at, $3)) from 50 for 8),
    forget_at = GREATEST(forget_at, $3)
WHERE id = $1 AND forget_at > $4"#;

/// The record and its attachments, in one statement.
const DELETE: &str = r#"
WITH attachments AS (
    DELETE FROM "{schema}"."{prefix}attachments" WHERE id = $1
)
DELETE FROM "{schema}"."{prefix}records" WHERE id = $1"#;

/// A pointer of the previous layout, followed only to a live record.
const FIND_LEGACY: &str = r#"
SELECT r.id FROM "{schema}"."{prefix}legacy_tokens" l
JOIN "{schema}"."{prefix}records" r ON r.id = l.id
WHERE l.token_hash = $1 AND r.forget_at > $2"#;

const PING: &str = "SELECT 1";

/// One page of a subject's records after an id: `$1` subject, `$2` now,
/// `$3` the last id of the previous page (the empty string sorts first),
/// `$4` the page size plus one (to know whether another page follows).
const LIST_SUBJECT: &str = r#"
SELECT id, record FROM "{schema}"."{prefix}records"
WHERE subject = $1 AND forget_at > $2 AND id > $3
ORDER BY id
LIMIT $4"#;

/// `$3` is the session to keep, or NULL. The sessions' attachments go in
/// the same statement.
const DELETE_SUBJECT: &str = r#"
WITH deleted AS (
    DELETE FROM "{schema}"."{prefix}records"
    WHERE subject = $1 AND forget_at > $2 AND ($3::bytea IS NULL OR id <> $3::bytea)
    RETURNING id
), attachments AS (
    DELETE FROM "{schema}"."{prefix}attachments" WHERE id IN (SELECT id FROM deleted)
)
SELECT id FROM deleted"#;

const GLOBAL_EPOCH: &str = r#"SELECT epoch FROM "{schema}"."{prefix}global_epoch""#;

const BUMP_GLOBAL_EPOCH: &str =
    r#"UPDATE "{schema}"."{prefix}global_epoch" SET epoch = epoch + 1 RETURNING epoch"#;

const RAISE_GLOBAL_EPOCH: &str = r#"
UPDATE "{schema}"."{prefix}global_epoch" SET epoch = GREATEST(epoch, $1) RETURNING epoch"#;

const SUBJECT_EPOCH: &str =
    r#"SELECT epoch FROM "{schema}"."{prefix}subject_epochs" WHERE subject = $1"#;

const BUMP_SUBJECT_EPOCH: &str = r#"
INSERT INTO "{schema}"."{prefix}subject_epochs" AS e (subject, epoch) VALUES ($1, 1)
ON CONFLICT (subject) DO UPDATE SET epoch = e.epoch + 1
RETURNING epoch"#;

/// `$2` is at least 1 (the table keeps no zero epochs).
const RAISE_SUBJECT_EPOCH: &str = r#"
INSERT INTO "{schema}"."{prefix}subject_epochs" AS e (subject, epoch) VALUES ($1, $2)
ON CONFLICT (subject) DO UPDATE SET epoch = GREATEST(e.epoch, EXCLUDED.epoch)
RETURNING epoch"#;

/// One sweeper batch: locks at most `$2` forgettable records, skipping
/// rows another node's sweeper (or a writer) holds, and deletes them. Each
/// batch is its own short transaction.
const SWEEP_RECORDS: &str = r#"
DELETE FROM "{schema}"."{prefix}records"
WHERE forget_at <= $1 AND id IN (
    SELECT id FROM "{schema}"."{prefix}records"
    WHERE forget_at <= $1
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)"#;

/// One batch of pointers of the previous layout past their deadline whose
/// session is gone (a session kept alive longer keeps its pointer).
const SWEEP_POINTERS: &str = r#"
DELETE FROM "{schema}"."{prefix}legacy_tokens"
WHERE token_hash IN (
    SELECT l.token_hash FROM "{schema}"."{prefix}legacy_tokens" l
    WHERE l.forget_at <= $1 AND NOT EXISTS (
        SELECT 1 FROM "{schema}"."{prefix}records" r WHERE r.id = l.id AND r.forget_at > $1)
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)"#;

/// A global epoch row that went missing (the table emptied by hand)
/// comes back at `$1`, the current time: never lower than one it held.
const START_GLOBAL_EPOCH: &str = r#"
INSERT INTO "{schema}"."{prefix}global_epoch" (singleton, epoch) VALUES (true, $1)
ON CONFLICT (singleton) DO NOTHING"#;

/// `$1` id, `$2` kind, `$3` now.
const LOAD_ATTACHMENT: &str = r#"
SELECT generation, value FROM "{schema}"."{prefix}attachments"
WHERE id = $1 AND kind = $2 AND forget_at > $3"#;

/// Writes generation 1 where there is no attachment, or only a forgotten
/// one. `$1` id, `$2` kind, `$3` forget_at, `$4` value, `$5` now.
const CREATE_ATTACHMENT: &str = r#"
INSERT INTO "{schema}"."{prefix}attachments" AS a (id, kind, generation, forget_at, value)
VALUES ($1, $2, 1, $3, $4)
ON CONFLICT (id, kind) DO UPDATE
    SET generation = 1, forget_at = EXCLUDED.forget_at, value = EXCLUDED.value
    WHERE a.forget_at <= $5
RETURNING generation"#;

/// Compare-and-swap on the generation. `$1` id, `$2` kind, `$3`
/// forget_at, `$4` value, `$5` now, `$6` expected generation.
const SWAP_ATTACHMENT: &str = r#"
UPDATE "{schema}"."{prefix}attachments"
SET generation = generation + 1, forget_at = $3, value = $4
WHERE id = $1 AND kind = $2 AND forget_at > $5 AND generation = $6
RETURNING generation"#;

/// The live generation, after a compare-and-swap that did not write.
const CURRENT_ATTACHMENT: &str = r#"
SELECT generation FROM "{schema}"."{prefix}attachments"
WHERE id = $1 AND kind = $2 AND forget_at > $3"#;

const DELETE_ATTACHMENT: &str =
    r#"DELETE FROM "{schema}"."{prefix}attachments" WHERE id = $1 AND kind = $2"#;

/// One batch of attachments past their deadline or whose session is gone.
const SWEEP_ATTACHMENTS: &str = r#"
DELETE FROM "{schema}"."{prefix}attachments"
WHERE (id, kind) IN (
    SELECT a.id, a.kind FROM "{schema}"."{prefix}attachments" a
    WHERE a.forget_at <= $1 OR NOT EXISTS (
        SELECT 1 FROM "{schema}"."{prefix}records" r WHERE r.id = a.id)
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)"#;

/// `$1` at, `$2` nonce, `$3` forget_at, `$4` value.
const APPEND_JOURNAL: &str = r#"
INSERT INTO "{schema}"."{prefix}journal" (at, nonce, forget_at, value) VALUES ($1, $2, $3, $4)
ON CONFLICT (at, nonce) DO UPDATE SET forget_at = EXCLUDED.forget_at, value = EXCLUDED.value"#;

/// The newest entries: `$1` now, `$2` the page size plus one.
const JOURNAL_FIRST_PAGE: &str = r#"
SELECT at, nonce, value FROM "{schema}"."{prefix}journal"
WHERE forget_at > $1
ORDER BY at DESC, nonce DESC
LIMIT $2"#;

/// The entries older than (`$3`, `$4`).
const JOURNAL_PAGE: &str = r#"
SELECT at, nonce, value FROM "{schema}"."{prefix}journal"
WHERE forget_at > $1 AND (at, nonce) < ($3, $4)
ORDER BY at DESC, nonce DESC
LIMIT $2"#;

/// One batch of journal entries past their deadline.
const SWEEP_JOURNAL: &str = r#"
DELETE FROM "{schema}"."{prefix}journal"
WHERE (at, nonce) IN (
    SELECT at, nonce FROM "{schema}"."{prefix}journal"
    WHERE forget_at <= $1
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)"#;

/// One page of live records in id order after `$2` (the empty string
/// sorts first): `$1` now, `$3` the page size plus one.
const EXPORT_PAGE: &str = r#"
SELECT id, record FROM "{schema}"."{prefix}records"
WHERE forget_at > $1 AND id > $2
ORDER BY id
LIMIT $3"#;

impl Queries {
    /// The statements for one schema and prefix.
    pub(crate) fn new(schema: &str, prefix: &str) -> Self {
        let r = |sql: &str| render(sql, schema, prefix);
        Self {
            create: r(CREATE),
            load: r(LOAD),
            update: r(UPDATE),
            current_revision: r(CURRENT_REVISION),
            touch: r(TOUCH),
            delete: r(DELETE),
            find_legacy: r(FIND_LEGACY),
            ping: PING.to_owned(),
            list_subject: r(LIST_SUBJECT),
            delete_subject: r(DELETE_SUBJECT),
            global_epoch: r(GLOBAL_EPOCH),
            bump_global_epoch: r(BUMP_GLOBAL_EPOCH),
            raise_global_epoch: r(RAISE_GLOBAL_EPOCH),
            subject_epoch: r(SUBJECT_EPOCH),
            bump_subject_epoch: r(BUMP_SUBJECT_EPOCH),
            raise_subject_epoch: r(RAISE_SUBJECT_EPOCH),
            sweep_records: r(SWEEP_RECORDS),
            sweep_pointers: r(SWEEP_POINTERS),
            export_page: r(EXPORT_PAGE),
            start_global_epoch: r(START_GLOBAL_EPOCH),
            load_attachment: r(LOAD_ATTACHMENT),
            create_attachment: r(CREATE_ATTACHMENT),
            swap_attachment: r(SWAP_ATTACHMENT),
            current_attachment: r(CURRENT_ATTACHMENT),
            delete_attachment: r(DELETE_ATTACHMENT),
            sweep_attachments: r(SWEEP_ATTACHMENTS),
            append_journal: r(APPEND_JOURNAL),
            journal_first_page: r(JOURNAL_FIRST_PAGE),
            journal_page: r(JOURNAL_PAGE),
            sweep_journal: r(SWEEP_JOURNAL),
        }
    }
}
