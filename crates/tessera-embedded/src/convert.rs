//! Converting a database of store format 1 (records keyed by the SHA-256 of
//! their token, JSON records and tombstones, see [`crate::schema`]) to
//! format 2, in the one write transaction that opens it.
//!
//! Every session of the old layout becomes a format 2 record under its id
//! ([`codec::decode_legacy`]: its token hash is the key it was stored
//! under, its forget deadline the one [`tessera_core::forget_at`] gives,
//! as the old layout implied) and leaves a pointer from its old key to its id in `legacy_tokens`, through which
//! [`find_legacy`](tessera_core::store::Records::find_legacy) finds it when
//! its holder comes back with the old token (`docs/tokens-and-cookies.md`).
//! Tombstones (tokens a rotation had replaced) are dropped. Records already
//! expired are converted too and hidden as any expired record is, until
//! the next sweep removes them: the conversion makes no decision about time.
//! Then the old tables go (the old subject index too: the subject index of
//! format 2 is built in memory from the records). Either all of it is
//! committed or none.

use std::collections::HashMap;
use std::path::Path;

use redb::ReadableTable;
use tessera_core::codec;
use tessera_core::store::StoreError;
use tessera_core::{SessionId, TokenHash};

use crate::error::EmbeddedError;
use crate::schema::{LEGACY_TOKENS, RECORDS, create_tables, v1};

/// What a conversion did.
#[derive(Debug, Default)]
pub(crate) struct Converted {
    /// Sessions converted.
    pub(crate) sessions: usize,
    /// Tombstones dropped.
    pub(crate) tombstones: usize,
}

/// Converts the tables of format 1 in `txn` (which the caller commits).
pub(crate) fn format_1(
    txn: &redb::WriteTransaction,
    path: &Path,
) -> Result<Converted, EmbeddedError> {
    let fail = |e: redb::Error| EmbeddedError::database(path, e);
    let mut converted = Converted::default();
    create_tables(txn).map_err(|e| fail(e.into()))?;
    let ids: HashMap<SessionId, TokenHash> = {
        let table = txn.open_table(v1::IDS).map_err(|e| fail(e.into()))?;
        let mut ids = HashMap::new();
        for row in table.iter().map_err(|e| fail(e.into()))? {
            let (id, key) = row.map_err(|e| fail(e.into()))?;
            ids.insert(SessionId(*id.value()), TokenHash(*key.value()));
        }
        ids
    };
    {
        let entries = txn.open_table(v1::ENTRIES).map_err(|e| fail(e.into()))?;
        let mut records = txn.open_table(RECORDS).map_err(|e| fail(e.into()))?;
        let mut legacy = txn.open_table(LEGACY_TOKENS).map_err(|e| fail(e.into()))?;
        for row in entries.iter().map_err(|e| fail(e.into()))? {
            let (key, bytes) = row.map_err(|e| fail(e.into()))?;
            let key = TokenHash(*key.value());
            let record = match codec::decode_legacy(bytes.value(), &key) {
                Ok(record) => record,
                // A rotated-away token: its session lives on under its
                // successor's key, which is converted on its own.
                Err(StoreError::Invalid { .. }) => {
                    converted.tombstones += 1;
                    continue;
                }
                Err(e) => {
                    return Err(EmbeddedError::corrupt(
                        path,
                        format!("format 1 record {}: {e}", key.to_hex()),
                    ));
                }
            };
            // The old layout kept its id index exact; a session it does not
            // point at would be converted on a guess, so the file is refused.
            if ids.get(&record.id) != Some(&key) {
                return Err(EmbeddedError::corrupt(
                    path,
                    format!(
                        "format 1 session {} is missing from the id index",
                        record.id
                    ),
                ));
            }
            let stored = codec::encode(&record, tessera_core::forget_at(&record));
            records
                .insert(&record.id.0, stored.as_slice())
                .map_err(|e| fail(e.into()))?;
            legacy
                .insert(&key.0, &record.id.0)
                .map_err(|e| fail(e.into()))?;
            converted.sessions += 1;
        }
    }
    if converted.sessions != ids.len() {
        return Err(EmbeddedError::corrupt(
            path,
            format!(
                "the format 1 id index has {} entries for {} sessions",
                ids.len(),
                converted.sessions
            ),
        ));
    }
    txn.delete_table(v1::ENTRIES).map_err(|e| fail(e.into()))?;
    txn.delete_table(v1::IDS).map_err(|e| fail(e.into()))?;
    txn.delete_multimap_table(v1::SUBJECTS)
        .map_err(|e| fail(e.into()))?;
    Ok(converted)
}
