//! A [`SessionStore`] wrapper that times every call into the store latency
//! histograms; it changes nothing about what the store does.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use tessera::{
    CreateOutcome, Session, SessionId, SessionStore, StoreError, StoredEntry, Timestamp, TokenHash,
    Tombstone, WriteOutcome, async_trait,
};

use crate::metrics::{Metrics, StoreOp};

/// Times each call of the inner store.
pub struct MeteredStore {
    inner: Arc<dyn SessionStore>,
    metrics: Arc<Metrics>,
}

impl MeteredStore {
    /// Wraps `inner`, recording into `metrics`.
    pub fn new(inner: Arc<dyn SessionStore>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }

    async fn timed<T>(
        &self,
        op: StoreOp,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let result = call.await;
        self.metrics
            .record_store(op, result.is_ok(), started.elapsed());
        result
    }
}

#[async_trait]
impl SessionStore for MeteredStore {
    async fn create(
        &self,
        key: &TokenHash,
        session: &Session,
    ) -> Result<CreateOutcome, StoreError> {
        self.timed(StoreOp::Create, self.inner.create(key, session))
            .await
    }

    async fn load(
        &self,
        key: &TokenHash,
        now: Timestamp,
    ) -> Result<Option<StoredEntry>, StoreError> {
        self.timed(StoreOp::Load, self.inner.load(key, now)).await
    }

    async fn load_by_id(
        &self,
        id: &SessionId,
        now: Timestamp,
    ) -> Result<Option<(TokenHash, Arc<Session>)>, StoreError> {
        self.timed(StoreOp::LoadById, self.inner.load_by_id(id, now))
            .await
    }

    async fn update(
        &self,
        key: &TokenHash,
        session: &Session,
        expected_version: u64,
        now: Timestamp,
    ) -> Result<WriteOutcome, StoreError> {
        self.timed(
            StoreOp::Update,
            self.inner.update(key, session, expected_version, now),
        )
        .await
    }

    async fn touch(
        &self,
        key: &TokenHash,
        last_seen_at: Timestamp,
        now: Timestamp,
    ) -> Result<WriteOutcome, StoreError> {
        self.timed(StoreOp::Touch, self.inner.touch(key, last_seen_at, now))
            .await
    }

    async fn rotate(
        &self,
        old_key: &TokenHash,
        new_key: &TokenHash,
        session: &Session,
        expected_version: u64,
        tombstone: &Tombstone,
        now: Timestamp,
    ) -> Result<WriteOutcome, StoreError> {
        self.timed(
            StoreOp::Rotate,
            self.inner
                .rotate(old_key, new_key, session, expected_version, tombstone, now),
        )
        .await
    }

    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        self.timed(StoreOp::Delete, self.inner.delete(id)).await
    }

    async fn list_by_subject(
        &self,
        subject: &str,
        now: Timestamp,
    ) -> Result<Vec<Arc<Session>>, StoreError> {
        self.timed(
            StoreOp::ListBySubject,
            self.inner.list_by_subject(subject, now),
        )
        .await
    }

    async fn delete_by_subject(
        &self,
        subject: &str,
        except: Option<&SessionId>,
        now: Timestamp,
    ) -> Result<Vec<SessionId>, StoreError> {
        self.timed(
            StoreOp::DeleteBySubject,
            self.inner.delete_by_subject(subject, except, now),
        )
        .await
    }

    async fn global_epoch(&self) -> Result<u64, StoreError> {
        self.timed(StoreOp::GlobalEpoch, self.inner.global_epoch())
            .await
    }

    async fn bump_global_epoch(&self) -> Result<u64, StoreError> {
        self.timed(StoreOp::BumpGlobalEpoch, self.inner.bump_global_epoch())
            .await
    }

    async fn subject_epoch(&self, subject: &str) -> Result<u64, StoreError> {
        self.timed(StoreOp::SubjectEpoch, self.inner.subject_epoch(subject))
            .await
    }

    async fn bump_subject_epoch(&self, subject: &str) -> Result<u64, StoreError> {
        self.timed(
            StoreOp::BumpSubjectEpoch,
            self.inner.bump_subject_epoch(subject),
        )
        .await
    }

    async fn sweep_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.timed(StoreOp::SweepExpired, self.inner.sweep_expired(now))
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.timed(StoreOp::Ping, self.inner.ping()).await
    }

    async fn export_page(
        &self,
        cursor: Option<&str>,
        limit: usize,
        now: Timestamp,
    ) -> Result<tessera::ExportPage, StoreError> {
        self.inner.export_page(cursor, limit, now).await
    }
}
