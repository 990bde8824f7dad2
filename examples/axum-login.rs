//! An axum app with sign-in, a per-user counter, logout and "sign out my
//! other devices" (the handlers are in `login_app/mod.rs`).
//!
//! `cargo run -p tessera-examples --example axum-login`, then open
//! <http://localhost:3000/> (`alice` / `wonderland`). Browsers treat
//! `localhost` as a secure context, so the `__Host-` cookie works over plain
//! HTTP there; anywhere else serve HTTPS (or, for development only, use
//! `.secure(false)` with a cookie name without the `__Host-` prefix).

mod login_app;

use tessera::axum::SessionLayer;
use tessera::{MemoryStore, SessionManager};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Sessions in memory; for sessions that survive a restart, open the
    // embedded store instead:
    // `SessionManager::builder(tessera::embedded::EmbeddedStore::open("./tessera-data")?)`.
    let manager = SessionManager::builder(MemoryStore::new()).build()?;
    login_app::serve(login_app::app(SessionLayer::new(manager))).await
}
