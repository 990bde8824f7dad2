//! Records and the subject index: one row per session, found by its id
//! (validation's one primary-key read), or by subject through an index.

use async_trait::async_trait;
use tessera_core::codec;
use tessera_core::store::StoreError;
use tessera_core::store::{
    CreateOutcome, Page, Records, SubjectIndex, WriteOutcome, id_cursor, parse_id_cursor,
};
use tessera_core::{Revision, SessionId, SessionRecord, Timestamp, TokenHash};

use tokio_postgres::types::ToSql;

use crate::rows::{column, record, revision, session_id};
use crate::store::PostgresStore;

/// A page size as SQL's `LIMIT`, plus the one row that tells whether
/// another page follows.
pub(crate) fn limit_plus_one(limit: usize) -> i64 {
    i64::try_from(limit.max(1)).unwrap_or(i64::MAX - 1) + 1
}

/// Cuts the look-ahead row off a page of records in id order; the cursor
/// resumes after the last one kept.
pub(crate) fn page_of(items: Vec<SessionRecord>, limit: usize) -> Page<SessionRecord> {
    Page::of_one_more(items, limit, |r| id_cursor(&r.id))
}

/// The id a cursor resumes after, as the bytes SQL compares (`''` first).
pub(crate) fn after_cursor(cursor: Option<&str>) -> Result<Vec<u8>, StoreError> {
    Ok(match cursor {
        Some(text) => parse_id_cursor(text)?.0.to_vec(),
        None => Vec::new(),
    })
}

impl PostgresStore {
    /// A page of records from `sql`, whose rows carry the record in their
    /// second column and which asks for `limit_plus_one(limit)` rows.
    pub(crate) async fn record_page(
        &self,
        what: &str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        limit: usize,
    ) -> Result<Page<SessionRecord>, StoreError> {
        let rows = self.query(what, sql, params).await?;
        let items = rows
            .iter()
            .map(|row| record(row, 1))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(page_of(items, limit))
    }
}

#[async_trait]
impl Records for PostgresStore {
    async fn create(
        &self,
        record: &SessionRecord,
        forget_at: Timestamp,
    ) -> Result<CreateOutcome, StoreError> {
        let bytes = codec::encode(record, forget_at);
        let inserted = self
            .execute(
                "create a session",
                &self.inner.sql.create,
                &[
                    &&record.id.0[..],
                    &record.subject,
                    &forget_at.as_millis(),
                    &bytes,
                ],
            )
            .await?;
        Ok(if inserted == 1 {
            CreateOutcome::Created
        } else {
            CreateOutcome::AlreadyExists
        })
    }

    async fn load(
        &self,
        id: &SessionId,
        now: Timestamp,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let row = self
            .query_opt(
                "load a session",
                &self.inner.sql.load,
                &[&&id.0[..], &now.as_millis()],
            )
            .await?;
        row.map(|row| record(&row, 0)).transpose()
    }

    async fn update(
        &self,
        record: &SessionRecord,
        expected: Revision,
        forget_at: Timestamp,
        now: Timestamp,
    ) -> Result<WriteOutcome, StoreError> {
        let bytes = codec::encode(record, forget_at);
        let now_ms = now.as_millis();
        let row = self
            .query_opt(
                "update a session",
                &self.inner.sql.update,
                &[
                    &&record.id.0[..],
                    &record.subject,
                    &forget_at.as_millis(),
                    &bytes,
                    &now_ms,
                    &&expected.to_bytes()[..],
                ],
            )
            .await?
            .ok_or_else(|| StoreError::corrupt("compare-and-swap returned no row"))?;
        if column::<bool>(&row, 0, "written")? {
            return Ok(WriteOutcome::Written);
        }
        let seen = match revision(&row, 1)? {
            // The statement's snapshot showed the expected revision, but a
            // concurrent writer committed (or deleted) first: read what is
            // there now.
            Some(seen) if seen == expected => self
                .query_opt(
                    "read the current revision",
                    &self.inner.sql.current_revision,
                    &[&&record.id.0[..], &now_ms],
                )
                .await?
                .map(|row| revision(&row, 0))
                .transpose()?
                .flatten(),
            other => other,
        };
        Ok(match seen {
            Some(current) => WriteOutcome::Conflict { current },
            None => WriteOutcome::NotFound,
        })
    }

    async fn touch(
        &self,
        id: &SessionId,
        last_seen_at: Timestamp,
        forget_at: Timestamp,
        now: Timestamp,
    ) -> Result<WriteOutcome, StoreError> {
        let touched = self
            .execute(
                "touch a session",
                &self.inner.sql.touch,
                &[
                    &&id.0[..],
                    &last_seen_at.as_millis(),
                    &forget_at.as_millis(),
                    &now.as_millis(),
                ],
            )
            .await?;
        Ok(if touched == 1 {
            WriteOutcome::Written
        } else {
            WriteOutcome::NotFound
        })
    }

    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        let deleted = self
            .execute("delete a session", &self.inner.sql.delete, &[&&id.0[..]])
            .await?;
        Ok(deleted > 0)
    }

    async fn find_legacy(
        &self,
        key: &TokenHash,
        now: Timestamp,
    ) -> Result<Option<SessionId>, StoreError> {
        // Migration 2 converted every session of the previous layout
        // (src/legacy.rs): its record exists, and a pointer leads to it.
        let row = self
            .query_opt(
                "find a session of the previous layout",
                &self.inner.sql.find_legacy,
                &[&&key.0[..], &now.as_millis()],
            )
            .await?;
        row.map(|row| session_id(&row, 0)).transpose()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.query_opt("ping", &self.inner.sql.ping, &[]).await?;
        Ok(())
    }
}

#[async_trait]
impl SubjectIndex for PostgresStore {
    async fn list_subject(
        &self,
        subject: &str,
        cursor: Option<&str>,
        limit: usize,
        now: Timestamp,
    ) -> Result<Page<SessionRecord>, StoreError> {
        let after = after_cursor(cursor)?;
        let params: [&(dyn ToSql + Sync); 4] =
            [&subject, &now.as_millis(), &after, &limit_plus_one(limit)];
        self.record_page(
            "list a subject's sessions",
            &self.inner.sql.list_subject,
            &params,
            limit,
        )
        .await
    }

    async fn delete_subject(
        &self,
        subject: &str,
        except: Option<&SessionId>,
        now: Timestamp,
    ) -> Result<Vec<SessionId>, StoreError> {
        let except = except.map(|id| &id.0[..]);
        let rows = self
            .query(
                "delete a subject's sessions",
                &self.inner.sql.delete_subject,
                &[&subject, &now.as_millis(), &except],
            )
            .await?;
        rows.iter().map(|row| session_id(row, 0)).collect()
    }
}
