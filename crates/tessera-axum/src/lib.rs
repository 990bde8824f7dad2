//! Tessera sessions for axum: a tower [`SessionLayer`], a [`Session`]
//! extractor, hardened cookies, CSRF protection, and sealed client-side
//! sessions.
//!
//! ```
//! use axum::{Router, routing::{get, post}};
//! use tessera_axum::{Session, SessionLayer};
//! use tessera_core::{MemoryStore, SessionManager};
//!
//! async fn home(session: Session) -> Result<String, tessera_axum::Error> {
//!     let who = session.subject().await?.unwrap_or_else(|| "anonymous".into());
//!     Ok(format!("hello, {who}"))
//! }
//!
//! async fn visit(session: Session) -> Result<String, tessera_axum::Error> {
//!     // Compare-and-swap: parallel requests lose no increment.
//!     let visits: u64 = session.update("visits", |n: Option<u64>| n.unwrap_or(0) + 1).await?;
//!     Ok(visits.to_string())
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let manager = SessionManager::builder(MemoryStore::new()).build()?;
//! let app: Router = Router::new()
//!     .route("/", get(home))
//!     .route("/visit", post(visit))
//!     .layer(SessionLayer::new(manager));
//! # let _ = app;
//! # Ok(())
//! # }
//! ```
//!
//! # What the layer guarantees
//!
//! * **Lazy**: a request that never touches its session makes no store
//!   call; a request that never writes creates nothing and sets no cookie.
//! * **Cookies** (`docs/tokens-and-cookies.md`): `__Host-tessera`, `Secure`, `HttpOnly`,
//!   `SameSite=Lax` (or `Strict`), `Path=/`, no `Domain`, no `Max-Age`. A
//!   configuration contradicting the prefix is refused by
//!   [`SessionLayerBuilder::build`]. At most one `Set-Cookie` per name per
//!   response, always with `Cache-Control: no-store`; logout removes the
//!   cookie and sends `Clear-Site-Data: "cookies"`; a token renewed by
//!   validation is set transparently. Tokens are read from the cookie only,
//!   never from a query string or a form field.
//! * **Bad cookies** — garbage, duplicated, oversized, non-UTF-8, tampered
//!   or sealed with a retired key — make the request anonymous (as if no
//!   cookie had been sent); [`Session::rejected`] says why. They never cause
//!   a 500.
//! * **CSRF** (see [`tessera_web::csrf`]): unsafe methods need a masked token bound to
//!   the session, from the `X-CSRF-Token` header or the `csrf_token` form
//!   field, and must not be cross-site by `Sec-Fetch-Site`/`Origin`;
//!   otherwise 403 with a `Tessera-Error` code.
//! * **Concurrency**: writes use the manager's compare-and-swap; see
//!   [`Session`] for the merge rule.
//! * **Policy** stays in the [`SessionManager`](tessera_core::SessionManager):
//!   timeouts, renewal, binding (a `binding_mismatch` under `reject` makes
//!   the request anonymous with [`Session::rejected`] saying so) and
//!   guessing detection (a client flagged as guessing gets 429).
//!
//! # Sealed client-side sessions
//!
//! One line switches to sessions sealed into the cookie (XChaCha20-Poly1305,
//! see [`tessera_core::sealed`]); handlers do not change:
//!
//! ```
//! # use tessera_axum::SessionLayer;
//! # use tessera_core::{MemoryStore, SessionManager};
//! use tessera_core::sealed::{KeyRing, SealingKey};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # // A memory store forgets its epochs at a restart: sealed mode asks for consent.
//! # let manager = SessionManager::builder(MemoryStore::new()).allow_volatile_epochs().build()?;
//! let keys = KeyRing::new(SealingKey::generate(2)?)      // seals
//!     .with_previous(SealingKey::new(1, [7; 32]))?;       // still opens
//! let layer = SessionLayer::builder(manager).sealed(keys).build()?;
//! # let _ = layer;
//! # Ok(())
//! # }
//! ```
//!
//! The store then keeps only per-subject revocation epochs: logout and
//! "sign out everywhere else" end a subject's sealed sessions at once.
//! Sessions above 4096 bytes span numbered cookies up to
//! [`SessionLayerBuilder::max_cookies`]; beyond that, writes fail with the
//! code `session_too_large` (413).
//!
//! # Device-bound sessions (DBSC)
//!
//! One builder option binds sessions to a key the browser keeps on the
//! device (`docs/dbsc.md`): after a login the response offers
//! registration, the layer serves the registration and refresh endpoints
//! (`/tessera/dbsc/register`, `/tessera/dbsc/refresh`), and a bound
//! session is authenticated only together with its short-lived bound
//! cookie (10 minutes by default), which only the device can renew. A
//! stolen cookie jar stops working when that cookie expires. Browsers
//! without DBSC ignore the offer and are served as before.
//!
//! ```
//! # use tessera_axum::{DbscSettings, SessionLayer};
//! # use tessera_core::{MemoryStore, SessionManager};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let manager = SessionManager::builder(MemoryStore::new()).build()?;
//! let layer = SessionLayer::builder(manager)
//!     .device_binding(DbscSettings::default())
//!     .build()?;
//! # let _ = layer;
//! # Ok(())
//! # }
//! ```
//!
//! The framework-neutral parts (cookies, CSRF, the per-request session)
//! live in [`tessera_web`], shared with the actix-web integration; this
//! crate translates axum's requests and responses.
#![forbid(unsafe_code)]

mod error;
mod layer;
mod session;

pub use error::Error;
pub use layer::{SessionLayer, SessionLayerBuilder, SessionService};
pub use session::Session;
pub use tessera_web::dbsc::DbscSettings;
pub use tessera_web::{LayerConfigError, SameSite, TrustedProxies};
