//! Tessera sessions for actix-web: a [`SessionMiddleware`], a [`Session`]
//! extractor, hardened cookies, CSRF protection, and sealed client-side
//! sessions — the same guarantees and the same handler API as
//! `tessera-axum`.
//!
//! ```
//! use actix_web::{App, web};
//! use tessera_actix::{Session, SessionMiddleware};
//! use tessera_core::{MemoryStore, SessionManager};
//!
//! async fn home(session: Session) -> Result<String, tessera_actix::Error> {
//!     let who = session.subject().await?.unwrap_or_else(|| "anonymous".into());
//!     Ok(format!("hello, {who}"))
//! }
//!
//! async fn visit(session: Session) -> Result<String, tessera_actix::Error> {
//!     // Compare-and-swap: parallel requests lose no increment.
//!     let visits: u64 = session.update("visits", |n: Option<u64>| n.unwrap_or(0) + 1).await?;
//!     Ok(visits.to_string())
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let manager = SessionManager::builder(MemoryStore::new()).build()?;
//! let middleware = SessionMiddleware::new(manager);
//! // In `HttpServer::new(move || …)`, one App per worker, all sharing the middleware:
//! let app = App::new()
//!     .wrap(middleware.clone())
//!     .route("/", web::get().to(home))
//!     .route("/visit", web::post().to(visit));
//! # let _ = app;
//! # Ok(())
//! # }
//! ```
//!
//! # What the middleware guarantees
//!
//! * **Lazy**: a request that never touches its session makes no store
//!   call; a request that never writes creates nothing and sets no cookie.
//! * **Cookies** (`docs/tokens-and-cookies.md`): `__Host-tessera`, `Secure`,
//!   `HttpOnly`, `SameSite=Lax` (or `Strict`), `Path=/`, no `Domain`, no
//!   `Max-Age`. A configuration contradicting the prefix is refused by
//!   [`SessionMiddlewareBuilder::build`]. At most one `Set-Cookie` per name
//!   per response, always with `Cache-Control: no-store`; logout removes
//!   the cookie and sends `Clear-Site-Data: "cookies"`; a token renewed by
//!   validation is set transparently. Tokens are read from the cookie only.
//! * **Bad cookies** make the request anonymous, never a 500;
//!   [`Session::rejected`](tessera_web::SessionHandle::rejected) says why.
//! * **CSRF** (see [`tessera_web::csrf`]): unsafe methods need a masked
//!   token bound to the session, from the `X-CSRF-Token` header or the
//!   `csrf_token` form field (the handler still reads the whole form), and
//!   must not be cross-site by `Sec-Fetch-Site`/`Origin`; otherwise 403
//!   with a `Tessera-Error` code.
//! * **Concurrency**: writes use the manager's compare-and-swap; see
//!   [`SessionHandle`](tessera_web::SessionHandle) for the merge rule.
//! * **Policy** stays in the [`SessionManager`](tessera_core::SessionManager):
//!   timeouts, renewal, binding, guessing detection (429).
//!
//! Device-bound sessions (DBSC, `docs/dbsc.md`) are one builder call
//! away too (`.device_binding(DbscSettings::default())`): the middleware
//! serves the registration and refresh endpoints, offers registration
//! after a login, and leaves a bound session without its current bound
//! cookie anonymous.
//!
//! Sealed client-side sessions are one builder call away
//! (`SessionMiddleware::builder(manager).sealed(keys).build()?`), as in
//! `tessera-axum`; handlers do not change.
//!
//! Every decision is made in [`tessera_web`] (shared with the axum
//! integration); this crate translates actix-web's requests and responses.
#![forbid(unsafe_code)]

mod error;
mod middleware;
mod session;

pub use error::Error;
pub use middleware::{SessionMiddleware, SessionMiddlewareBuilder, SessionService};
pub use session::Session;
pub use tessera_web::dbsc::DbscSettings;
pub use tessera_web::{LayerConfigError, SameSite, SessionHandle};
