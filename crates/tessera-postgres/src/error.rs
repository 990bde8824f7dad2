//! Errors of setting the store up, and the mapping of driver errors to [`StoreError`].

use tessera_core::store::StoreError;

/// Why the store could not be set up (configuration, connection, migrations).
/// Failures of single operations afterwards are [`StoreError`]s.
#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    /// A setting is invalid; the message names it and what is allowed.
    #[error("invalid PostgreSQL store settings: {0}")]
    Config(String),
    /// PostgreSQL could not be reached, or refused the connection.
    #[error("cannot reach PostgreSQL: {0}")]
    Unavailable(#[from] StoreError),
    /// A migration failed; nothing of it was applied.
    #[error("migration {version} ({name}) failed: {source}")]
    Migration {
        /// The migration's version.
        version: i32,
        /// The migration's name.
        name: &'static str,
        /// What PostgreSQL said.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The schema was migrated by a newer Tessera than this one.
    #[error(
        "schema `{schema}` is at migration {found}, newer than this build knows ({known}); upgrade Tessera"
    )]
    SchemaTooNew {
        /// The schema.
        schema: String,
        /// The newest migration applied to it.
        found: i32,
        /// The newest migration this build has.
        known: i32,
    },
    /// The schema has not been migrated and migrations are turned off.
    #[error(
        "schema `{schema}` is at migration {found}, older than this build needs ({known}); run the migrations (e.g. connect once with migrations on)"
    )]
    SchemaTooOld {
        /// The schema.
        schema: String,
        /// The newest migration applied to it (0: none).
        found: i32,
        /// The newest migration this build has.
        known: i32,
    },
}

/// Maps a driver error to a store error. Every failure to talk to the
/// database, or of a statement, makes the store unavailable for that call:
/// callers fail closed and retry later.
pub(crate) fn store_error(what: &str, error: tokio_postgres::Error) -> StoreError {
    let message = match error.as_db_error() {
        Some(db) => format!(
            "{what}: PostgreSQL error {}: {}",
            db.code().code(),
            db.message()
        ),
        None if error.is_closed() => format!("{what}: the connection to PostgreSQL was closed"),
        None => format!("{what}: {error}"),
    };
    StoreError::unavailable(message, error)
}

/// Maps a pool error (no connection could be had) to a store error.
pub(crate) fn pool_error(error: deadpool_postgres::PoolError) -> StoreError {
    use deadpool_postgres::PoolError;
    let message = match &error {
        PoolError::Timeout(kind) => {
            format!("no PostgreSQL connection within the timeout ({kind:?})")
        }
        PoolError::Backend(e) => match e.as_db_error() {
            Some(db) => format!("PostgreSQL refused the connection: {}", db.message()),
            None => format!("cannot connect to PostgreSQL: {e}"),
        },
        PoolError::Closed => "the PostgreSQL connection pool is closed".to_owned(),
        other => format!("PostgreSQL connection pool: {other}"),
    };
    StoreError::unavailable(message, error)
}

/// The error of an operation that ran out of time.
pub(crate) fn timed_out(what: &str, timeout: std::time::Duration) -> StoreError {
    StoreError::Unavailable {
        message: format!("{what}: PostgreSQL did not answer within {timeout:?}"),
        source: None,
    }
}
