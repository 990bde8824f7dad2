//! The writer thread: every write runs here, in a durable redb transaction,
//! and writes that arrive together share one commit (group commit).
//!
//! A caller sends a job and awaits its answer, so the async runtime never
//! blocks on the disk. The thread takes every job waiting in the queue (up
//! to [`MAX_BATCH`]), runs them one after another in one write transaction,
//! commits it with an fsync (`Durability::Immediate`), applies their
//! [`Changes`](crate::mirror::Changes) to the mirror and only then answers
//! them. While it waits for the disk, new jobs queue up and form
//! the next group, so the number of fsyncs per second stays roughly constant
//! while the number of writes per fsync grows with concurrency.
//!
//! Each job is all-or-nothing: it reads first (see [`crate::batch`]) and
//! writes only once it has decided; a job that fails after writing, or a
//! write the engine refuses, aborts the whole group and every job in it gets
//! an error (nothing of the group is stored).

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tessera_core::store::StoreError;

use tokio::sync::oneshot;

use crate::batch::{Batch, Tables};
use crate::error::{EmbeddedError, failure_text};
use crate::mirror::Mirror;

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

/// Shortest time between two reopens of the database (after a failed
/// reopen, or a write failing again right after one); meanwhile writes fail
/// at once with the last reason.
const REOPEN_PAUSE: Duration = Duration::from_secs(1);

/// What the writer thread owns.
pub(crate) struct Writer {
    /// The database; `None` after a write failure until it reopens.
    db: Option<redb::Database>,
    path: PathBuf,
    mirror: Arc<RwLock<Mirror>>,
    jobs: Receiver<Job>,
    /// Set when the engine failed (an I/O error, e.g. a full disk): redb
    /// then refuses every later transaction, so the database is reopened
    /// (and repaired) before the next group, not before this instant.
    reopen: Option<(Instant, String)>,
    /// When the database was last reopened: reopens (each reloads the
    /// mirror) are at least [`REOPEN_PAUSE`] apart while the disk stays full.
    reopened_at: Option<Instant>,
}

impl Writer {
    /// A writer over an open database and its mirror.
    pub(crate) fn new(
        db: redb::Database,
        path: PathBuf,
        mirror: Arc<RwLock<Mirror>>,
        jobs: Receiver<Job>,
    ) -> Self {
        Self {
            db: Some(db),
            path,
            mirror,
            jobs,
            reopen: None,
            reopened_at: None,
        }
    }

    /// Runs until every sender is gone and the queue is empty, then closes
    /// the database (which releases its lock).
    pub(crate) fn run(mut self) -> Result<(), EmbeddedError> {
        let mut group = Vec::with_capacity(MAX_BATCH);
        while let Ok(first) = self.jobs.recv() {
            group.push(first);
            while group.len() < MAX_BATCH {
                match self.jobs.try_recv() {
                    Ok(job) => group.push(job),
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
            match self.usable() {
                Ok(()) => self.commit_group(&mut group),
                Err(message) => fail_unrun(&mut group, &message),
            }
        }
        let Writer { db, path, .. } = self;
        match db {
            Some(db) => db.close().map_err(|e| EmbeddedError::database(&path, e)),
            None => Ok(()),
        }
    }

    /// Reopens the database if a write failure left it unusable. Once the
    /// cause is gone (space is free again), writes resume without a restart.
    fn usable(&mut self) -> Result<(), String> {
        let Some((not_before, reason)) = &self.reopen else {
            return Ok(());
        };
        if Instant::now() < *not_before {
            return Err(reason.clone());
        }
        // The old handle holds the file lock: close it first.
        drop(self.db.take());
        match crate::open_database(&self.path) {
            Ok((db, fresh)) => {
                let Ok(mut mirror) = self.mirror.write() else {
                    return Err("the embedded store's memory mirror is poisoned".into());
                };
                *mirror = fresh;
                self.db = Some(db);
                self.reopen = None;
                self.reopened_at = Some(Instant::now());
                tracing::warn!(path = %self.path.display(), "session database reopened after a write failure; writes resume");
                Ok(())
            }
            Err(error) => {
                let reason = format!(
                    "embedded session database: cannot reopen after a write failure: {error}"
                );
                tracing::error!(error = %reason, "session database still unusable");
                self.reopen = Some((Instant::now() + REOPEN_PAUSE, reason.clone()));
                Err(reason)
            }
        }
    }

    /// Marks the database for reopening after an engine failure.
    fn broken(&mut self, reason: &str) {
        let not_before = self
            .reopened_at
            .map_or_else(Instant::now, |at| at + REOPEN_PAUSE);
        self.reopen = Some((not_before, reason.to_owned()));
    }

    fn commit_group(&mut self, group: &mut Vec<Job>) {
        let Some(db) = self.db.as_ref() else {
            return fail_unrun(group, "the embedded session database is not open");
        };
        let mut txn = match db.begin_write() {
            Ok(txn) => txn,
            Err(e) => {
                let message = failure_text("begin a write transaction", &e);
                self.broken(&message);
                return fail_unrun(group, &message);
            }
        };
        // The default, spelled out: the commit returns once it is on disk.
        if let Err(e) = txn.set_durability(redb::Durability::Immediate) {
            let message = failure_text("ask for a durable commit", &e);
            return fail_unrun(group, &message);
        }
        let (finishes, changes, failure, engine_failed) = {
            let Ok(mirror) = self.mirror.read() else {
                return fail_unrun(group, "the embedded store's memory mirror is poisoned");
            };
            let tables = match Tables::open(&txn) {
                Ok(tables) => tables,
                Err(e) => {
                    let message = failure_text("open the tables", &e);
                    drop(mirror);
                    self.broken(&message);
                    return fail_unrun(group, &message);
                }
            };
            let mut batch = Batch::new(tables, &mirror);
            let mut finishes = Vec::with_capacity(group.len());
            for job in group.drain(..) {
                let before = batch.changes.writes;
                let (finish, ok) = job.0.run(&mut batch);
                if !ok && batch.changes.writes > before && batch.failure.is_none() {
                    batch.failure =
                        Some("a write failed part way; its group was not stored".into());
                }
                finishes.push(finish);
            }
            (finishes, batch.changes, batch.failure, batch.engine_failed)
        };
        let outcome = match failure {
            Some(message) => {
                // Dropping the transaction aborts it.
                drop(txn);
                Err((message, engine_failed))
            }
            None if changes.writes == 0 => {
                drop(txn);
                Ok(())
            }
            None => txn.commit().map_err(|e| (failure_text("commit", &e), true)),
        };
        match outcome {
            Ok(()) => {
                if changes.writes > 0 {
                    match self.mirror.write() {
                        Ok(mut mirror) => mirror.apply(changes),
                        Err(_) => return finish_all(finishes, Some("mirror lock poisoned")),
                    }
                }
                finish_all(finishes, None);
            }
            Err((message, engine_failed)) => {
                tracing::error!(error = %message, path = %self.path.display(), "session database write failed");
                if engine_failed {
                    // Reopening reloads the mirror too.
                    self.broken(&message);
                } else {
                    self.reload_mirror();
                }
                finish_all(finishes, Some(&message));
            }
        }
    }

    /// After a failed group, rebuilds the mirror from what the database
    /// holds, in case the engine's view is not what it was before.
    fn reload_mirror(&self) {
        let Some(db) = self.db.as_ref() else {
            return;
        };
        match Mirror::load(db, &self.path) {
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
