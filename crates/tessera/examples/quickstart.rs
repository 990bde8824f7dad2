//! A whole session lifecycle on the in-memory store, printed step by step.
//!
//! `cargo run -p tessera-sessions --example quickstart`

use std::time::Duration;

use serde_json::json;
use tessera::{
    DataChange, Login, ManualClock, MemoryStore, NewSession, SessionData, SessionManager,
};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A manual clock lets the example show timeouts without waiting.
    let clock = ManualClock::starting_now();
    let manager = SessionManager::builder(MemoryStore::new())
        .clock(clock.clone())
        .build()?;

    // A visitor arrives: a session, and a token for its cookie.
    let visitor = manager.create(NewSession::anonymous()).await?;
    let first_token = visitor.issued().expect("a new session").expose().to_owned();
    println!("created anonymous session {}", visitor.record().id);

    let cart = SessionData::from_value(&json!({"cart": ["book"]}))?;
    let visitor = manager
        .update(&visitor, DataChange::Replace(cart), None, None)
        .await?;
    println!("stored a cart in it");

    // Login: same session, a new token; the old one is dead at once.
    let alice = manager.login(Some(&visitor), Login::new("alice")).await?;
    let mut token = alice.issued().expect("a login").expose().to_owned();
    println!(
        "alice logged in: same session {}, new token; the old token now gives: {}",
        alice.record().id,
        manager
            .validate(&first_token, None)
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    );

    // Later requests present the token; after 15 minutes it is renewed.
    clock.advance(Duration::from_secs(16 * 60));
    let valid = manager.validate(&token, None).await?;
    println!(
        "16 minutes later the token was renewed: {}",
        valid.issued().is_some()
    );
    if let Some(renewed) = valid.issued() {
        token = renewed.expose().to_owned();
    }
    println!(
        "cart survived login: {}",
        valid
            .record()
            .data
            .get::<Vec<String>>("cart")
            .unwrap_or_default()
            .join(", ")
    );

    println!(
        "alice has {} session(s)",
        manager.list_subject("alice").await?.len()
    );
    clock.advance(Duration::from_secs(31 * 60));
    println!(
        "after 31 idle minutes: {}",
        manager
            .validate(&token, None)
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    );
    Ok(())
}
