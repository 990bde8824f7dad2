//! Tessera: session management for web services.
//!
//! This facade re-exports the engine ([`tessera_core`]) and, behind one
//! feature each, the storage backends and web integrations as they are
//! added. Start with [`SessionManager`].
#![doc = include_str!("../../../README.md")]
#![forbid(unsafe_code)]

pub use tessera_core::*;

/// Sessions for axum and tower apps: [`SessionLayer`](tessera_axum::SessionLayer),
/// the [`Session`](tessera_axum::Session) extractor, cookies, CSRF, sealed mode.
#[cfg(feature = "axum")]
pub use tessera_axum as axum;
/// The persistent single-node store on an embedded database (feature `embedded`).
#[cfg(feature = "embedded")]
pub use tessera_embedded as embedded;

/// The PostgreSQL store ([`tessera_postgres`]).
#[cfg(feature = "postgres")]
pub use tessera_postgres as postgres;

/// The Redis and Redis Cluster store ([`tessera_redis`]).
#[cfg(feature = "redis")]
pub use tessera_redis as redis;

pub mod open;
