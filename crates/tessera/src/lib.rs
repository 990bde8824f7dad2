//! Tessera: session management for web services.
//!
//! A session is state a server keeps for a client between requests, found
//! again through a secret credential the client holds in a cookie. Tessera
//! issues that credential, keeps the state, and ends the session on logout,
//! inactivity, theft or revocation, in one engine, the [`SessionManager`],
//! over any store in [`store`] and, behind features, in web frameworks.
//!
//! ```
//! use tessera::{Login, MemoryStore, NewSession, SessionManager};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let manager = SessionManager::builder(MemoryStore::new()).build()?;
//! let visitor = manager.create(NewSession::anonymous()).await?;
//! let alice = manager.login(Some(&visitor), Login::new("alice")).await?;
//! let cookie = alice.issued().expect("a login issues a credential").expose();
//! let session = manager.validate(cookie, None).await?;
//! assert_eq!(session.record().subject.as_deref(), Some("alice"));
//! # Ok(())
//! # }
//! ```
//!
//! Features: `axum` ([`axum`], the layer and extractor), `actix`
//! ([`actix`], the middleware and extractor), `embedded`,
//! `redis`, `postgres` (the stores, also reachable by URL through
//! [`open`]), `testkit` (the stores' conformance suite). The manual is in
//! the repository's `docs/` folder, starting at `docs/README.md`.
#![forbid(unsafe_code)]

#[doc(inline)]
pub use tessera_core::{
    ActiveSession, AuthLevel, BindingPolicy, ClientInfo, Clock, ConfigError, Credential,
    DataChange, InvalidReason, Login, ManualClock, MemoryStore, NewSession, PendingLogin,
    SessionConfig, SessionData, SessionError, SessionEvent, SessionId, SessionManager,
    SessionManagerBuilder, SessionRecord, SystemClock, Timestamp,
};

/// Events and where they go: a sink receives every lifecycle and security
/// event the manager emits.
pub mod events {
    #[doc(inline)]
    pub use tessera_core::{
        CollectingEventSink, EventSink, ExpiryKind, FanOutEventSink, RevokeCause, SessionEvent,
        TracingEventSink,
    };
}

/// What store authors need: the storage contract, its outcomes and errors,
/// the stored form of a record, the hook for wrappers, the sweeper, and
/// (feature `testkit`) the conformance suite.
pub mod store {
    #[doc(inline)]
    pub use tessera_core::store::*;
    #[doc(inline)]
    pub use tessera_core::{Revision, forget_at};

    /// The stored form of a record.
    pub mod codec {
        #[doc(inline)]
        pub use tessera_core::codec::*;
    }

    /// Copying every session from one store to another (`tesserad migrate`).
    pub mod copy {
        #[doc(inline)]
        pub use tessera_core::copy::*;
    }

    /// A store that keeps recently loaded sessions in memory in front of a
    /// shared store, coherent across nodes.
    pub mod near_cache {
        #[doc(inline)]
        pub use tessera_core::near_cache::*;
    }

    /// The conformance suite every store runs.
    #[cfg(feature = "testkit")]
    pub mod testkit {
        #[doc(inline)]
        pub use tessera_core::testkit::*;
    }
}

/// Sealed client-side sessions: the record encrypted into the cookie.
pub mod sealed {
    #[doc(inline)]
    pub use tessera_core::sealed::*;
}

/// Device-bound sessions (DBSC): the binding policy, proofs and errors.
pub mod device {
    #[doc(inline)]
    pub use tessera_core::device::*;
}

/// Session tokens: their format, hashes and errors.
pub mod token {
    #[doc(inline)]
    pub use tessera_core::{
        LEGACY_TOKEN_LEN, SessionIdError, SessionToken, TOKEN_LEN, TOKEN_PREFIX, TokenError,
        TokenHash,
    };
}

/// Sessions for axum and tower apps: [`SessionLayer`](tessera_axum::SessionLayer),
/// the [`Session`](tessera_axum::Session) extractor, cookies, CSRF, sealed mode.
#[cfg(feature = "axum")]
pub mod axum {
    #[doc(inline)]
    pub use tessera_axum::*;
    #[doc(inline)]
    pub use tessera_web::{cookies, csrf, dbsc};
}

/// Sessions for actix-web apps: [`SessionMiddleware`](tessera_actix::SessionMiddleware),
/// the [`Session`](tessera_actix::Session) extractor, cookies, CSRF, sealed mode,
/// device-bound sessions.
#[cfg(feature = "actix")]
pub mod actix {
    #[doc(inline)]
    pub use tessera_actix::*;
    #[doc(inline)]
    pub use tessera_web::{cookies, csrf, dbsc};
}

/// The persistent single-node store on an embedded database (feature `embedded`).
#[cfg(feature = "embedded")]
#[doc(inline)]
pub use tessera_embedded as embedded;

/// The PostgreSQL store (feature `postgres`).
#[cfg(feature = "postgres")]
#[doc(inline)]
pub use tessera_postgres as postgres;

/// The Redis and Redis Cluster store (feature `redis`).
#[cfg(feature = "redis")]
#[doc(inline)]
pub use tessera_redis as redis;

pub mod open;

/// The manual's pages (`docs/`) and the README, included when doc tests
/// are collected so that every Rust example in them compiles and runs in CI.
#[cfg(all(
    doctest,
    feature = "axum",
    feature = "actix",
    feature = "embedded",
    feature = "redis",
    feature = "postgres",
    feature = "testkit"
))]
pub mod manual {
    #[doc = include_str!("../../../README.md")]
    pub mod readme {}
    #[doc = include_str!("../../../docs/getting-started.md")]
    pub mod getting_started {}
    #[doc = include_str!("../../../docs/concepts.md")]
    pub mod concepts {}
    #[doc = include_str!("../../../docs/axum.md")]
    pub mod axum {}
    #[doc = include_str!("../../../docs/actix.md")]
    pub mod actix {}
    #[doc = include_str!("../../../docs/sealed.md")]
    pub mod sealed {}
    #[doc = include_str!("../../../docs/stores.md")]
    pub mod stores {}
    #[doc = include_str!("../../../docs/writing-a-store.md")]
    pub mod writing_a_store {}
}
