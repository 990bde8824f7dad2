//! A PostgreSQL [`SessionStore`](tessera_core::SessionStore) for Tessera, for
//! teams that want their sessions beside their data instead of in another
//! service.
//!
//! * **Driver**: `tokio-postgres` with a `deadpool-postgres` pool: statements
//!   are prepared once per connection, and every operation is bounded by a
//!   timeout and fails as [`StoreError::Unavailable`](tessera_core::StoreError)
//!   when the database is down; the pool reconnects when it is back.
//! * **Schema**: created and upgraded by the embedded, versioned
//!   [`migrations`] in a configurable schema (default `tessera`) with an
//!   optional table prefix. Records are keyed by the token's SHA-256 and kept
//!   in Tessera's versioned stored format, with the columns the queries need
//!   (subject, version, expiry) beside them and indexed.
//! * **Guarantees**: create-if-absent (`INSERT … ON CONFLICT DO NOTHING`),
//!   compare-and-swap on `version` in one statement, rotation in one
//!   transaction, nothing past its forget time ever returned, and a sweeper
//!   that deletes in small `FOR UPDATE SKIP LOCKED` batches, safe to run on
//!   every node.
//!
//! ```no_run
//! use std::time::Duration;
//! use tessera_core::{NewSession, SessionManager};
//! use tessera_postgres::PostgresStore;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = PostgresStore::connect("postgres://tessera@127.0.0.1:5432/app?schema=sessions").await?;
//! store.spawn_sweeper(Duration::from_secs(60));
//! let manager = SessionManager::builder(store).build()?;
//! let issued = manager.create(NewSession::default()).await?;
//! manager.validate(issued.token.expose(), None).await?;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

mod config;
mod error;
pub mod migrations;
mod rows;
mod sql;
mod store;
mod sweeper;

pub use config::{DEFAULT_SCHEMA, MAX_TABLE_PREFIX_LEN, PostgresConfig, redacted_url};
pub use error::PostgresError;
pub use store::PostgresStore;

/// Creates or upgrades the schema without opening a store; returns the
/// versions applied (empty when it was current).
pub async fn migrate(config: &PostgresConfig) -> Result<Vec<i32>, PostgresError> {
    config.validate()?;
    PostgresStore::build(config)?
        .prepare_schema(config.clone().run_migrations(true))
        .await
}
