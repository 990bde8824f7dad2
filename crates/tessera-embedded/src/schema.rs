//! The on-disk layout: table definitions, the store format version, and
//! preparing a database file for use (creating it, or converting a file of
//! store format 1).
//!
//! Store format 2 (every table lives in one redb file):
//!
//! | table | key | value |
//! |---|---|---|
//! | `meta` | `"format_version"` (`2`), `"global_epoch"` | `u64` |
//! | `records` | session id (16 bytes) | the record as [`tessera_core::codec`] encodes it (format byte 2, revision, `last_seen_at` and forget deadline at fixed places) |
//! | `subject_epochs` | subject | `u64` |
//! | `legacy_tokens` | SHA-256 of a token of the first format (32 bytes) | session id |
//! | `attachments` | session id (16 bytes) and the kind's tag (1 byte) | generation (`u64` BE), forget deadline (`i64` ms BE), the attachment's bytes |
//! | `journal` | time (`i64` ms BE, sign bit flipped so that bytes sort as numbers) and nonce (8 bytes) | forget deadline (`i64` ms BE), the entry's bytes |
//!
//! `meta` holds the global epoch from the file's creation on, starting at
//! the time the file was created (in milliseconds: see
//! [`tessera_core::store::Epochs`]); a file that lacks it gets it at open.
//! `attachments` and `journal` came after the first files of format 2: a
//! file without them gets them at open (they are new tables; nothing
//! else changes, so the format stays 2).
//!
//! The subject index (subject → ids) is not a table: it lives in the
//! in-memory mirror, built from the records' subjects when the file is
//! opened (which reads and decodes every record anyway) and changed with
//! each commit, so it is exact and never holds a stale entry. On disk it
//! would cost every login a second B-tree write (each write of a random key
//! rewrites a 4 KiB page): measured, about 11 KB written per durable login
//! with such a table against 7 KB without.
//!
//! `legacy_tokens` holds one pointer per session converted from format 1;
//! a pointer lives as long as its session's record and goes when the
//! record is gone (swept, deleted or revoked) at the next sweep.
//!
//! Store format 1 (converted when opened, see [`crate::convert`]):
//!
//! | table | key | value |
//! |---|---|---|
//! | `meta` | `"format_version"` (`1`), `"global_epoch"` | `u64` |
//! | `entries` | token hash (32 bytes) | JSON record (`{"v":1,"session":{…}}`) or tombstone (`{"v":1,"tombstone":{…}}`) |
//! | `ids` | session id (16 bytes) | token hash of the live session |
//! | `subjects` (multimap) | subject | session ids |
//! | `subject_epochs` | subject | `u64` |
//!
//! Two versions live here: the *store* format (tables and their meaning,
//! kept in `meta`) and the *record* format (the first byte of each record,
//! owned by the codec).

use std::path::Path;

use redb::{MultimapTableHandle, ReadableTable, TableDefinition, TableHandle};

use crate::error::EmbeddedError;

/// The store format this build writes.
pub(crate) const STORE_FORMAT: u64 = 2;

/// The format of files written before records were keyed by session id;
/// converted when opened.
pub(crate) const LEGACY_STORE_FORMAT: u64 = 1;

pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub(crate) const RECORDS: TableDefinition<&[u8; 16], &[u8]> = TableDefinition::new("records");
pub(crate) const SUBJECT_EPOCHS: TableDefinition<&str, u64> =
    TableDefinition::new("subject_epochs");
pub(crate) const LEGACY_TOKENS: TableDefinition<&[u8; 32], &[u8; 16]> =
    TableDefinition::new("legacy_tokens");
pub(crate) const ATTACHMENTS: TableDefinition<&[u8; 17], &[u8]> =
    TableDefinition::new("attachments");
pub(crate) const JOURNAL: TableDefinition<&[u8; 16], &[u8]> = TableDefinition::new("journal");

/// The key of an attachment: the session id, then the kind's tag.
pub(crate) fn attachment_key(id: &tessera_core::SessionId, tag: u8) -> [u8; 17] {
    let mut key = [0; 17];
    key[..16].copy_from_slice(&id.0);
    key[16] = tag;
    key
}

/// The key of a journal entry: its time with the sign bit flipped (so that
/// the bytes sort as the numbers do), then its nonce.
pub(crate) fn journal_key(at: tessera_core::Timestamp, nonce: &[u8; 8]) -> [u8; 16] {
    let mut key = [0; 16];
    key[..8].copy_from_slice(&((at.0 as u64) ^ (1 << 63)).to_be_bytes());
    key[8..].copy_from_slice(nonce);
    key
}

/// The time and nonce of a journal key.
pub(crate) fn journal_position(key: &[u8; 16]) -> (tessera_core::Timestamp, [u8; 8]) {
    let mut at = [0; 8];
    at.copy_from_slice(&key[..8]);
    let mut nonce = [0; 8];
    nonce.copy_from_slice(&key[8..]);
    (
        tessera_core::Timestamp((u64::from_be_bytes(at) ^ (1 << 63)) as i64),
        nonce,
    )
}

/// The current time in milliseconds: where a new global epoch starts.
pub(crate) fn epoch_now() -> u64 {
    let now = tessera_core::Clock::now(&tessera_core::SystemClock);
    u64::try_from(now.as_millis()).unwrap_or(0)
}

/// The tables of store format 1, read once to convert them.
pub(crate) mod v1 {
    use redb::{MultimapTableDefinition, TableDefinition};

    pub(crate) const ENTRIES: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("entries");
    pub(crate) const IDS: TableDefinition<&[u8; 16], &[u8; 32]> = TableDefinition::new("ids");
    pub(crate) const SUBJECTS: MultimapTableDefinition<&str, &[u8; 16]> =
        MultimapTableDefinition::new("subjects");
}

pub(crate) const FORMAT_VERSION_KEY: &str = "format_version";
pub(crate) const GLOBAL_EPOCH_KEY: &str = "global_epoch";

/// Creates the tables of a new database, converts a database of store
/// format 1, or checks that an existing one has a format this build reads.
pub(crate) fn prepare(db: &redb::Database, path: &Path) -> Result<(), EmbeddedError> {
    let fail = |e: redb::Error| EmbeddedError::database(path, e);
    let mut txn = db.begin_write().map_err(|e| fail(e.into()))?;
    txn.set_durability(redb::Durability::Immediate)
        .map_err(|e| fail(e.into()))?;
    let found = {
        let meta = txn.open_table(META).map_err(|e| fail(e.into()))?;
        meta.get(FORMAT_VERSION_KEY)
            .map_err(|e| fail(e.into()))?
            .map(|v| v.value())
    };
    match found {
        Some(STORE_FORMAT) => {
            if complete(&txn).map_err(fail)? {
                // Nothing to change: no commit, so that reopening after a
                // write failure needs no free space.
                txn.abort().map_err(|e| fail(e.into()))?;
                return Ok(());
            }
            // A file of format 2 from before attachments and the journal,
            // or without a global epoch: add what it lacks.
            create_tables(&txn).map_err(|e| fail(e.into()))?;
            start_global_epoch(&txn).map_err(fail)?;
            txn.commit().map_err(|e| fail(e.into()))?;
            return Ok(());
        }
        Some(version) if version > STORE_FORMAT => {
            return Err(EmbeddedError::NewerFormat {
                path: path.to_owned(),
                found: version,
                supported: STORE_FORMAT,
            });
        }
        Some(LEGACY_STORE_FORMAT) => {
            let converted = crate::convert::format_1(&txn, path)?;
            start_global_epoch(&txn).map_err(fail)?;
            txn.open_table(META)
                .map_err(|e| fail(e.into()))?
                .insert(FORMAT_VERSION_KEY, STORE_FORMAT)
                .map_err(|e| fail(e.into()))?;
            txn.commit().map_err(|e| fail(e.into()))?;
            tracing::info!(
                path = %path.display(),
                sessions = converted.sessions,
                tombstones_dropped = converted.tombstones,
                "session database converted from store format 1 to 2"
            );
            return Ok(());
        }
        Some(version) => {
            return Err(EmbeddedError::corrupt(
                path,
                format!("unknown store format {version}"),
            ));
        }
        None => {}
    }
    // A file without a format version must hold no tables: anything else
    // was written by something other than this store.
    let tables = txn.list_tables().map_err(|e| fail(e.into()))?;
    let multimaps = txn.list_multimap_tables().map_err(|e| fail(e.into()))?;
    let names: Vec<String> = tables
        .map(|t| t.name().to_owned())
        .chain(multimaps.map(|t| t.name().to_owned()))
        .filter(|name| name != META.name())
        .collect();
    if let Some(name) = names.first() {
        return Err(EmbeddedError::corrupt(
            path,
            format!("it holds a table `{name}` but no store format version"),
        ));
    }
    {
        let mut meta = txn.open_table(META).map_err(|e| fail(e.into()))?;
        meta.insert(FORMAT_VERSION_KEY, STORE_FORMAT)
            .map_err(|e| fail(e.into()))?;
        // Above every epoch an earlier file in this place (one deleted or
        // lost) can have handed out: its revoked sealed sessions stay so.
        meta.insert(GLOBAL_EPOCH_KEY, epoch_now())
            .map_err(|e| fail(e.into()))?;
    }
    create_tables(&txn).map_err(|e| fail(e.into()))?;
    txn.commit().map_err(|e| fail(e.into()))?;
    Ok(())
}

/// Creates the tables of format 2 that do not exist yet.
pub(crate) fn create_tables(txn: &redb::WriteTransaction) -> Result<(), redb::TableError> {
    txn.open_table(RECORDS)?;
    txn.open_table(SUBJECT_EPOCHS)?;
    txn.open_table(LEGACY_TOKENS)?;
    txn.open_table(ATTACHMENTS)?;
    txn.open_table(JOURNAL)?;
    Ok(())
}

/// Whether a file of format 2 has every table and a global epoch.
fn complete(txn: &redb::WriteTransaction) -> Result<bool, redb::Error> {
    let names: Vec<String> = txn.list_tables()?.map(|t| t.name().to_owned()).collect();
    let has = |table: &str| names.iter().any(|name| name == table);
    if !(has(ATTACHMENTS.name()) && has(JOURNAL.name())) {
        return Ok(false);
    }
    let meta = txn.open_table(META)?;
    Ok(meta.get(GLOBAL_EPOCH_KEY)?.is_some())
}

/// Starts the global epoch at the current time if the file has none.
fn start_global_epoch(txn: &redb::WriteTransaction) -> Result<(), redb::Error> {
    let mut meta = txn.open_table(META)?;
    if meta.get(GLOBAL_EPOCH_KEY)?.is_none() {
        meta.insert(GLOBAL_EPOCH_KEY, epoch_now())?;
    }
    Ok(())
}
