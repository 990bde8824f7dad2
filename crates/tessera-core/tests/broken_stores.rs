//! The conformance suite catches stores that break the storage contract
//! (`docs/writing-a-store.md`): a reference store passes every case, none
//! skipped, and each broken variant below breaks one guarantee, which the
//! case that covers it must fail, for that reason.
//!
//! The reference store is the design of the example in the `store` module's
//! documentation: one mutex around a map of encoded records keyed by
//! session id, a subject map and the epochs. Faults of meaning (what a
//! write does) are switches inside it; faults of a failing operation are
//! an [`Intercept`] hook around it.
//!
//! The fault of the old key-per-token layout, a rotation that left the
//! old key live instead of a tombstone, has no counterpart: a rotation is
//! now an ordinary compare-and-swap update of the record under its id.
//! Its nearest kin is a compare-and-swap blind to the token hash, which
//! lets a rotation overwrite another (`version_only_cas`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use tessera_core::store::{
    Attachment, AttachmentKind, AttachmentWrite, Attachments, CreateOutcome, Durability, Epochs,
    Intercepted, Journal, JournalEntry, Maintenance, Operation, Page, Records, StoreError,
    SubjectIndex, WriteOutcome, journal_cursor, page_of_ids, parse_journal_cursor,
};
use tessera_core::testkit::{self, ConformanceReport, Outage};
use tessera_core::{
    Clock, Revision, SessionId, SessionRecord, SystemClock, Timestamp, TokenHash, codec,
};

/// One way a store can be wrong; the default is a correct store.
#[derive(Debug, Clone, Copy, Default)]
struct Faults {
    /// `update` ignores the expected revision: last write wins.
    last_write_wins: bool,
    /// `update` compares the version but not the token hash, so a write
    /// based on a reading from before a renewal lands after it.
    version_only_cas: bool,
    /// `load` and listings return records past their forget deadline.
    returns_forgotten: bool,
    /// Deleted records, and records whose subject changed, stay listed
    /// under their old subject (the index keeps a copy of what it indexed).
    leaky_subject_index: bool,
    /// `create` overwrites a record with the same id.
    create_overwrites: bool,
    /// `sweep_expired` removes nothing.
    never_sweeps: bool,
    /// `touch` writes what it is given, even when it is earlier.
    touch_moves_back: bool,
    /// Deleting a session leaves its attachments behind.
    attachments_outlive_sessions: bool,
    /// The journal lists its oldest entries first.
    journal_oldest_first: bool,
}

#[derive(Default)]
struct ReferenceStore {
    faults: Faults,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Every record as the codec encodes it, forget deadline included.
    records: HashMap<SessionId, Vec<u8>>,
    /// The ids of each subject's records.
    subjects: HashMap<String, HashSet<SessionId>>,
    global_epoch: u64,
    subject_epochs: HashMap<String, u64>,
    /// Each attachment with its forget deadline.
    attachments: HashMap<(SessionId, AttachmentKind), (Attachment, Timestamp)>,
    /// The journal in (time, nonce) order, each entry with its forget deadline.
    journal: BTreeMap<(Timestamp, [u8; 8]), (Vec<u8>, Timestamp)>,
    /// `leaky_subject_index` only: deleted records, as the index still has them.
    graveyard: HashMap<SessionId, Vec<u8>>,
}

impl Inner {
    fn index(&mut self, subject: &str, id: SessionId) {
        self.subjects
            .entry(subject.to_owned())
            .or_default()
            .insert(id);
    }

    fn unindex(&mut self, subject: &str, id: &SessionId) {
        if let Some(ids) = self.subjects.get_mut(subject) {
            ids.remove(id);
            if ids.is_empty() {
                self.subjects.remove(subject);
            }
        }
    }
}

/// Whether an encoded record may still be returned at `now`.
fn live(bytes: &[u8], now: Timestamp) -> bool {
    codec::forget_at_of(bytes).is_some_and(|forget_at| forget_at > now)
}

impl ReferenceStore {
    fn with(faults: Faults) -> Self {
        // A new global epoch starts at the current time (`Epochs`).
        let global_epoch = u64::try_from(SystemClock.now().as_millis()).expect("after 1970");
        Self {
            faults,
            inner: Mutex::new(Inner {
                global_epoch,
                ..Inner::default()
            }),
        }
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>, StoreError> {
        self.inner
            .lock()
            .map_err(|_| StoreError::corrupt("the store's lock is poisoned"))
    }

    fn visible(&self, bytes: &[u8], now: Timestamp) -> bool {
        self.faults.returns_forgotten || live(bytes, now)
    }

    fn accepts(&self, stored: Revision, expected: Revision) -> bool {
        if self.faults.last_write_wins {
            true
        } else if self.faults.version_only_cas {
            stored.version == expected.version
        } else {
            stored == expected
        }
    }

    /// Removes a record and its index entry (which the leaky index keeps,
    /// with a copy of the record); the bytes removed.
    fn remove(&self, inner: &mut Inner, id: &SessionId) -> Option<Vec<u8>> {
        if !self.faults.attachments_outlive_sessions {
            for kind in AttachmentKind::ALL {
                inner.attachments.remove(&(*id, kind));
            }
        }
        let bytes = inner.records.remove(id)?;
        if self.faults.leaky_subject_index {
            inner.graveyard.insert(*id, bytes.clone());
        } else if let Some(subject) = codec::subject_of(&bytes) {
            inner.unindex(subject, id);
        }
        Some(bytes)
    }
}

#[async_trait]
impl Records for ReferenceStore {
    async fn create(
        &self,
        record: &SessionRecord,
        forget_at: Timestamp,
    ) -> Result<CreateOutcome, StoreError> {
        let mut inner = self.lock()?;
        if inner.records.contains_key(&record.id) && !self.faults.create_overwrites {
            return Ok(CreateOutcome::AlreadyExists);
        }
        inner
            .records
            .insert(record.id, codec::encode(record, forget_at));
        if let Some(subject) = &record.subject {
            inner.index(subject, record.id);
        }
        Ok(CreateOutcome::Created)
    }

    async fn load(
        &self,
        id: &SessionId,
        now: Timestamp,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let inner = self.lock()?;
        match inner.records.get(id) {
            Some(bytes) if self.visible(bytes, now) => codec::decode(bytes, None).map(Some),
            _ => Ok(None),
        }
    }

    async fn update(
        &self,
        record: &SessionRecord,
        expected: Revision,
        forget_at: Timestamp,
        now: Timestamp,
    ) -> Result<WriteOutcome, StoreError> {
        let mut inner = self.lock()?;
        let Some(stored) = inner.records.get(&record.id).filter(|b| live(b, now)) else {
            return Ok(WriteOutcome::NotFound);
        };
        let current = codec::revision_of(stored)
            .ok_or_else(|| StoreError::corrupt("a stored record has no revision"))?;
        if !self.accepts(current, expected) {
            return Ok(WriteOutcome::Conflict { current });
        }
        let old_subject = codec::subject_of(stored).map(str::to_owned);
        inner
            .records
            .insert(record.id, codec::encode(record, forget_at));
        if old_subject != record.subject {
            if let Some(old) = old_subject.filter(|_| !self.faults.leaky_subject_index) {
                inner.unindex(&old, &record.id);
            }
            if let Some(subject) = &record.subject {
                inner.index(subject, record.id);
            }
        }
        Ok(WriteOutcome::Written)
    }

    async fn touch(
        &self,
        id: &SessionId,
        last_seen_at: Timestamp,
        forget_at: Timestamp,
        now: Timestamp,
    ) -> Result<WriteOutcome, StoreError> {
        let mut inner = self.lock()?;
        let Some(bytes) = inner.records.get_mut(id).filter(|b| live(b, now)) else {
            return Ok(WriteOutcome::NotFound);
        };
        if self.faults.touch_moves_back {
            bytes[codec::LAST_SEEN].copy_from_slice(&last_seen_at.as_millis().to_be_bytes());
            bytes[codec::FORGET_AT].copy_from_slice(&forget_at.as_millis().to_be_bytes());
        } else if !codec::touch_in_place(bytes, last_seen_at, forget_at) {
            return Err(StoreError::corrupt(
                "a stored record is not of the current format",
            ));
        }
        Ok(WriteOutcome::Written)
    }

    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        let mut inner = self.lock()?;
        Ok(self.remove(&mut inner, id).is_some())
    }

    async fn find_legacy(
        &self,
        _key: &TokenHash,
        _now: Timestamp,
    ) -> Result<Option<SessionId>, StoreError> {
        Ok(None)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.lock().map(drop)
    }
}

#[async_trait]
impl SubjectIndex for ReferenceStore {
    async fn list_subject(
        &self,
        subject: &str,
        cursor: Option<&str>,
        limit: usize,
        now: Timestamp,
    ) -> Result<Page<SessionRecord>, StoreError> {
        let inner = self.lock()?;
        let leaky = self.faults.leaky_subject_index;
        let mut found = HashMap::new();
        for id in inner.subjects.get(subject).into_iter().flatten() {
            let stored = inner
                .records
                .get(id)
                .or_else(|| inner.graveyard.get(id).filter(|_| leaky));
            let Some(bytes) = stored.filter(|b| self.visible(b, now)) else {
                continue;
            };
            let record = codec::decode(bytes, None)?;
            if leaky || record.subject.as_deref() == Some(subject) {
                found.insert(*id, record);
            }
        }
        let (ids, next) = page_of_ids(found.keys().copied(), cursor, limit)?;
        let items = ids.iter().filter_map(|id| found.remove(id)).collect();
        Ok(Page { items, next })
    }

    async fn delete_subject(
        &self,
        subject: &str,
        except: Option<&SessionId>,
        now: Timestamp,
    ) -> Result<Vec<SessionId>, StoreError> {
        let mut inner = self.lock()?;
        let ids: Vec<SessionId> = inner
            .subjects
            .get(subject)
            .into_iter()
            .flatten()
            .filter(|id| Some(*id) != except)
            .copied()
            .collect();
        let mut deleted = Vec::new();
        for id in ids {
            if let Some(bytes) = self.remove(&mut inner, &id)
                && live(&bytes, now)
            {
                deleted.push(id);
            }
        }
        Ok(deleted)
    }
}

#[async_trait]
impl Epochs for ReferenceStore {
    fn durability(&self) -> Durability {
        Durability::Volatile
    }

    async fn global_epoch(&self) -> Result<u64, StoreError> {
        Ok(self.lock()?.global_epoch)
    }

    async fn bump_global_epoch(&self) -> Result<u64, StoreError> {
        let mut inner = self.lock()?;
        inner.global_epoch += 1;
        Ok(inner.global_epoch)
    }

    async fn raise_global_epoch(&self, epoch: u64) -> Result<u64, StoreError> {
        let mut inner = self.lock()?;
        inner.global_epoch = inner.global_epoch.max(epoch);
        Ok(inner.global_epoch)
    }

    async fn subject_epoch(&self, subject: &str) -> Result<u64, StoreError> {
        Ok(self
            .lock()?
            .subject_epochs
            .get(subject)
            .copied()
            .unwrap_or(0))
    }

    async fn bump_subject_epoch(&self, subject: &str) -> Result<u64, StoreError> {
        let mut inner = self.lock()?;
        let epoch = inner.subject_epochs.entry(subject.to_owned()).or_insert(0);
        *epoch += 1;
        Ok(*epoch)
    }

    async fn raise_subject_epoch(&self, subject: &str, epoch: u64) -> Result<u64, StoreError> {
        let mut inner = self.lock()?;
        let stored = inner.subject_epochs.entry(subject.to_owned()).or_insert(0);
        *stored = (*stored).max(epoch);
        Ok(*stored)
    }
}

#[async_trait]
impl Maintenance for ReferenceStore {
    async fn sweep_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        if self.faults.never_sweeps {
            return Ok(0);
        }
        let mut inner = self.lock()?;
        let expired: Vec<SessionId> = inner
            .records
            .iter()
            .filter(|(_, bytes)| !live(bytes, now))
            .map(|(id, _)| *id)
            .collect();
        for id in &expired {
            self.remove(&mut inner, id);
        }
        let Inner {
            records,
            attachments,
            journal,
            ..
        } = &mut *inner;
        let before = attachments.len() + journal.len();
        attachments.retain(|(id, _), (_, forget_at)| *forget_at > now && records.contains_key(id));
        journal.retain(|_, (_, forget_at)| *forget_at > now);
        let removed = expired.len() + before - attachments.len() - journal.len();
        Ok(removed as u64)
    }

    async fn export_page(
        &self,
        cursor: Option<&str>,
        limit: usize,
        now: Timestamp,
    ) -> Result<Page<SessionRecord>, StoreError> {
        let inner = self.lock()?;
        let (ids, next) = page_of_ids(inner.records.keys().copied(), cursor, limit)?;
        let mut items = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(bytes) = inner.records.get(&id).filter(|b| live(b, now)) {
                items.push(codec::decode(bytes, None)?);
            }
        }
        Ok(Page { items, next })
    }
}

#[async_trait]
impl Attachments for ReferenceStore {
    async fn load_attachment(
        &self,
        id: &SessionId,
        kind: AttachmentKind,
        now: Timestamp,
    ) -> Result<Option<Attachment>, StoreError> {
        let inner = self.lock()?;
        Ok(inner
            .attachments
            .get(&(*id, kind))
            .filter(|(_, forget_at)| *forget_at > now)
            .map(|(attachment, _)| attachment.clone()))
    }

    async fn store_attachment(
        &self,
        id: &SessionId,
        kind: AttachmentKind,
        value: &[u8],
        expected: Option<u64>,
        forget_at: Timestamp,
        now: Timestamp,
    ) -> Result<AttachmentWrite, StoreError> {
        let mut inner = self.lock()?;
        let current = inner
            .attachments
            .get(&(*id, kind))
            .filter(|(_, forget_at)| *forget_at > now)
            .map(|(attachment, _)| attachment.generation);
        if current != expected {
            return Ok(AttachmentWrite::Conflict { current });
        }
        let generation = current.map_or(1, |g| g + 1);
        let value = value.to_vec();
        inner
            .attachments
            .insert((*id, kind), (Attachment { generation, value }, forget_at));
        Ok(AttachmentWrite::Written { generation })
    }

    async fn delete_attachment(
        &self,
        id: &SessionId,
        kind: AttachmentKind,
    ) -> Result<bool, StoreError> {
        Ok(self.lock()?.attachments.remove(&(*id, kind)).is_some())
    }
}

#[async_trait]
impl Journal for ReferenceStore {
    async fn append_journal(
        &self,
        entry: &JournalEntry,
        forget_at: Timestamp,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock()?;
        inner
            .journal
            .insert((entry.at, entry.nonce), (entry.value.clone(), forget_at));
        Ok(())
    }

    async fn journal_page(
        &self,
        cursor: Option<&str>,
        limit: usize,
        now: Timestamp,
    ) -> Result<Page<JournalEntry>, StoreError> {
        let after = cursor.map(parse_journal_cursor).transpose()?;
        let inner = self.lock()?;
        let limit = limit.max(1);
        let entry = |((at, nonce), (value, _)): (&(Timestamp, [u8; 8]), &(Vec<u8>, Timestamp))| {
            JournalEntry {
                at: *at,
                nonce: *nonce,
                value: value.clone(),
            }
        };
        let live = |(_, (_, forget_at)): &(_, &(Vec<u8>, Timestamp))| *forget_at > now;
        let items: Vec<JournalEntry> = if self.faults.journal_oldest_first {
            let newer = match after {
                Some(position) => inner.journal.range(position..),
                None => inner.journal.range(..),
            };
            newer
                .filter(|(key, _)| Some(**key) != after)
                .filter(live)
                .take(limit + 1)
                .map(entry)
                .collect()
        } else {
            let older = match after {
                Some(position) => inner.journal.range(..position),
                None => inner.journal.range(..),
            };
            older
                .rev()
                .filter(live)
                .take(limit + 1)
                .map(entry)
                .collect()
        };
        Ok(Page::of_one_more(items, limit, journal_cursor))
    }
}

/// Runs the suite on the reference store with `faults`, wrapped in `hook`
/// (which yields before every operation, as a networked store would, so
/// that concurrent requests interleave on any machine).
async fn report_for(faults: Faults, hook: Outage) -> ConformanceReport {
    let report = testkit::run_conformance(move || async move {
        Intercepted::new(ReferenceStore::with(faults), hook)
    })
    .await;
    println!("{faults:?} {hook:?}: {report}");
    report
}

async fn report_with(faults: Faults) -> ConformanceReport {
    report_for(faults, Outage::yielding()).await
}

/// The named case failed, and for the stated reason (its message carries
/// `why`), not for some other.
#[track_caller]
fn assert_caught(report: &ConformanceReport, case: &str, why: &str) {
    assert!(
        testkit::cases().iter().any(|c| c.name == case),
        "the suite has no case {case}"
    );
    let Some((_, message)) = report.failed.iter().find(|(name, _)| *name == case) else {
        panic!("{case} did not catch the fault:\n{report}");
    };
    assert!(
        message.contains(why),
        "{case} failed, but not for the fault (expected `{why}`): {message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_reference_store_passes_every_case() {
    let report = report_with(Faults::default()).await;
    assert!(report.is_success(), "{report}");
    assert!(report.skipped.is_empty(), "{report}");
    assert_eq!(report.passed.len(), testkit::cases().len(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn last_write_wins_is_caught() {
    let report = report_with(Faults {
        last_write_wins: true,
        ..Faults::default()
    })
    .await;
    assert_caught(
        &report,
        "records_update_is_compare_and_swap",
        "a stale version is refused",
    );
    assert_caught(
        &report,
        "concurrent_writers_lose_no_update",
        "64 × 100 increments",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_compare_and_swap_blind_to_the_token_is_caught() {
    let report = report_with(Faults {
        version_only_cas: true,
        ..Faults::default()
    })
    .await;
    assert_caught(
        &report,
        "records_update_is_compare_and_swap",
        "a revision with another token is refused",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn returning_forgotten_records_is_caught() {
    let report = report_with(Faults {
        returns_forgotten: true,
        ..Faults::default()
    })
    .await;
    assert_caught(
        &report,
        "records_load_hides_forgotten_records",
        "a record does not load once its forget deadline is reached",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leaky_subject_index_is_caught() {
    let report = report_with(Faults {
        leaky_subject_index: true,
        ..Faults::default()
    })
    .await;
    // Bob's former session (now alice's) is listed under alice.
    assert_caught(
        &report,
        "subjects_index_follows_every_change",
        "a listing holds only the subject's records",
    );
    assert_caught(
        &report,
        "records_delete_removes_the_record",
        "not listed after delete",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_overwriting_create_is_caught() {
    let report = report_with(Faults {
        create_overwrites: true,
        ..Faults::default()
    })
    .await;
    assert_caught(
        &report,
        "records_create_is_create_if_absent",
        "same id twice",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_that_never_sweeps_is_caught() {
    let report = report_with(Faults {
        never_sweeps: true,
        ..Faults::default()
    })
    .await;
    assert_caught(
        &report,
        "maintenance_sweep_removes_forgotten_records",
        "a forgotten record survived the sweep",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_touch_that_moves_back_is_caught() {
    let report = report_with(Faults {
        touch_moves_back: true,
        ..Faults::default()
    })
    .await;
    assert_caught(
        &report,
        "records_touch_moves_forward_only",
        "last_seen_at never moves back",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn attachments_that_outlive_their_session_are_caught() {
    let report = report_with(Faults {
        attachments_outlive_sessions: true,
        ..Faults::default()
    })
    .await;
    assert_caught(
        &report,
        "attachments_are_compare_and_swapped_and_end_with_their_session",
        "the attachment ended with its session",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_journal_listed_oldest_first_is_caught() {
    let report = report_with(Faults {
        journal_oldest_first: true,
        ..Faults::default()
    })
    .await;
    assert_caught(
        &report,
        "journal_lists_newest_first_pages_and_forgets",
        "newest first",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failing_operations_fail_their_cases_with_the_store_error() {
    let expectations: [(Operation, &[&str]); 6] = [
        (
            Operation::SweepExpired,
            &["maintenance_sweep_removes_forgotten_records"],
        ),
        (
            Operation::Touch,
            &["records_touch_moves_forward_only", "touch_is_amortised"],
        ),
        (
            Operation::BumpSubjectEpoch,
            &["epochs_are_shared_and_only_grow"],
        ),
        (
            Operation::ExportPage,
            &["maintenance_export_pages_through_every_live_record"],
        ),
        (
            Operation::StoreAttachment,
            &["attachments_are_compare_and_swapped_and_end_with_their_session"],
        ),
        (
            Operation::JournalPage,
            &["journal_lists_newest_first_pages_and_forgets"],
        ),
    ];
    for (op, cases) in expectations {
        let report = report_for(
            Faults::default(),
            Outage {
                fails: Some(op),
                ..Outage::yielding()
            },
        )
        .await;
        for case in cases {
            assert_caught(&report, case, &format!("{} is down", op.name()));
        }
        assert!(
            report
                .failed
                .iter()
                .all(|(_, why)| !why.starts_with("panicked")),
            "a failing store is reported, not a panic: {report}"
        );
    }
}

/// What the store-level case guards at the manager's level: two rotations
/// made on the strength of one reading of the session. With a
/// compare-and-swap that compares the token hash, the second loses, reads
/// again and rotates on top of the first, whose token lives on through
/// the grace; with one that compares only the version, the second
/// overwrites the first and the token the first handed out is unknown.
#[tokio::test]
async fn a_compare_and_swap_blind_to_the_token_loses_a_rotation() {
    async fn first_rotation_survives(faults: Faults) -> bool {
        let manager = tessera_core::SessionManager::builder(ReferenceStore::with(faults))
            .build()
            .expect("manager");
        let created = manager
            .create(tessera_core::NewSession::anonymous())
            .await
            .expect("create");
        let first = manager.rotate(&created).await.expect("first rotation");
        manager
            .rotate(&created)
            .await
            .expect("second rotation, from the same reading");
        let first = first.issued().expect("a new token").expose();
        manager.resolve(first, None).await.is_ok()
    }
    assert!(first_rotation_survives(Faults::default()).await);
    assert!(
        !first_rotation_survives(Faults {
            version_only_cas: true,
            ..Faults::default()
        })
        .await
    );
}
