//! The conformance suite catches stores that break a guarantee: each broken
//! store below breaks one, and the suite must fail the case that covers it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tessera_core::testkit;
use tessera_core::{
    CreateOutcome, ExportPage, Session, SessionId, SessionStore, StoreError, StoredEntry,
    Timestamp, TokenHash, Tombstone, WriteOutcome, async_trait, page_of_keys,
};

/// One way a store can be wrong.
#[derive(Clone, Copy, Default)]
struct Faults {
    /// Updates ignore the expected version (last write wins).
    last_write_wins: bool,
    /// Expired records keep loading.
    returns_expired: bool,
    /// Rotation copies the session but leaves the old key live.
    rotate_without_tombstone: bool,
    /// Deleted sessions stay in the subject index.
    leaky_subject_index: bool,
    /// Create overwrites existing keys.
    create_overwrites: bool,
    /// The sweeper removes nothing.
    never_sweeps: bool,
}

#[derive(Default)]
struct FaultyStore {
    faults: Faults,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<TokenHash, StoredEntry>,
    ids: HashMap<SessionId, TokenHash>,
    deleted: Vec<Arc<Session>>,
    epoch: u64,
    subject_epochs: HashMap<String, u64>,
}

fn poisoned() -> StoreError {
    StoreError::Unavailable {
        message: "poisoned".into(),
        source: None,
    }
}

impl FaultyStore {
    fn with(faults: Faults) -> Self {
        Self {
            faults,
            inner: Mutex::default(),
        }
    }

    fn visible(&self, forget_at: Timestamp, now: Timestamp) -> bool {
        self.faults.returns_expired || forget_at > now
    }

    fn live(&self, inner: &Inner, key: &TokenHash, now: Timestamp) -> Option<Arc<Session>> {
        match inner.entries.get(key) {
            Some(StoredEntry::Live(s)) if self.visible(s.forget_at(), now) => Some(s.clone()),
            _ => None,
        }
    }
}

#[async_trait]
impl SessionStore for FaultyStore {
    async fn create(
        &self,
        key: &TokenHash,
        session: &Session,
    ) -> Result<CreateOutcome, StoreError> {
        let mut inner = self.inner.lock().map_err(|_| poisoned())?;
        if !self.faults.create_overwrites
            && (inner.entries.contains_key(key) || inner.ids.contains_key(&session.id))
        {
            return Ok(CreateOutcome::AlreadyExists);
        }
        inner
            .entries
            .insert(*key, StoredEntry::Live(Arc::new(session.clone())));
        inner.ids.insert(session.id, *key);
        Ok(CreateOutcome::Created)
    }

    async fn load(
        &self,
        key: &TokenHash,
        now: Timestamp,
    ) -> Result<Option<StoredEntry>, StoreError> {
        if self.faults.last_write_wins {
            // Let concurrent writers interleave between read and write, as a
            // networked store would, so lost updates show on any machine.
            tokio::task::yield_now().await;
        }
        let inner = self.inner.lock().map_err(|_| poisoned())?;
        Ok(match inner.entries.get(key) {
            Some(StoredEntry::Live(s)) if self.visible(s.forget_at(), now) => {
                Some(StoredEntry::Live(s.clone()))
            }
            Some(StoredEntry::Tombstone(t)) if self.visible(t.forget_at, now) => {
                Some(StoredEntry::Tombstone(*t))
            }
            _ => None,
        })
    }

    async fn load_by_id(
        &self,
        id: &SessionId,
        now: Timestamp,
    ) -> Result<Option<(TokenHash, Arc<Session>)>, StoreError> {
        let inner = self.inner.lock().map_err(|_| poisoned())?;
        Ok(inner
            .ids
            .get(id)
            .and_then(|k| self.live(&inner, k, now).map(|s| (*k, s))))
    }

    async fn update(
        &self,
        key: &TokenHash,
        session: &Session,
        expected: u64,
        now: Timestamp,
    ) -> Result<WriteOutcome, StoreError> {
        let mut inner = self.inner.lock().map_err(|_| poisoned())?;
        match self.live(&inner, key, now) {
            None => Ok(WriteOutcome::NotFound),
            Some(s) if s.version != expected && !self.faults.last_write_wins => {
                Ok(WriteOutcome::VersionConflict { current: s.version })
            }
            Some(_) => {
                inner
                    .entries
                    .insert(*key, StoredEntry::Live(Arc::new(session.clone())));
                Ok(WriteOutcome::Written)
            }
        }
    }

    async fn touch(
        &self,
        key: &TokenHash,
        last_seen_at: Timestamp,
        now: Timestamp,
    ) -> Result<WriteOutcome, StoreError> {
        let mut inner = self.inner.lock().map_err(|_| poisoned())?;
        let Some(s) = self.live(&inner, key, now) else {
            return Ok(WriteOutcome::NotFound);
        };
        let mut touched = (*s).clone();
        touched.last_seen_at = touched.last_seen_at.max(last_seen_at);
        inner
            .entries
            .insert(*key, StoredEntry::Live(Arc::new(touched)));
        Ok(WriteOutcome::Written)
    }

    async fn rotate(
        &self,
        old: &TokenHash,
        new: &TokenHash,
        session: &Session,
        expected: u64,
        tombstone: &Tombstone,
        now: Timestamp,
    ) -> Result<WriteOutcome, StoreError> {
        let mut inner = self.inner.lock().map_err(|_| poisoned())?;
        match self.live(&inner, old, now) {
            None => return Ok(WriteOutcome::NotFound),
            Some(s) if s.version != expected => {
                return Ok(WriteOutcome::VersionConflict { current: s.version });
            }
            Some(_) => {}
        }
        inner
            .entries
            .insert(*new, StoredEntry::Live(Arc::new(session.clone())));
        if !self.faults.rotate_without_tombstone {
            inner
                .entries
                .insert(*old, StoredEntry::Tombstone(*tombstone));
        }
        inner.ids.insert(session.id, *new);
        Ok(WriteOutcome::Written)
    }

    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        let mut inner = self.inner.lock().map_err(|_| poisoned())?;
        let Some(key) = inner.ids.remove(id) else {
            return Ok(false);
        };
        match inner.entries.remove(&key) {
            Some(StoredEntry::Live(s)) => {
                inner.deleted.push(s);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn list_by_subject(
        &self,
        subject: &str,
        now: Timestamp,
    ) -> Result<Vec<Arc<Session>>, StoreError> {
        let inner = self.inner.lock().map_err(|_| poisoned())?;
        let mut found: Vec<Arc<Session>> = inner
            .ids
            .values()
            .filter_map(|k| self.live(&inner, k, now))
            .filter(|s| s.subject.as_deref() == Some(subject))
            .collect();
        if self.faults.leaky_subject_index {
            found.extend(
                inner
                    .deleted
                    .iter()
                    .filter(|s| s.subject.as_deref() == Some(subject))
                    .cloned(),
            );
        }
        Ok(found)
    }

    async fn global_epoch(&self) -> Result<u64, StoreError> {
        Ok(self.inner.lock().map_err(|_| poisoned())?.epoch)
    }

    async fn bump_global_epoch(&self) -> Result<u64, StoreError> {
        let mut inner = self.inner.lock().map_err(|_| poisoned())?;
        inner.epoch += 1;
        Ok(inner.epoch)
    }

    async fn subject_epoch(&self, subject: &str) -> Result<u64, StoreError> {
        let inner = self.inner.lock().map_err(|_| poisoned())?;
        Ok(inner.subject_epochs.get(subject).copied().unwrap_or(0))
    }

    async fn bump_subject_epoch(&self, subject: &str) -> Result<u64, StoreError> {
        let mut inner = self.inner.lock().map_err(|_| poisoned())?;
        let epoch = inner.subject_epochs.entry(subject.to_owned()).or_insert(0);
        *epoch += 1;
        Ok(*epoch)
    }

    async fn sweep_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        if self.faults.never_sweeps {
            return Ok(0);
        }
        let mut inner = self.inner.lock().map_err(|_| poisoned())?;
        let before = inner.entries.len();
        inner.entries.retain(|_, e| match e {
            StoredEntry::Live(s) => s.forget_at() > now,
            StoredEntry::Tombstone(t) => t.forget_at > now,
        });
        let Inner { entries, ids, .. } = &mut *inner;
        ids.retain(|_, k| matches!(entries.get(k), Some(StoredEntry::Live(_))));
        Ok((before - inner.entries.len()) as u64)
    }

    async fn export_page(
        &self,
        cursor: Option<&str>,
        limit: usize,
        now: Timestamp,
    ) -> Result<ExportPage, StoreError> {
        let inner = self.inner.lock().map_err(|_| poisoned())?;
        let (keys, next) = page_of_keys(inner.ids.values().copied(), cursor, limit)?;
        let sessions = keys
            .into_iter()
            .filter_map(|key| self.live(&inner, &key, now).map(|session| (key, session)))
            .collect();
        Ok(ExportPage { sessions, next })
    }
}

async fn report_for(faults: Faults) -> testkit::ConformanceReport {
    testkit::run_conformance(move || async move { FaultyStore::with(faults) }).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_correct_reference_store_passes() {
    let report = report_for(Faults::default()).await;
    assert!(report.is_success(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn last_write_wins_is_caught() {
    let report = report_for(Faults {
        last_write_wins: true,
        ..Faults::default()
    })
    .await;
    assert!(
        report.failed_case("store_update_is_compare_and_swap"),
        "{report}"
    );
    assert!(
        report.failed_case("concurrent_writers_lose_no_update"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn returning_expired_records_is_caught() {
    let report = report_for(Faults {
        returns_expired: true,
        ..Faults::default()
    })
    .await;
    assert!(
        report.failed_case("store_load_hides_expired_records"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotation_without_tombstone_is_caught() {
    let report = report_for(Faults {
        rotate_without_tombstone: true,
        ..Faults::default()
    })
    .await;
    assert!(
        report.failed_case("store_rotate_is_atomic_with_tombstone"),
        "{report}"
    );
    assert!(
        report.failed_case("reuse_after_grace_revokes_the_session"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leaky_subject_index_is_caught() {
    let report = report_for(Faults {
        leaky_subject_index: true,
        ..Faults::default()
    })
    .await;
    assert!(
        report.failed_case("store_subject_index_follows_every_change"),
        "{report}"
    );
    assert!(
        report.failed_case("store_delete_removes_session"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overwriting_create_is_caught() {
    let report = report_for(Faults {
        create_overwrites: true,
        ..Faults::default()
    })
    .await;
    assert!(
        report.failed_case("store_create_is_create_if_absent"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_that_never_sweeps_is_caught() {
    let report = report_for(Faults {
        never_sweeps: true,
        ..Faults::default()
    })
    .await;
    assert!(
        report.failed_case("store_sweep_removes_expired"),
        "{report}"
    );
}
