//! One hook around every store operation, for wrappers that do the same
//! thing whatever the operation: time it, count it, fail it on purpose.
//!
//! Such a wrapper implements [`Intercept`] once; [`Intercepted`] forwards
//! every method of every store trait through it, so a new store method is
//! forwarded (and timed, and counted) everywhere without anyone writing
//! another forwarding method.

use std::future::Future;
use std::pin::Pin;

use async_trait::async_trait;

use super::{
    Attachment, AttachmentKind, AttachmentWrite, Attachments, CreateOutcome, Epochs, Journal,
    JournalEntry, Maintenance, Page, Records, StoreError, SubjectIndex, WriteOutcome,
};
use crate::clock::Timestamp;
use crate::record::{Revision, SessionRecord};
use crate::token::{SessionId, TokenHash};

/// Every store operation, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// [`Records::create`].
    Create,
    /// [`Records::load`].
    Load,
    /// [`Records::update`].
    Update,
    /// [`Records::touch`].
    Touch,
    /// [`Records::delete`].
    Delete,
    /// [`Records::find_legacy`].
    FindLegacy,
    /// [`Records::ping`].
    Ping,
    /// [`SubjectIndex::list_subject`].
    ListSubject,
    /// [`SubjectIndex::delete_subject`].
    DeleteSubject,
    /// [`Epochs::global_epoch`].
    GlobalEpoch,
    /// [`Epochs::bump_global_epoch`].
    BumpGlobalEpoch,
    /// [`Epochs::raise_global_epoch`].
    RaiseGlobalEpoch,
    /// [`Epochs::subject_epoch`].
    SubjectEpoch,
    /// [`Epochs::bump_subject_epoch`].
    BumpSubjectEpoch,
    /// [`Epochs::raise_subject_epoch`].
    RaiseSubjectEpoch,
    /// [`Maintenance::sweep_expired`].
    SweepExpired,
    /// [`Maintenance::export_page`].
    ExportPage,
    /// [`Attachments::load_attachment`].
    LoadAttachment,
    /// [`Attachments::store_attachment`].
    StoreAttachment,
    /// [`Attachments::delete_attachment`].
    DeleteAttachment,
    /// [`Journal::append_journal`].
    AppendJournal,
    /// [`Journal::journal_page`].
    JournalPage,
}

impl Operation {
    /// Every operation, for tables keyed by operation.
    pub const ALL: [Operation; 22] = [
        Operation::Create,
        Operation::Load,
        Operation::Update,
        Operation::Touch,
        Operation::Delete,
        Operation::FindLegacy,
        Operation::Ping,
        Operation::ListSubject,
        Operation::DeleteSubject,
        Operation::GlobalEpoch,
        Operation::BumpGlobalEpoch,
        Operation::RaiseGlobalEpoch,
        Operation::SubjectEpoch,
        Operation::BumpSubjectEpoch,
        Operation::RaiseSubjectEpoch,
        Operation::SweepExpired,
        Operation::ExportPage,
        Operation::LoadAttachment,
        Operation::StoreAttachment,
        Operation::DeleteAttachment,
        Operation::AppendJournal,
        Operation::JournalPage,
    ];

    /// A stable snake_case name (for metric labels).
    pub fn name(self) -> &'static str {
        match self {
            Operation::Create => "create",
            Operation::Load => "load",
            Operation::Update => "update",
            Operation::Touch => "touch",
            Operation::Delete => "delete",
            Operation::FindLegacy => "find_legacy",
            Operation::Ping => "ping",
            Operation::ListSubject => "list_subject",
            Operation::DeleteSubject => "delete_subject",
            Operation::GlobalEpoch => "global_epoch",
            Operation::BumpGlobalEpoch => "bump_global_epoch",
            Operation::RaiseGlobalEpoch => "raise_global_epoch",
            Operation::SubjectEpoch => "subject_epoch",
            Operation::BumpSubjectEpoch => "bump_subject_epoch",
            Operation::RaiseSubjectEpoch => "raise_subject_epoch",
            Operation::SweepExpired => "sweep_expired",
            Operation::ExportPage => "export_page",
            Operation::LoadAttachment => "load_attachment",
            Operation::StoreAttachment => "store_attachment",
            Operation::DeleteAttachment => "delete_attachment",
            Operation::AppendJournal => "append_journal",
            Operation::JournalPage => "journal_page",
        }
    }
}

/// A store operation in flight, as [`Intercept::around`] receives it.
pub type Call<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// What a wrapper does around each store operation.
///
/// A hook that only acts before an operation (counts it, delays it,
/// refuses it) implements [`before`](Self::before); one that acts once
/// the store has answered implements [`after`](Self::after); one that
/// needs the outcome itself (times it, replaces it) implements
/// [`around`](Self::around).
pub trait Intercept: Send + Sync + 'static {
    /// Runs before operation `op`; an error is the operation's outcome,
    /// and the store is not called. The default does nothing.
    fn before(&self, op: Operation) -> impl Future<Output = Result<(), StoreError>> + Send {
        let _ = op;
        std::future::ready(Ok(()))
    }

    /// Runs after operation `op` has returned, before its outcome is
    /// handed on. The default does nothing.
    fn after(&self, op: Operation) -> impl Future<Output = ()> + Send {
        let _ = op;
        std::future::ready(())
    }

    /// Runs `call` (the wrapped store's operation `op`), or not, and
    /// returns its outcome, or another. The default runs
    /// [`before`](Self::before), `call`, then [`after`](Self::after).
    fn around<'a, T: Send + 'a>(
        &'a self,
        op: Operation,
        call: Call<'a, T>,
    ) -> impl Future<Output = Result<T, StoreError>> + Send + 'a {
        async move {
            self.before(op).await?;
            let outcome = call.await;
            self.after(op).await;
            outcome
        }
    }
}

/// A store whose every operation goes through an [`Intercept`] hook.
#[derive(Debug, Clone)]
pub struct Intercepted<S, I> {
    inner: S,
    hook: I,
}

impl<S, I> Intercepted<S, I> {
    /// Wraps `inner`, calling `hook` around each of its operations.
    pub fn new(inner: S, hook: I) -> Self {
        Self { inner, hook }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The hook.
    pub fn hook(&self) -> &I {
        &self.hook
    }
}

#[async_trait]
impl<S: Records, I: Intercept> Records for Intercepted<S, I> {
    async fn create(
        &self,
        record: &SessionRecord,
        forget_at: Timestamp,
    ) -> Result<CreateOutcome, StoreError> {
        let call = self.inner.create(record, forget_at);
        self.hook.around(Operation::Create, call).await
    }
    async fn load(
        &self,
        id: &SessionId,
        now: Timestamp,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let call = self.inner.load(id, now);
        self.hook.around(Operation::Load, call).await
    }
    async fn update(
        &self,
        record: &SessionRecord,
        expected: Revision,
        forget_at: Timestamp,
        now: Timestamp,
    ) -> Result<WriteOutcome, StoreError> {
        let call = self.inner.update(record, expected, forget_at, now);
        self.hook.around(Operation::Update, call).await
    }
    async fn touch(
        &self,
        id: &SessionId,
        last_seen_at: Timestamp,
        forget_at: Timestamp,
        now: Timestamp,
    ) -> Result<WriteOutcome, StoreError> {
        let call = self.inner.touch(id, last_seen_at, forget_at, now);
        self.hook.around(Operation::Touch, call).await
    }
    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        let call = self.inner.delete(id);
        self.hook.around(Operation::Delete, call).await
    }
    async fn find_legacy(
        &self,
        key: &TokenHash,
        now: Timestamp,
    ) -> Result<Option<SessionId>, StoreError> {
        let call = self.inner.find_legacy(key, now);
        self.hook.around(Operation::FindLegacy, call).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        let call = self.inner.ping();
        self.hook.around(Operation::Ping, call).await
    }
}

#[async_trait]
impl<S: SubjectIndex, I: Intercept> SubjectIndex for Intercepted<S, I> {
    async fn list_subject(
        &self,
        subject: &str,
        cursor: Option<&str>,
        limit: usize,
        now: Timestamp,
    ) -> Result<Page<SessionRecord>, StoreError> {
        let call = self.inner.list_subject(subject, cursor, limit, now);
        self.hook.around(Operation::ListSubject, call).await
    }
    async fn delete_subject(
        &self,
        subject: &str,
        except: Option<&SessionId>,
        now: Timestamp,
    ) -> Result<Vec<SessionId>, StoreError> {
        let call = self.inner.delete_subject(subject, except, now);
        self.hook.around(Operation::DeleteSubject, call).await
    }
}

#[async_trait]
impl<S: Epochs, I: Intercept> Epochs for Intercepted<S, I> {
    fn durability(&self) -> super::Durability {
        self.inner.durability()
    }
    async fn global_epoch(&self) -> Result<u64, StoreError> {
        let call = self.inner.global_epoch();
        self.hook.around(Operation::GlobalEpoch, call).await
    }
    async fn bump_global_epoch(&self) -> Result<u64, StoreError> {
        let call = self.inner.bump_global_epoch();
        self.hook.around(Operation::BumpGlobalEpoch, call).await
    }
    async fn raise_global_epoch(&self, epoch: u64) -> Result<u64, StoreError> {
        let call = self.inner.raise_global_epoch(epoch);
        self.hook.around(Operation::RaiseGlobalEpoch, call).await
    }
    async fn subject_epoch(&self, subject: &str) -> Result<u64, StoreError> {
        let call = self.inner.subject_epoch(subject);
        self.hook.around(Operation::SubjectEpoch, call).await
    }
    async fn bump_subject_epoch(&self, subject: &str) -> Result<u64, StoreError> {
        let call = self.inner.bump_subject_epoch(subject);
        self.hook.around(Operation::BumpSubjectEpoch, call).await
    }
    async fn raise_subject_epoch(&self, subject: &str, epoch: u64) -> Result<u64, StoreError> {
        let call = self.inner.raise_subject_epoch(subject, epoch);
        self.hook.around(Operation::RaiseSubjectEpoch, call).await
    }
}

#[async_trait]
impl<S: Maintenance, I: Intercept> Maintenance for Intercepted<S, I> {
    async fn sweep_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        let call = self.inner.sweep_expired(now);
        self.hook.around(Operation::SweepExpired, call).await
    }
    async fn export_page(
        &self,
        cursor: Option<&str>,
        limit: usize,
        now: Timestamp,
    ) -> Result<Page<SessionRecord>, StoreError> {
        let call = self.inner.export_page(cursor, limit, now);
        self.hook.around(Operation::ExportPage, call).await
    }
}

#[async_trait]
impl<S: Attachments, I: Intercept> Attachments for Intercepted<S, I> {
    async fn load_attachment(
        &self,
        id: &SessionId,
        kind: AttachmentKind,
        now: Timestamp,
    ) -> Result<Option<Attachment>, StoreError> {
        let call = self.inner.load_attachment(id, kind, now);
        self.hook.around(Operation::LoadAttachment, call).await
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
        let call = self
            .inner
            .store_attachment(id, kind, value, expected, forget_at, now);
        self.hook.around(Operation::StoreAttachment, call).await
    }
    async fn delete_attachment(
        &self,
        id: &SessionId,
        kind: AttachmentKind,
    ) -> Result<bool, StoreError> {
        let call = self.inner.delete_attachment(id, kind);
        self.hook.around(Operation::DeleteAttachment, call).await
    }
}

#[async_trait]
impl<S: Journal, I: Intercept> Journal for Intercepted<S, I> {
    async fn append_journal(
        &self,
        entry: &JournalEntry,
        forget_at: Timestamp,
    ) -> Result<(), StoreError> {
        let call = self.inner.append_journal(entry, forget_at);
        self.hook.around(Operation::AppendJournal, call).await
    }
    async fn journal_page(
        &self,
        cursor: Option<&str>,
        limit: usize,
        now: Timestamp,
    ) -> Result<Page<JournalEntry>, StoreError> {
        let call = self.inner.journal_page(cursor, limit, now);
        self.hook.around(Operation::JournalPage, call).await
    }
}
