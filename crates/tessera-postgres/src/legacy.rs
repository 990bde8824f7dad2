//! The layout of migration 1, and its conversion by migration 2.
//!
//! Migration 1 kept one row per token in `{prefix}sessions`: a live
//! session under the SHA-256 of its token (the 53-character first format,
//! which names no session), as JSON (`{"v":1,"session":{…}}`), and a
//! tombstone under each rotated-away token.
//!
//! Migration 2 converts every live row, in batches, inside the migration's
//! transaction and so under its advisory lock: nodes starting together
//! convert once, and a node that starts meanwhile waits and then finds the
//! work done. Each session becomes a record of the current format under
//! its id, whose token hash is the old key (so the old token keeps working
//! until the manager replaces it at its first use), plus a pointer old key
//! → id in `{prefix}legacy_tokens`, which
//! [`Records::find_legacy`](tessera_core::store::Records::find_legacy)
//! follows. Tombstones are dropped (their tokens had been replaced
//! already), and so are rows this build cannot read, each with a warning:
//! they could not be loaded before either. Then the old table is dropped,
//! so that a node of an older release still running against the schema
//! fails loudly instead of writing sessions nobody reads.

use tessera_core::codec;
use tessera_core::store::StoreError;
use tessera_core::{Timestamp, TokenHash};
use tokio_postgres::Transaction;

use crate::migrations::render;

/// Rows read and written per statement.
const BATCH: i64 = 1000;

/// The live rows of the old table after a key, in key order. The comment
/// names the statement in `pg_stat_activity`.
const READ: &str = r#"/* tessera: convert legacy sessions */
SELECT token_hash, session_id, last_seen_at, forget_at, record
FROM "{schema}"."{prefix}sessions"
WHERE live AND token_hash > $1
ORDER BY token_hash
LIMIT $2"#;

const WRITE_RECORDS: &str = r#"
INSERT INTO "{schema}"."{prefix}records" (id, subject, forget_at, record)
SELECT * FROM unnest($1::bytea[], $2::text[], $3::bigint[], $4::bytea[])
ON CONFLICT (id) DO NOTHING"#;

const WRITE_POINTERS: &str = r#"
INSERT INTO "{schema}"."{prefix}legacy_tokens" (token_hash, id, forget_at)
SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::bigint[])
ON CONFLICT (token_hash) DO NOTHING"#;

const DROP_OLD: &str = r#"DROP TABLE "{schema}"."{prefix}sessions""#;

/// One batch of converted sessions, as the columns of the inserts.
#[derive(Default)]
struct Batch {
    keys: Vec<Vec<u8>>,
    ids: Vec<Vec<u8>>,
    subjects: Vec<Option<String>>,
    forget_ats: Vec<i64>,
    records: Vec<Vec<u8>>,
}

/// Converts every live session of the old table and drops the table.
pub(crate) async fn convert(
    tx: &Transaction<'_>,
    schema: &str,
    prefix: &str,
) -> Result<(), tokio_postgres::Error> {
    let read = tx.prepare(&render(READ, schema, prefix)).await?;
    let write_records = tx.prepare(&render(WRITE_RECORDS, schema, prefix)).await?;
    let write_pointers = tx.prepare(&render(WRITE_POINTERS, schema, prefix)).await?;
    let mut after: Vec<u8> = Vec::new();
    let (mut converted, mut skipped) = (0u64, 0u64);
    loop {
        let rows = tx.query(&read, &[&after, &BATCH]).await?;
        let mut batch = Batch::default();
        for row in &rows {
            let key: &[u8] = row.try_get(0)?;
            let id: &[u8] = row.try_get(1)?;
            let last_seen_at: i64 = row.try_get(2)?;
            let forget_at: i64 = row.try_get(3)?;
            let bytes: &[u8] = row.try_get(4)?;
            if let Err(error) = batch.push(key, last_seen_at, forget_at, bytes) {
                skipped += 1;
                tracing::warn!(
                    schema,
                    prefix,
                    session_id = %hex(id),
                    %error,
                    "a session of the previous layout cannot be read and is not converted"
                );
            }
        }
        if !batch.ids.is_empty() {
            tx.execute(
                &write_records,
                &[
                    &batch.ids,
                    &batch.subjects,
                    &batch.forget_ats,
                    &batch.records,
                ],
            )
            .await?;
            tx.execute(
                &write_pointers,
                &[&batch.keys, &batch.ids, &batch.forget_ats],
            )
            .await?;
            converted += batch.ids.len() as u64;
        }
        match rows.last() {
            Some(last) if rows.len() as i64 == BATCH => {
                after = last.try_get::<_, &[u8]>(0)?.to_vec()
            }
            _ => break,
        }
    }
    tx.batch_execute(&render(DROP_OLD, schema, prefix)).await?;
    tracing::info!(
        schema,
        prefix,
        converted,
        skipped,
        "converted the sessions of the previous PostgreSQL layout"
    );
    Ok(())
}

impl Batch {
    /// Adds one old row as a record of the current format. `last_seen_at`
    /// is the old row's column, which touching moved without rewriting the
    /// JSON; `forget_at` is the deadline the old row was written with.
    fn push(
        &mut self,
        key: &[u8],
        last_seen_at: i64,
        forget_at: i64,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        let hash = <[u8; 32]>::try_from(key)
            .map(TokenHash)
            .map_err(|_| StoreError::corrupt(format!("token hash of {} bytes", key.len())))?;
        let mut record = codec::decode_legacy(bytes, &hash)?;
        record.last_seen_at = record.last_seen_at.max(Timestamp(last_seen_at));
        self.records
            .push(codec::encode(&record, Timestamp(forget_at)));
        self.keys.push(key.to_vec());
        self.ids.push(record.id.0.to_vec());
        self.subjects.push(record.subject);
        self.forget_ats.push(forget_at);
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
