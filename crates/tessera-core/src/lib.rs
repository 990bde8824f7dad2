//! Tessera's session engine.
//!
//! A session is state a server keeps for a client between requests, found
//! again through a secret credential the client holds. This crate holds
//! everything that decides what a session is and when it ends:
//!
//! * [`SessionManager`]: create, validate (idle and absolute timeouts,
//!   touch, renewal, reuse detection, binding, revocation epochs), update
//!   with compare-and-swap, login and step-up, rotate, logout, revoke, for
//!   sessions kept in a store and sessions [`sealed`] into their
//!   credential alike;
//! * [`SessionToken`] and [`SessionId`]: the token format
//!   (`docs/tokens-and-cookies.md`), a public selector and a secret
//!   verifier, hashed at rest;
//! * [`store`]: the storage contract, with [`MemoryStore`] here and
//!   persistent backends in their own crates, and [`codec`], the stored form;
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
//! // An anonymous visitor gets a session; the credential goes into a cookie.
//! let created = manager.create(NewSession::anonymous()).await?;
//! let token = created.issued().expect("a new session has a credential").expose().to_owned();
//!
//! // Later requests present it.
//! let session = manager.validate(&token, None).await?;
//! assert_eq!(session.record().subject, None);
//!
//! // Login always issues a new credential; the old one is dead at once.
//! let signed_in = manager.login(Some(&session), Login::new("alice")).await?;
//! assert!(manager.validate(&token, None).await.is_err());
//! let token = signed_in.issued().expect("login issues a credential").expose().to_owned();
//! let session = manager.validate(&token, None).await?;
//! assert_eq!(session.record().subject.as_deref(), Some("alice"));
//!
//! manager.logout(&session).await?;
//! assert!(manager.validate(&token, None).await.is_err());
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

mod builder;
mod clock;
pub mod codec;
mod config;
pub mod copy;
pub mod device;
mod error;
mod events;
mod manager;
mod memory;
pub mod near_cache;
mod record;
pub mod sealed;
pub mod store;
mod token;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use builder::SessionManagerBuilder;
pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use config::{
    BindingPolicy, ConfigError, DEFAULT_MAX_DATA_BYTES, DEFAULT_MAX_SUBJECT_BYTES, SessionConfig,
};
pub use error::{InvalidReason, SessionError};
pub use events::{
    CollectingEventSink, EventSink, ExpiryKind, FanOutEventSink, RevokeCause, SessionEvent,
    TracingEventSink,
};
pub use manager::{
    ActiveSession, Credential, DataChange, EXPIRED_RETENTION, Login, MAX_LISTED_SESSIONS,
    NewSession, PendingLogin, SessionManager, forget_at,
};
pub use memory::MemoryStore;
pub use record::{
    AuthLevel, ClientBinding, ClientInfo, CsrfSecret, DataError, MAX_USER_AGENT_BYTES, Revision,
    SessionData, SessionRecord,
};
pub use token::{
    LEGACY_TOKEN_LEN, SessionId, SessionIdError, SessionToken, TOKEN_LEN, TOKEN_PREFIX, TokenError,
    TokenHash,
};
