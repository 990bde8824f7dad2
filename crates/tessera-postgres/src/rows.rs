//! Reading table rows: every column through `try_get`, so that a table
//! whose shape drifted (a column altered by hand, a missing one) is an
//! error the operator can read, never a panic.

use tessera_core::codec;
use tessera_core::store::StoreError;
use tessera_core::{Revision, SessionId, SessionRecord, TokenHash};
use tokio_postgres::Row;
use tokio_postgres::types::FromSql;

/// Column `index` (called `name` in messages) of a row.
pub(crate) fn column<'a, T: FromSql<'a>>(
    row: &'a Row,
    index: usize,
    name: &str,
) -> Result<T, StoreError> {
    row.try_get(index).map_err(|e| {
        StoreError::corrupt(format!(
            "cannot read column `{name}` ({e}); the table does not have the shape this \
             build's migrations give it: was it changed by hand?"
        ))
    })
}

/// Database columns are signed; epochs are unsigned and far below
/// `i64::MAX` in practice, so the conversions saturate.
pub(crate) fn to_db(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// An epoch read back (never negative: the tables check it).
pub(crate) fn from_db(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// The record in column `index`.
pub(crate) fn record(row: &Row, index: usize) -> Result<SessionRecord, StoreError> {
    codec::decode(column(row, index, "record")?, None)
}

/// The id in column `index`.
pub(crate) fn session_id(row: &Row, index: usize) -> Result<SessionId, StoreError> {
    let bytes: &[u8] = column(row, index, "id")?;
    <[u8; 16]>::try_from(bytes)
        .map(SessionId)
        .map_err(|_| StoreError::corrupt(format!("a session id of {} bytes", bytes.len())))
}

/// A revision as the record keeps it (40 bytes), from column `index`.
pub(crate) fn revision(row: &Row, index: usize) -> Result<Option<Revision>, StoreError> {
    let Some(bytes) = column::<Option<&[u8]>>(row, index, "revision")? else {
        return Ok(None);
    };
    let bad = || StoreError::corrupt(format!("a stored revision of {} bytes", bytes.len()));
    let version = bytes.get(..8).ok_or_else(bad)?;
    let token = bytes.get(8..).ok_or_else(bad)?;
    Ok(Some(Revision {
        version: u64::from_be_bytes(version.try_into().map_err(|_| bad())?),
        token: TokenHash(token.try_into().map_err(|_| bad())?),
    }))
}
