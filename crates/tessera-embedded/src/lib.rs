//! Tessera's persistent single-node session store, on the embedded database
//! [redb](https://docs.rs/redb): no server to install, crash-safe, and
//! acknowledged writes survive `kill -9` and power loss.
//!
//! ```
//! use std::time::Duration;
//!
//! use tessera_core::store::spawn_sweeper;
//! use tessera_core::{NewSession, SessionManager};
//! use tessera_embedded::EmbeddedStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let data_dir = dir.path().join("tessera-data");
//! // The database file `sessions.redb` is created inside the data directory.
//! let store = EmbeddedStore::open(&data_dir)?;
//! let sweeper = spawn_sweeper(store.clone(), Duration::from_secs(60));
//! let manager = SessionManager::builder(store.clone()).build()?;
//!
//! let created = manager.create(NewSession::default()).await?;
//! let token = created.issued().expect("a new session has a token").expose().to_owned();
//! let valid = manager.validate(&token, None).await?;
//! assert_eq!(valid.record().id, created.record().id);
//!
//! // Clean shutdown: pending writes are committed and the file lock released.
//! sweeper.stop();
//! drop(manager);
//! store.close()?;
//!
//! // Everything is still there after reopening.
//! let store = EmbeddedStore::open(&data_dir)?;
//! let manager = SessionManager::builder(store).build()?;
//! assert!(manager.validate(&token, None).await.is_ok());
//! # Ok(())
//! # }
//! ```
//!
//! # How it works
//!
//! * **Layout** (store format 2, see `src/schema.rs`): one table of records
//!   keyed by session id, each the bytes of [`tessera_core::codec`] (which
//!   carry the revision that compare-and-swap compares and the forget
//!   deadline the manager gave); the revocation epochs; and a table of
//!   pointers from tokens of the first format to the sessions converted
//!   from it; attachments keyed by session id and kind, deleted with their
//!   session; and the journal, keyed by time and nonce. There are no
//!   pointer keys and no tombstones: every write, rotations included,
//!   writes one record.
//! * **Epochs** are committed like everything else
//!   ([`Durability::Persistent`](tessera_core::store::Durability)); a new
//!   file's global epoch starts at its creation time in milliseconds, so a
//!   data directory lost and made again revives no revoked sealed session.
//! * **Durability**: every write is committed in a redb transaction with
//!   `Durability::Immediate` (fsync) before the call returns. Writes that
//!   arrive while the disk is busy share the next commit (group commit), so
//!   throughput grows with concurrency although each write is fsynced.
//! * **Atomicity**: each operation (create-if-absent, compare-and-swap
//!   update, touch, delete, delete by subject, epoch changes) is one unit
//!   inside one transaction.
//! * **Reads from memory**: the process holds the database's lock, so it is
//!   the only writer. Every record's bytes are kept in an in-memory mirror
//!   (as [`tessera_core::MemoryStore`] keeps them) that is loaded at open and
//!   changed only by the writer thread, after each commit, with exactly the
//!   changes that commit made. A validation is one hash lookup and a decode;
//!   loads never touch the disk. The subject index lives there too, built
//!   from the records at open and changed with each commit: it is exact,
//!   and costs no write on disk. The price: memory grows with the number of
//!   sessions, as with the memory store.
//! * **Format**: the database keeps its store format version in a `meta`
//!   table. A file of store format 1 (records keyed by the hash of their
//!   token, JSON records and tombstones) is converted when it is opened, in
//!   one transaction: every session becomes a format 2 record under its id,
//!   keeps a pointer from its old token's hash for
//!   [`find_legacy`](tessera_core::store::Records::find_legacy) (so tokens
//!   issued before the upgrade keep working, and are replaced at their first
//!   use), tombstones are dropped, and the old tables go. A newer file is
//!   refused with [`EmbeddedError::NewerFormat`].
//! * **Write failures** (a full disk, an I/O error): the write, and every
//!   write of its group commit, fails with `StoreError::Unavailable` naming
//!   the operating system's reason, and nothing of it is stored; reads go on
//!   from memory. The engine refuses every transaction after an I/O error,
//!   so the writer reopens (and if need be repairs) the database before the
//!   next write, at most once a second: once space is free again, writes
//!   resume without a restart.
//! * **Expiry**: [`tessera_core::store::spawn_sweeper`] calls
//!   `sweep_expired`, which removes records past their forget deadline and
//!   the legacy pointers of records that are gone, 256 per transaction, so
//!   that requests are never held up for long.
//! * **Files**: the database file is created with mode `0600` (owner only)
//!   on Unix.
#![forbid(unsafe_code)]

mod batch;
mod convert;
mod error;
mod mirror;
mod schema;
mod store;
mod sweep;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use tessera_core::store::StoreError;

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
    /// repaired; a file of store format 1 is converted first); call it at
    /// startup. Fails with [`EmbeddedError::Locked`] if another process has
    /// the database open. A new database file is created readable and
    /// writable by its owner only (mode `0600`).
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

    /// Number of records held: live sessions and expired ones not yet swept.
    pub fn len(&self) -> usize {
        self.shared
            .mirror
            .read()
            .map(|m| m.records.len())
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
    /// Dropping the last clone does the same, but can only log errors (a
    /// running sweeper holds a clone until it is stopped).
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
    create_private(path)?;
    let db = redb::Database::builder()
        .set_cache_size(DATABASE_CACHE_BYTES)
        .create(path)
        .map_err(|e| EmbeddedError::database(path, e))?;
    schema::prepare(&db, path)?;
    let mirror = Mirror::load(&db, path)?;
    Ok((db, mirror))
}

/// Creates the database file, empty and readable by its owner only, unless
/// it exists (an existing file keeps its permissions). redb then finds an
/// empty file and lays a new database into it.
fn create_private(path: &Path) -> Result<(), EmbeddedError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(EmbeddedError::CreateFile {
            path: path.to_owned(),
            source,
        }),
    }
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
