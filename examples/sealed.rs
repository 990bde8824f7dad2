//! The same login app with sessions sealed into the cookie (encrypted with
//! XChaCha20-Poly1305): three lines differ from `axum-login`, and no
//! handler changes. The store keeps only revocation epochs, so logout and
//! "sign out my other devices" still end sealed sessions at once.
//!
//! `cargo run -p tessera-examples --example sealed`, then open
//! <http://localhost:3000/> (`alice` / `wonderland`).

mod login_app;

use tessera::axum::SessionLayer;
use tessera::sealed::{KeyRing, SealingKey};
use tessera::{MemoryStore, SessionManager};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The store keeps only revocation epochs. A memory store loses them at
    // a restart, which ends every sealed session (revoked ones stay
    // revoked): accepted here; in production use a persistent store.
    let manager = SessionManager::builder(MemoryStore::new())
        .allow_volatile_epochs()
        .build()?;
    // In production: `KeyRing::parse(&std::env::var("SEALING_KEYS")?)`, keys
    // `ID:BASE64KEY` newest first (`openssl rand -base64 32` makes one).
    let keys = KeyRing::new(SealingKey::generate(1)?);
    let layer = SessionLayer::builder(manager).sealed(keys).build()?;
    login_app::serve(login_app::app(layer)).await
}
