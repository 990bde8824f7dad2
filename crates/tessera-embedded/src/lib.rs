//! Tessera's persistent single-node session store, on the embedded database
//! [redb](https://docs.rs/redb): no server to install, crash-safe, and
//! acknowledged writes survive `kill -9` and power loss.
//!
//! ```
//! use tessera_core::{NewSession, SessionManager};
//! use tessera_embedded::EmbeddedStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let data_dir = dir.path().join("tessera-data");
//! // The database file `sessions.redb` is created inside the data directory.
//! let store = EmbeddedStore::open(&data_dir)?;
//! let sweeper = store.spawn_sweeper(std::time::Duration::from_secs(60));
//! let manager = SessionManager::builder(store.clone()).build()?;
//!
//! let issued = manager.create(NewSession::default()).await?;
//! let valid = manager.validate(issued.token.expose(), None).await?;
//! assert_eq!(valid.session.id, issued.session.id);
//!
//! // Clean shutdown: pending writes are committed and the file lock released.
//! sweeper.abort();
//! drop(manager);
//! store.close()?;
//!
//! // Everything is still there after reopening.
//! let store = EmbeddedStore::open(&data_dir)?;
//! let manager = SessionManager::builder(store).build()?;
//! assert!(manager.validate(issued.token.expose(), None).await.is_ok());
//! # Ok(())
//! # }
//! ```
//!
//! # How it works
//!
//! * **Durability**: every write is committed in a redb transaction with
//!   `Durability::Immediate` (fsync) before the call returns. Writes that
//!   arrive while the disk is busy share the next commit (group commit), so
//!   throughput grows with concurrency although each write is fsynced.
//! * **Atomicity**: each operation (create-if-absent, compare-and-swap
//!   update, touch, rotate with its tombstone, delete, delete by subject,
//!   epoch bumps) is one unit inside one transaction, together with the id
//!   and subject indexes it changes.
//! * **Reads from memory**: the process holds the database's lock, so it is
//!   the only writer. All records are kept in an in-memory mirror that is
//!   loaded at open and changed only by the writer thread, after each commit,
//!   with exactly the changes that commit made. Loads and validations never
//!   touch the disk. The price: memory grows with the number of sessions, as
//!   with the memory store.
//! * **Format**: records use the versioned codec of
//!   [`tessera_core::codec`] (`{"v":1,…}`, every older version stays
//!   readable), and the database keeps its store format version in a `meta`
//!   table. A newer file is refused with [`EmbeddedError::NewerFormat`].
//! * **Write failures** (a full disk, an I/O error): the write, and every
//!   write of its group commit, fails with `StoreError::Unavailable` naming
//!   the operating system's reason, and nothing of it is stored; reads go on
//!   from memory. The engine refuses every transaction after an I/O error,
//!   so the writer reopens (and if need be repairs) the database before the
//!   next write, at most once a second: once space is free again, writes
//!   resume without a restart.
//! * **Expiry**: [`EmbeddedStore::spawn_sweeper`] removes expired records and
//!   tombstones, with their index entries, in small transactions so that
//!   requests are never held up for long.
#![forbid(unsafe_code)]

mod batch;
mod error;
mod mirror;
mod schema;
mod store;
mod sweeper;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use tessera_core::StoreError;

pub use error::EmbeddedError;

use crate::error::closed;
use crate::mirror::Mirror;
use crate::writer::{Job, Writer};

/// Name of the database file inside the data directory.
pub const DATABASE_FILE: &str = "sessions.redb";

/// How much of the database file redb caches; reads are served by the
/// mirror, so this only serves the checks inside write transactions.
const DATABASE_CACHE_BYTES: usize = 64 * 1024 * 1024;

/// A persistent session store in one database file of a data directory.
///
/// Cloning is cheap and shares the store. Open it once per process: the
/// file is locked while open, and a second open fails with
/// [`EmbeddedError::Locked`].
#[derive(Clone)]
pub struct EmbeddedStore {
    shared: Arc<Shared>,
}

struct Shared {
    path: PathBuf,
    mirror: Arc<RwLock<Mirror>>,
    jobs: RwLock<Option<mpsc::Sender<Job>>>,
    writer: Mutex<Option<JoinHandle<Result<(), EmbeddedError>>>>,
    closed: AtomicBool,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.shared.path)
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl EmbeddedStore {
    /// Opens (creating if needed) the session database in the data directory
    /// `dir`: the file [`DATABASE_FILE`] inside it. Other files in the
    /// directory are left alone.
    ///
    /// Blocks while the file is read into memory (and, after a crash,
    /// repaired); call it at startup. Fails with [`EmbeddedError::Locked`]
    /// if another process has the database open.
    pub fn open(dir: impl AsRef<Path>) -> Result<EmbeddedStore, EmbeddedError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|source| EmbeddedError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join(DATABASE_FILE);
        let (db, mirror) = open_database(&path)?;
        let mirror = Arc::new(RwLock::new(mirror));
        let (sender, jobs) = mpsc::channel();
        let writer = Writer::new(db, path.clone(), mirror.clone(), jobs);
        let handle = std::thread::Builder::new()
            .name("tessera-embedded-writer".into())
            .spawn(move || writer.run())
            .map_err(EmbeddedError::Thread)?;
        tracing::debug!(path = %path.display(), "embedded session store opened");
        Ok(EmbeddedStore {
            shared: Arc::new(Shared {
                path,
                mirror,
                jobs: RwLock::new(Some(sender)),
                writer: Mutex::new(Some(handle)),
                closed: AtomicBool::new(false),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Number of records held: live sessions, expired ones not yet swept,
    /// and tombstones.
    pub fn len(&self) -> usize {
        self.shared
            .mirror
            .read()
            .map(|m| m.entries.len())
            .unwrap_or(0)
    }

    /// Whether the store holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether [`close`](Self::close) was called (on this or any clone).
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::SeqCst)
    }

    /// Closes the store for every clone: writes already submitted are
    /// committed, later operations fail with `StoreError::Unavailable`, and
    /// the database file is closed and unlocked. Blocks until the writer
    /// thread has finished (normally a few milliseconds).
    ///
    /// Dropping the last clone does the same, but can only log errors.
    pub fn close(self) -> Result<(), EmbeddedError> {
        self.shared.shutdown()
    }

    /// Runs `work` in the writer thread's next group commit and awaits its outcome.
    async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        F: FnOnce(&mut batch::Batch<'_>) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let (job, answer) = writer::job(work);
        {
            let jobs = self.shared.jobs.read().map_err(|_| closed())?;
            let sender = jobs.as_ref().ok_or_else(closed)?;
            sender.send(job).map_err(|_| writer_gone())?;
        }
        answer.await.map_err(|_| writer_gone())?
    }

    /// Reads from the mirror.
    fn read<T>(&self, read: impl FnOnce(&Mirror) -> T) -> Result<T, StoreError> {
        if self.is_closed() {
            return Err(closed());
        }
        let mirror = self
            .shared
            .mirror
            .read()
            .map_err(|_| StoreError::Unavailable {
                message: "the embedded store's memory mirror is poisoned; restart the process"
                    .into(),
                source: None,
            })?;
        Ok(read(&mirror))
    }
}

/// Opens (creating, and after a crash repairing) the database file and
/// reads it into a mirror: at start, and again after a write failure.
pub(crate) fn open_database(path: &Path) -> Result<(redb::Database, Mirror), EmbeddedError> {
    let db = redb::Database::builder()
        .set_cache_size(DATABASE_CACHE_BYTES)
        .create(path)
        .map_err(|e| EmbeddedError::database(path, e))?;
    schema::prepare(&db, path)?;
    let mirror = Mirror::load(&db, path)?;
    Ok((db, mirror))
}

fn writer_gone() -> StoreError {
    StoreError::Unavailable {
        message: "the embedded session store's writer thread has stopped".into(),
        source: None,
    }
}

impl Shared {
    fn shutdown(&self) -> Result<(), EmbeddedError> {
        self.closed.store(true, Ordering::SeqCst);
        // Dropping the sender lets the writer drain the queue and stop.
        match self.jobs.write() {
            Ok(mut jobs) => drop(jobs.take()),
            Err(poisoned) => drop(poisoned.into_inner().take()),
        }
        let handle = match self.writer.lock() {
            Ok(mut writer) => writer.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        let Some(handle) = handle else {
            return Ok(());
        };
        let result = handle.join().map_err(|_| EmbeddedError::WriterPanicked {
            path: self.path.clone(),
        })?;
        tracing::debug!(path = %self.path.display(), "embedded session store closed");
        result
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::error!(error = %e, "closing the embedded session store failed");
        }
    }
}

#[cfg(test)]
mod tests;
