//! Revocation epochs, the sweep (small `FOR UPDATE SKIP LOCKED` batches,
//! safe from many nodes at once) and paging through every record.

use async_trait::async_trait;
use tessera_core::store::StoreError;
use tessera_core::store::{Durability, Epochs, Maintenance, Page};
use tessera_core::{SessionRecord, Timestamp};

use tokio_postgres::types::ToSql;

use crate::records::{after_cursor, limit_plus_one};
use crate::rows::{column, from_db, to_db};
use crate::store::PostgresStore;

impl PostgresStore {
    /// Runs one epoch statement and reads the epoch it returns.
    async fn epoch(
        &self,
        what: &str,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Option<u64>, StoreError> {
        let row = self.query_opt(what, sql, params).await?;
        row.map(|row| column::<i64>(&row, 0, "epoch").map(from_db))
            .transpose()
    }

    /// Deletes with one batch statement until a batch comes back short.
    /// Rows another sweeper or a writer holds are skipped (`SKIP LOCKED`),
    /// so sweepers on several nodes split the work instead of waiting on
    /// each other, and none holds a lock for longer than one batch.
    async fn sweep_batches(
        &self,
        what: &str,
        sql: &str,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let batch = self.inner.sweep_batch;
        let mut removed = 0;
        loop {
            let deleted = self.execute(what, sql, &[&now.as_millis(), &batch]).await?;
            removed += deleted;
            if deleted < u64::try_from(batch).unwrap_or(u64::MAX) {
                return Ok(removed);
            }
        }
    }
}

const MISSING_GLOBAL_EPOCH: &str =
    "the global epoch row is missing even after it was put back; was the table changed by hand?";

/// The current time in milliseconds: where a global epoch starts.
pub(crate) fn epoch_now() -> i64 {
    tessera_core::Clock::now(&tessera_core::SystemClock)
        .as_millis()
        .max(0)
}

impl PostgresStore {
    /// Runs a statement on the global epoch row; a row that went missing
    /// is put back at the current time first (never lowering one that is
    /// there), then the statement runs again.
    async fn global_epoch_statement(
        &self,
        what: &str,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        if let Some(epoch) = self.epoch(what, sql, params).await? {
            return Ok(epoch);
        }
        tracing::warn!(
            schema = self.schema(),
            "the global epoch row was missing; it starts again at the current time"
        );
        let start = &self.inner.sql.start_global_epoch;
        self.execute("put back the global epoch", start, &[&epoch_now()])
            .await?;
        self.epoch(what, sql, params)
            .await?
            .ok_or_else(|| StoreError::corrupt(MISSING_GLOBAL_EPOCH))
    }
}

#[async_trait]
impl Epochs for PostgresStore {
    /// Every epoch is committed to the database before it is returned.
    fn durability(&self) -> Durability {
        Durability::Persistent
    }

    async fn global_epoch(&self) -> Result<u64, StoreError> {
        let sql = &self.inner.sql.global_epoch;
        self.global_epoch_statement("read the global epoch", sql, &[])
            .await
    }

    async fn bump_global_epoch(&self) -> Result<u64, StoreError> {
        let sql = &self.inner.sql.bump_global_epoch;
        self.global_epoch_statement("bump the global epoch", sql, &[])
            .await
    }

    async fn raise_global_epoch(&self, epoch: u64) -> Result<u64, StoreError> {
        let sql = &self.inner.sql.raise_global_epoch;
        self.global_epoch_statement("raise the global epoch", sql, &[&to_db(epoch)])
            .await
    }

    async fn subject_epoch(&self, subject: &str) -> Result<u64, StoreError> {
        let sql = &self.inner.sql.subject_epoch;
        Ok(self
            .epoch("read a subject epoch", sql, &[&subject])
            .await?
            .unwrap_or(0))
    }

    async fn bump_subject_epoch(&self, subject: &str) -> Result<u64, StoreError> {
        let sql = &self.inner.sql.bump_subject_epoch;
        self.epoch("bump a subject epoch", sql, &[&subject])
            .await?
            .ok_or_else(|| StoreError::corrupt("bumping a subject epoch returned no row"))
    }

    async fn raise_subject_epoch(&self, subject: &str, epoch: u64) -> Result<u64, StoreError> {
        if epoch == 0 {
            // Every epoch is at least 0; the table keeps no zeros.
            return self.subject_epoch(subject).await;
        }
        let sql = &self.inner.sql.raise_subject_epoch;
        self.epoch("raise a subject epoch", sql, &[&subject, &to_db(epoch)])
            .await?
            .ok_or_else(|| StoreError::corrupt("raising a subject epoch returned no row"))
    }
}

#[async_trait]
impl Maintenance for PostgresStore {
    async fn sweep_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        let sql = &self.inner.sql;
        let records = self
            .sweep_batches("sweep expired sessions", &sql.sweep_records, now)
            .await?;
        let pointers = self
            .sweep_batches(
                "sweep pointers of the previous layout",
                &sql.sweep_pointers,
                now,
            )
            .await?;
        // After the records: the attachments of sessions swept just now go too.
        let attachments = self
            .sweep_batches("sweep attachments", &sql.sweep_attachments, now)
            .await?;
        let journal = self
            .sweep_batches("sweep the journal", &sql.sweep_journal, now)
            .await?;
        Ok(records + pointers + attachments + journal)
    }

    async fn export_page(
        &self,
        cursor: Option<&str>,
        limit: usize,
        now: Timestamp,
    ) -> Result<Page<SessionRecord>, StoreError> {
        let params: [&(dyn ToSql + Sync); 3] = [
            &now.as_millis(),
            &after_cursor(cursor)?,
            &limit_plus_one(limit),
        ];
        self.record_page(
            "export a page of sessions",
            &self.inner.sql.export_page,
            &params,
            limit,
        )
        .await
    }
}
