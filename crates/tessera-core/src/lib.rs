//! Tessera's session engine.
//!
//! A session is server-side state keyed by a secret bearer token that the
//! client holds. This crate holds everything that decides what a session is
//! and when it ends:
//!
//! * [`SessionToken`], [`TokenHash`] and [`SessionId`]: the token format of
//!   DESIGN.md §2 (`tss_` + 256 random bits + CRC-32), hashed at rest;
//! * [`SessionManager`]: create, validate (idle and absolute timeouts, touch,
//!   renewal, reuse detection, binding, global revocation), update with
//!   compare-and-swap, login and step-up, rotate, logout, revoke;
//! * [`SessionStore`]: the storage contract, with [`MemoryStore`] here and
//!   persistent backends in their own crates;
//! * [`sealed`]: client-side sessions sealed into the cookie
//!   (XChaCha20-Poly1305, key ring), validated by the same manager;
//! * `testkit` (feature `testkit`): the conformance suite every store runs.
//!
//! # Quick start
//!
//! ```
//! use tessera_core::{Login, MemoryStore, NewSession, SessionManager};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let manager = SessionManager::builder(MemoryStore::new()).build()?;
//!
//! // An anonymous visitor gets a session; the token goes into a cookie.
//! let issued = manager.create(NewSession::default()).await?;
//! let token = issued.token.expose().to_owned();
//!
//! // Later requests present the token.
//! let valid = manager.validate(&token, None).await?;
//! assert_eq!(valid.session.subject, None);
//!
//! // Login always issues a new token; the old one is dead at once.
//! let signed_in = manager.login(Some(&token), Login::new("alice")).await?;
//! assert!(manager.validate(&token, None).await.is_err());
//! let token = signed_in.token.expose().to_owned();
//! assert_eq!(manager.validate(&token, None).await?.session.subject.as_deref(), Some("alice"));
//!
//! manager.logout(&token).await?;
//! assert!(manager.validate(&token, None).await.is_err());
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

mod builder;
mod client_side;
mod clock;
pub mod codec;
mod config;
pub mod copy;
mod error;
mod events;
mod manager;
mod memory;
pub mod near_cache;
mod record;
pub mod sealed;
mod store;
mod token;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use async_trait::async_trait;
pub use builder::SessionManagerBuilder;
pub use client_side::ValidatedClientSide;
pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use config::{
    BindingPolicy, ConfigError, DEFAULT_MAX_DATA_BYTES, DEFAULT_MAX_SUBJECT_BYTES, SessionConfig,
};
pub use error::{InvalidReason, SessionError};
pub use events::{
    CollectingEventSink, EventSink, ExpiryKind, FanOutEventSink, RevokeCause, SessionEvent,
    TracingEventSink,
};
pub use manager::{DataChange, IssuedSession, Login, NewSession, SessionManager, ValidatedSession};
pub use memory::MemoryStore;
pub use record::{
    ClientBinding, ClientInfo, DataError, EXPIRED_RETENTION, MAX_USER_AGENT_BYTES, Session,
    SessionData, StoredEntry, Tombstone, ip_prefix,
};
pub use store::{
    BoxError, CreateOutcome, ExportPage, SessionStore, StoreError, WriteOutcome, page_of_keys,
};
pub use token::{
    SessionId, SessionIdError, SessionToken, TOKEN_LEN, TOKEN_PREFIX, TOKEN_SECRET_BYTES,
    TokenError, TokenHash,
};
