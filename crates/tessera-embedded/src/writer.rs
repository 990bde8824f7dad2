//! The writer thread: every write runs here, in a durable redb transaction,
//! and writes that arrive together share one commit (group commit).
//!
//! A caller sends a job and awaits its answer, so the async runtime never
//! blocks on the disk. The thread takes every job waiting in the queue (up
//! to [`MAX_BATCH`]), runs them one after another in one write transaction,
//! commits it with an fsync, applies their [`Effect`]s to the mirror and only
//! then answers them. While it waits for the disk, new jobs queue up and form
//! the next group, so the number of fsyncs per second stays roughly constant
//! while the number of writes per fsync grows with concurrency.
//!
//! Each job is all-or-nothing: it reads first and writes only once it has
//! decided; a job that fails after writing, or a write the engine refuses,
//! aborts the whole group and every job in it gets an error (nothing of the
//! group is stored).

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, RwLock};

use redb::{ReadableMultimapTable, ReadableTable};
use tessera_core::codec::{decode_entry, encode_entry};
use tessera_core::{Session, SessionId, StoreError, StoredEntry, Timestamp, TokenHash, Tombstone};

use tokio::sync::oneshot;

use crate::error::{EmbeddedError, unavailable};
use crate::mirror::{Effect, Mirror, MirrorEntry};
use crate::schema::{ENTRIES, GLOBAL_EPOCH_KEY, IDS, META, SUBJECT_EPOCHS, SUBJECTS};

/// Most jobs committed together.
pub(crate) const MAX_BATCH: usize = 512;

/// What a job hands back after running: called once the group's fate is
/// known, with the commit error if the group was not stored.
type Finish = Box<dyn FnOnce(Option<&str>) + Send>;

/// A unit of work for the writer thread, with the channel its answer goes to.
pub(crate) struct Job(Box<dyn Work>);

trait Work: Send {
    /// Runs in the group's transaction; the `bool` tells whether it succeeded.
    fn run(self: Box<Self>, batch: &mut Batch<'_>) -> (Finish, bool);
    /// Answers without running (the group could not start).
    fn reject(self: Box<Self>, message: &str);
}

struct Reply<F, T> {
    work: F,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<F, T> Work for Reply<F, T>
where
    F: FnOnce(&mut Batch<'_>) -> Result<T, StoreError> + Send,
    T: Send + 'static,
{
    fn run(self: Box<Self>, batch: &mut Batch<'_>) -> (Finish, bool) {
        let Reply { work, reply } = *self;
        // After a failure nothing of the group is stored: skip the work.
        let result = match batch.failure() {
            Some(message) => Err(StoreError::Unavailable {
                message: message.to_owned(),
                source: None,
            }),
            None => work(batch),
        };
        let ok = result.is_ok();
        let finish: Finish = Box::new(move |commit_error: Option<&str>| {
            let answer = match commit_error {
                None => result,
                Some(message) => Err(StoreError::Unavailable {
                    message: message.to_owned(),
                    source: None,
                }),
            };
            // The caller may have given up waiting; the outcome stands.
            let _ = reply.send(answer);
        });
        (finish, ok)
    }

    fn reject(self: Box<Self>, message: &str) {
        let _ = self.reply.send(Err(StoreError::Unavailable {
            message: message.to_owned(),
            source: None,
        }));
    }
}

/// A job running `work` in a write transaction, and where its answer arrives.
pub(crate) fn job<F, T>(work: F) -> (Job, oneshot::Receiver<Result<T, StoreError>>)
where
    F: FnOnce(&mut Batch<'_>) -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    let (reply, answer) = oneshot::channel();
    (Job(Box::new(Reply { work, reply })), answer)
}

/// The tables of one write transaction.
struct Tables<'t> {
    meta: redb::Table<'t, &'static str, u64>,
    entries: redb::Table<'t, &'static [u8; 32], &'static [u8]>,
    ids: redb::Table<'t, &'static [u8; 16], &'static [u8; 32]>,
    subjects: redb::MultimapTable<'t, &'static str, &'static [u8; 16]>,
    subject_epochs: redb::Table<'t, &'static str, u64>,
}

impl<'t> Tables<'t> {
    fn open(txn: &'t redb::WriteTransaction) -> Result<Self, redb::TableError> {
        Ok(Self {
            meta: txn.open_table(META)?,
            entries: txn.open_table(ENTRIES)?,
            ids: txn.open_table(IDS)?,
            subjects: txn.open_multimap_table(SUBJECTS)?,
            subject_epochs: txn.open_table(SUBJECT_EPOCHS)?,
        })
    }
}

/// One group of jobs inside one write transaction: reads see the writes of
/// earlier jobs of the group; writes are recorded as [`Effect`]s for the mirror.
pub(crate) struct Batch<'t> {
    tables: Tables<'t>,
    effects: Vec<Effect>,
    failure: Option<String>,
}

impl Batch<'_> {
    /// Whether an earlier job broke the group (then later jobs must not run).
    pub(crate) fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    /// Passes on the outcome of a write; a refused write breaks the group.
    fn check(
        &mut self,
        outcome: Result<(), redb::StorageError>,
        what: &str,
    ) -> Result<(), StoreError> {
        outcome.map_err(|e| {
            let error = unavailable(what, e);
            self.failure.get_or_insert_with(|| error.to_string());
            error
        })
    }

    // ---- reads ----

    /// The record under `key`, decoded.
    pub(crate) fn entry(&self, key: &TokenHash) -> Result<Option<StoredEntry>, StoreError> {
        let found = self
            .tables
            .entries
            .get(&key.0)
            .map_err(|e| unavailable("read a record", e))?;
        match found {
            Some(bytes) => decode_entry(bytes.value()).map(Some),
            None => Ok(None),
        }
    }

    /// The live session under `key`, unless it may be forgotten at `now`.
    pub(crate) fn live(
        &self,
        key: &TokenHash,
        now: Timestamp,
    ) -> Result<Option<Arc<Session>>, StoreError> {
        Ok(match self.entry(key)? {
            Some(StoredEntry::Live(session)) if session.forget_at() > now => Some(session),
            _ => None,
        })
    }

    /// Whether anything is stored under `key`.
    pub(crate) fn has_entry(&self, key: &TokenHash) -> Result<bool, StoreError> {
        Ok(self
            .tables
            .entries
            .get(&key.0)
            .map_err(|e| unavailable("read a record", e))?
            .is_some())
    }

    /// The key of the live session with this id.
    pub(crate) fn key_of(&self, id: &SessionId) -> Result<Option<TokenHash>, StoreError> {
        Ok(self
            .tables
            .ids
            .get(&id.0)
            .map_err(|e| unavailable("read the id index", e))?
            .map(|key| TokenHash(*key.value())))
    }

    /// The ids the subject index lists for `subject`.
    pub(crate) fn subject_ids(&self, subject: &str) -> Result<Vec<SessionId>, StoreError> {
        let values = self
            .tables
            .subjects
            .get(subject)
            .map_err(|e| unavailable("read the subject index", e))?;
        let mut ids = Vec::new();
        for id in values {
            let id = id.map_err(|e| unavailable("read the subject index", e))?;
            ids.push(SessionId(*id.value()));
        }
        Ok(ids)
    }

    /// The global revocation epoch.
    pub(crate) fn global_epoch(&self) -> Result<u64, StoreError> {
        Ok(self
            .tables
            .meta
            .get(GLOBAL_EPOCH_KEY)
            .map_err(|e| unavailable("read the global epoch", e))?
            .map(|v| v.value())
            .unwrap_or(0))
    }

    /// A subject's revocation epoch.
    pub(crate) fn subject_epoch(&self, subject: &str) -> Result<u64, StoreError> {
        Ok(self
            .tables
            .subject_epochs
            .get(subject)
            .map_err(|e| unavailable("read a subject epoch", e))?
            .map(|v| v.value())
            .unwrap_or(0))
    }

    // ---- writes (each recorded for the mirror) ----

    /// Stores a live session under `key`.
    pub(crate) fn put_session(&mut self, key: &TokenHash, session: &Session) -> Result<(), StoreError> {
        let session = Arc::new(session.clone());
        let bytes = encode_entry(&StoredEntry::Live(session.clone()))?;
        let outcome = self.tables.entries.insert(&key.0, bytes.as_slice()).map(|_| ());
        self.check(outcome, "write a record")?;
        self.effects
            .push(Effect::PutEntry(*key, MirrorEntry::Live(session)));
        Ok(())
    }

    /// Stores a tombstone under `key`.
    pub(crate) fn put_tombstone(
        &mut self,
        key: &TokenHash,
        tombstone: &Tombstone,
    ) -> Result<(), StoreError> {
        let bytes = encode_entry(&StoredEntry::Tombstone(*tombstone))?;
        let outcome = self.tables.entries.insert(&key.0, bytes.as_slice()).map(|_| ());
        self.check(outcome, "write a tombstone")?;
        self.effects
            .push(Effect::PutEntry(*key, MirrorEntry::Tombstone(*tombstone)));
        Ok(())
    }

    /// Removes the record under `key`.
    pub(crate) fn remove_entry(&mut self, key: &TokenHash) -> Result<(), StoreError> {
        let outcome = self.tables.entries.remove(&key.0).map(|_| ());
        self.check(outcome, "remove a record")?;
        self.effects.push(Effect::RemoveEntry(*key));
        Ok(())
    }

    /// Points the id index at `key`.
    pub(crate) fn put_id(&mut self, id: &SessionId, key: &TokenHash) -> Result<(), StoreError> {
        let outcome = self.tables.ids.insert(&id.0, &key.0).map(|_| ());
        self.check(outcome, "write the id index")?;
        self.effects.push(Effect::PutId(*id, *key));
        Ok(())
    }

    /// Removes an id from the id index.
    pub(crate) fn remove_id(&mut self, id: &SessionId) -> Result<(), StoreError> {
        let outcome = self.tables.ids.remove(&id.0).map(|_| ());
        self.check(outcome, "remove from the id index")?;
        self.effects.push(Effect::RemoveId(*id));
        Ok(())
    }

    /// Adds a session to its subject's index.
    pub(crate) fn add_subject(&mut self, subject: &str, id: &SessionId) -> Result<(), StoreError> {
        let outcome = self.tables.subjects.insert(subject, &id.0).map(|_| ());
        self.check(outcome, "write the subject index")?;
        self.effects.push(Effect::AddSubject(subject.into(), *id));
        Ok(())
    }

    /// Removes a session from its subject's index.
    pub(crate) fn remove_subject(&mut self, subject: &str, id: &SessionId) -> Result<(), StoreError> {
        let outcome = self.tables.subjects.remove(subject, &id.0).map(|_| ());
        self.check(outcome, "remove from the subject index")?;
        self.effects.push(Effect::RemoveSubject(subject.into(), *id));
        Ok(())
    }

    /// Moves a session between subjects in the index.
    pub(crate) fn move_subject(
        &mut self,
        id: &SessionId,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<(), StoreError> {
        if from == to {
            return Ok(());
        }
        if let Some(from) = from {
            self.remove_subject(from, id)?;
        }
        if let Some(to) = to {
            self.add_subject(to, id)?;
        }
        Ok(())
    }

    /// Sets the global revocation epoch.
    pub(crate) fn set_global_epoch(&mut self, epoch: u64) -> Result<(), StoreError> {
        let outcome = self.tables.meta.insert(GLOBAL_EPOCH_KEY, epoch).map(|_| ());
        self.check(outcome, "write the global epoch")?;
        self.effects.push(Effect::GlobalEpoch(epoch));
        Ok(())
    }

    /// Sets a subject's revocation epoch.
    pub(crate) fn set_subject_epoch(&mut self, subject: &str, epoch: u64) -> Result<(), StoreError> {
        let outcome = self.tables.subject_epochs.insert(subject, epoch).map(|_| ());
        self.check(outcome, "write a subject epoch")?;
        self.effects
            .push(Effect::SubjectEpoch(subject.into(), epoch));
        Ok(())
    }
}

/// What the writer thread owns.
pub(crate) struct Writer {
    pub(crate) db: redb::Database,
    pub(crate) path: PathBuf,
    pub(crate) mirror: Arc<RwLock<Mirror>>,
    pub(crate) jobs: Receiver<Job>,
}

impl Writer {
    /// Runs until every sender is gone and the queue is empty, then closes
    /// the database (which releases its lock).
    pub(crate) fn run(self) -> Result<(), EmbeddedError> {
        let mut group = Vec::with_capacity(MAX_BATCH);
        while let Ok(first) = self.jobs.recv() {
            group.push(first);
            while group.len() < MAX_BATCH {
                match self.jobs.try_recv() {
                    Ok(job) => group.push(job),
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
            self.commit_group(&mut group);
        }
        let Writer { db, path, .. } = self;
        db.close().map_err(|e| EmbeddedError::database(&path, e))
    }

    fn commit_group(&self, group: &mut Vec<Job>) {
        let txn = match self.db.begin_write() {
            Ok(txn) => txn,
            Err(e) => {
                let message = unavailable("begin a write transaction", e).to_string();
                return fail_unrun(group, &message);
            }
        };
        let (finishes, effects, failure) = {
            let tables = match Tables::open(&txn) {
                Ok(tables) => tables,
                Err(e) => {
                    let message = unavailable("open the tables", e).to_string();
                    return fail_unrun(group, &message);
                }
            };
            let mut batch = Batch {
                tables,
                effects: Vec::new(),
                failure: None,
            };
            let mut finishes = Vec::with_capacity(group.len());
            for job in group.drain(..) {
                let before = batch.effects.len();
                let (finish, ok) = job.0.run(&mut batch);
                if !ok && batch.effects.len() > before && batch.failure.is_none() {
                    batch.failure =
                        Some("a write failed part way; its group was not stored".into());
                }
                finishes.push(finish);
            }
            (finishes, batch.effects, batch.failure)
        };
        let outcome = match failure {
            Some(message) => {
                // Dropping the transaction aborts it.
                drop(txn);
                Err(message)
            }
            None if effects.is_empty() => {
                drop(txn);
                Ok(())
            }
            None => txn
                .commit()
                .map_err(|e| unavailable("commit", e).to_string()),
        };
        match outcome {
            Ok(()) => {
                if !effects.is_empty() {
                    match self.mirror.write() {
                        Ok(mut mirror) => mirror.apply(effects),
                        Err(_) => return finish_all(finishes, Some("mirror lock poisoned")),
                    }
                }
                finish_all(finishes, None);
            }
            Err(message) => {
                tracing::error!(error = %message, path = %self.path.display(), "session database write failed");
                self.reload_mirror();
                finish_all(finishes, Some(&message));
            }
        }
    }

    /// After a failed commit, rebuilds the mirror from what the database
    /// holds, in case the engine's view is not what it was before.
    fn reload_mirror(&self) {
        match Mirror::load(&self.db, &self.path) {
            Ok(fresh) => {
                if let Ok(mut mirror) = self.mirror.write() {
                    *mirror = fresh;
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot reload the session mirror"),
        }
    }
}

fn finish_all(finishes: Vec<Finish>, error: Option<&str>) {
    for finish in finishes {
        finish(error);
    }
}

/// Answers jobs that never ran.
fn fail_unrun(group: &mut Vec<Job>, message: &str) {
    tracing::error!(error = %message, "session database write failed");
    for job in group.drain(..) {
        job.0.reject(message);
    }
}
