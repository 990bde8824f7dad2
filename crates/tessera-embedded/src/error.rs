//! Errors of opening, running and closing the embedded store.

use std::path::PathBuf;

use tessera_core::store::StoreError;

/// Why the embedded store could not be opened or closed.
///
/// Failures of individual session operations are reported as
/// [`StoreError`](tessera_core::store::StoreError), like every store's.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    /// The data directory could not be created.
    #[error("cannot create the data directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The database file could not be created.
    #[error("cannot create the session database {path}: {source}")]
    CreateFile {
        /// The database file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// Another process (or another open handle in this one) has the database open.
    #[error(
        "the session database {path} is locked: another process has it open. \
         Stop that process or give this one another data directory"
    )]
    Locked {
        /// The database file.
        path: PathBuf,
    },
    /// The database file was written by a newer Tessera.
    #[error(
        "the session database {path} uses store format {found}, newer than this build \
         understands ({supported}); upgrade Tessera"
    )]
    NewerFormat {
        /// The database file.
        path: PathBuf,
        /// The format version in the file.
        found: u64,
        /// The newest format version this build reads.
        supported: u64,
    },
    /// The file is not a Tessera session database, or its contents contradict
    /// each other.
    #[error("the session database {path} is damaged or not a Tessera session database: {message}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The database engine failed (I/O error, damaged file, …).
    #[error("session database {path}: {source}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// The engine's error.
        #[source]
        source: Box<redb::Error>,
    },
    /// The writer thread could not be started.
    #[error("cannot start the session database writer thread: {0}")]
    Thread(#[source] std::io::Error),
    /// The writer thread panicked; writes after the last acknowledged one may be lost.
    #[error("the session database writer thread of {path} panicked")]
    WriterPanicked {
        /// The database file.
        path: PathBuf,
    },
}

impl EmbeddedError {
    pub(crate) fn database(path: &std::path::Path, source: impl Into<redb::Error>) -> Self {
        let source = source.into();
        if matches!(source, redb::Error::DatabaseAlreadyOpen) {
            return EmbeddedError::Locked {
                path: path.to_owned(),
            };
        }
        EmbeddedError::Database {
            path: path.to_owned(),
            source: Box::new(source),
        }
    }

    pub(crate) fn corrupt(path: &std::path::Path, message: impl Into<String>) -> Self {
        EmbeddedError::Corrupt {
            path: path.to_owned(),
            message: message.into(),
        }
    }
}

/// A store-operation error for a failure of the database engine.
pub(crate) fn unavailable(what: &str, source: impl Into<redb::Error>) -> StoreError {
    StoreError::unavailable(format!("embedded session database: {what}"), source.into())
}

/// The reason every job of a failed write group is given: what failed and
/// the engine's own error (for a full disk, "No space left on device").
pub(crate) fn failure_text(what: &str, source: &dyn std::fmt::Display) -> String {
    format!("embedded session database: {what}: {source}")
}

/// The error every operation gets once the store is closed.
pub(crate) fn closed() -> StoreError {
    StoreError::Unavailable {
        message: "the embedded session store is closed".into(),
        source: None,
    }
}
