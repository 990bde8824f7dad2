//! Keeping users signed in while moving to Tessera: readers for the
//! session records that tower-sessions' and actix-session's Redis stores
//! wrote, so that a cookie one of them issued is accepted once and
//! exchanged for a Tessera session.
//!
//! Give a reader to the session layer (axum) or middleware (actix-web):
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use tessera_core::{MemoryStore, SessionManager};
//! use tessera_import::TowerSessionsRedis;
//!
//! let manager = SessionManager::builder(MemoryStore::new()).build()?;
//! let redis = redis::Client::open("redis://127.0.0.1:6379")?;
//! let old = TowerSessionsRedis::connect(redis).await?.subject_key("user_id");
//! let layer = tessera_axum::SessionLayer::builder(manager).import_from(old).build()?;
//! # let _ = layer;
//! # Ok(())
//! # }
//! ```
//!
//! A request that carries the old cookie (`id`) and no Tessera cookie gets,
//! the first time its handler touches the session, a Tessera session with
//! the old session's data — signed in as the value under
//! [`subject_key`](TowerSessionsRedis::subject_key) when one is set — and
//! the response replaces the old cookie by the Tessera one. The old record
//! is deleted as it is read (`GETDEL`): the old cookie works once. What the
//! cookie names is checked before Redis is asked: only a well-formed id of
//! that library (tower-sessions: 22 base64url characters; actix-session: a
//! key under its private or signed cookie) is ever looked up, so a forged
//! cookie cannot read or delete any other key.
#![forbid(unsafe_code)]

mod actix_session;
mod tower_sessions;

pub use actix_session::{ActixSessionRedis, CookieContentSecurity, KeyTooShort};
pub use tessera_web::import::{Imported, LegacySessions};
pub use tower_sessions::TowerSessionsRedis;

use redis::aio::ConnectionManager;
use serde_json::{Map, Value};
use tessera_core::store::StoreError;

/// Reads and deletes `key` in one command; `None` when it is absent.
async fn take(connection: &ConnectionManager, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
    let mut connection = connection.clone();
    redis::cmd("GETDEL")
        .arg(key)
        .query_async(&mut connection)
        .await
        .map_err(|err| StoreError::unavailable("GETDEL of an old session record", err))
}

/// The subject under `key` in `data`: a string, or a number as text.
fn subject_of(data: &Map<String, Value>, key: Option<&str>) -> Option<String> {
    match data.get(key?)? {
        Value::String(text) if !text.is_empty() => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// The migration guides (`docs/`), whose examples compile as doc tests.
#[cfg(doctest)]
mod guides {
    #[doc = include_str!("../../../docs/from-tower-sessions.md")]
    mod from_tower_sessions {}
    #[doc = include_str!("../../../docs/from-actix-session.md")]
    mod from_actix_session {}
}
