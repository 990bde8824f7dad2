//! A PostgreSQL [`SessionStore`](tessera_core::store::SessionStore) for
//! Tessera, for teams that want their sessions beside their data instead of
//! in another service.
//!
//! * **Driver**: `tokio-postgres` with a `deadpool-postgres` pool: statements
//!   are prepared once per connection, and every operation is bounded by a
//!   timeout and fails as [`StoreError::Unavailable`](tessera_core::store::StoreError)
//!   when the database is down; the pool reconnects when it is back.
//! * **Schema**: created and upgraded by the embedded, versioned
//!   [`migrations`] in a configurable schema (default `tessera`) with an
//!   optional table prefix, under an advisory lock (nodes starting together
//!   migrate once).
//! * **Layout** (migration 2): one row per session in `records`, keyed by
//!   the session's public id, holding the record's bytes as
//!   [`tessera_core::codec`] writes them, with `subject` and `forget_at`
//!   beside them and indexed. Validation is one primary-key `SELECT`; a
//!   write is one statement: create is `INSERT … ON CONFLICT DO NOTHING`,
//!   update a compare-and-swap on the record's revision bytes
//!   (`substring(record from 2 for 40)`), touch raises `last_seen_at` and
//!   the forget deadline inside the bytes and never lowers them. No
//!   statement computes a deadline: the manager gives them.
//! * **Attachments and the journal** (migration 3): tables of their own;
//!   deleting a session deletes its attachments in the same statement.
//! * **Epochs** are committed rows
//!   ([`Durability::Persistent`](tessera_core::store::Durability)); a
//!   schema made from nothing starts its global epoch at the current time
//!   in milliseconds, so a database lost and made again revives no revoked
//!   sealed session.
//! * **Previous layout**: migration 2 converts every session of migration
//!   1's layout (keyed by the hash of a token of the first format) in
//!   batches inside the migration run, keeps a pointer from the old token
//!   hash to the session's id for
//!   [`find_legacy`](tessera_core::store::Records::find_legacy), and drops
//!   the old table (`docs/stores.md`, PostgreSQL).
//! * **Expiry**: nothing past its forget deadline is ever returned;
//!   [`sweep_expired`](tessera_core::store::Maintenance::sweep_expired)
//!   deletes in small `FOR UPDATE SKIP LOCKED` batches, safe to run on every
//!   node through [`tessera_core::store::spawn_sweeper`].
//!
//! ```no_run
//! use std::time::Duration;
//! use tessera_core::{NewSession, SessionManager};
//! use tessera_core::store::spawn_sweeper;
//! use tessera_postgres::PostgresStore;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = PostgresStore::connect("postgres://tessera@127.0.0.1:5432/app?schema=sessions").await?;
//! let _sweeper = spawn_sweeper(store.clone(), Duration::from_secs(60));
//! let manager = SessionManager::builder(store).build()?;
//! let created = manager.create(NewSession::default()).await?;
//! let token = created.issued().expect("a new session has a credential").expose();
//! manager.validate(token, None).await?;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

mod config;
mod error;
mod extras;
mod legacy;
mod maintenance;
pub mod migrations;
mod records;
mod rows;
mod sql;
mod store;

pub use config::{DEFAULT_SCHEMA, MAX_TABLE_PREFIX_LEN, PostgresConfig};
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
