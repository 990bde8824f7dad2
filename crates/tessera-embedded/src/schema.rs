//! The on-disk layout: table definitions, the store format version, and
//! preparing a database file for use.
//!
//! Layout of store format 1 (every table lives in one redb file):
//!
//! | table | key | value |
//! |---|---|---|
//! | `meta` | `"format_version"`, `"global_epoch"` | `u64` |
//! | `entries` | token hash (32 bytes) | record bytes of [`tessera_core::codec`] (`{"v":1,…}`) |
//! | `ids` | session id (16 bytes) | token hash of the live session |
//! | `subjects` (multimap) | subject | session ids |
//! | `subject_epochs` | subject | `u64` |
//!
//! Two versions live here: the *store* format (tables and their meaning,
//! kept in `meta`) and the *record* format (inside each record, owned by the
//! codec, which reads every version ever written).

use std::path::Path;

use redb::{MultimapTableDefinition, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::error::EmbeddedError;

/// The store format this build writes.
pub(crate) const STORE_FORMAT: u64 = 1;

/// The oldest store format this build opens.
pub(crate) const OLDEST_STORE_FORMAT: u64 = 1;

pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub(crate) const ENTRIES: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("entries");
pub(crate) const IDS: TableDefinition<&[u8; 16], &[u8; 32]> = TableDefinition::new("ids");
pub(crate) const SUBJECTS: MultimapTableDefinition<&str, &[u8; 16]> =
    MultimapTableDefinition::new("subjects");
pub(crate) const SUBJECT_EPOCHS: TableDefinition<&str, u64> =
    TableDefinition::new("subject_epochs");

pub(crate) const FORMAT_VERSION_KEY: &str = "format_version";
pub(crate) const GLOBAL_EPOCH_KEY: &str = "global_epoch";

/// Creates the tables of a new database, or checks that an existing one has
/// a format this build reads.
pub(crate) fn prepare(db: &redb::Database, path: &Path) -> Result<(), EmbeddedError> {
    let fail = |e: redb::Error| EmbeddedError::database(path, e);
    let txn = db.begin_write().map_err(|e| fail(e.into()))?;
    let fresh = {
        let mut meta = txn.open_table(META).map_err(|e| fail(e.into()))?;
        let found = meta
            .get(FORMAT_VERSION_KEY)
            .map_err(|e| fail(e.into()))?
            .map(|v| v.value());
        match found {
            Some(version) if version > STORE_FORMAT => {
                return Err(EmbeddedError::NewerFormat {
                    path: path.to_owned(),
                    found: version,
                    supported: STORE_FORMAT,
                });
            }
            Some(version) if version < OLDEST_STORE_FORMAT => {
                return Err(EmbeddedError::corrupt(
                    path,
                    format!("unknown store format {version}"),
                ));
            }
            Some(_) => false,
            None => {
                meta.insert(FORMAT_VERSION_KEY, STORE_FORMAT)
                    .map_err(|e| fail(e.into()))?;
                meta.insert(GLOBAL_EPOCH_KEY, 0)
                    .map_err(|e| fail(e.into()))?;
                true
            }
        }
    };
    if fresh {
        // A file without a format version must be empty: anything else was
        // written by something other than this store.
        let entries = txn.open_table(ENTRIES).map_err(|e| fail(e.into()))?;
        if !entries.is_empty().map_err(|e| fail(e.into()))? {
            return Err(EmbeddedError::corrupt(
                path,
                "it holds records but no store format version",
            ));
        }
        drop(entries);
        txn.open_table(IDS).map_err(|e| fail(e.into()))?;
        txn.open_multimap_table(SUBJECTS)
            .map_err(|e| fail(e.into()))?;
        txn.open_table(SUBJECT_EPOCHS).map_err(|e| fail(e.into()))?;
        txn.commit().map_err(|e| fail(e.into()))?;
    } else {
        txn.abort().map_err(|e| fail(e.into()))?;
    }
    Ok(())
}
