//! A whole session lifecycle on the in-memory store, printed step by step.
//!
//! `cargo run -p tessera --example quickstart`

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

    let visitor = manager.create(NewSession::default()).await?;
    println!("created anonymous session {}", visitor.session.id);

    let cart = SessionData::from_value(&json!({"cart": ["book"]}))?;
    manager
        .update(
            visitor.token.expose(),
            DataChange::Replace(cart),
            None,
            None,
        )
        .await?;
    println!("stored a cart in it");

    let alice = manager
        .login(Some(visitor.token.expose()), Login::new("alice"))
        .await?;
    println!(
        "alice logged in: same session {}, new token; the old token now gives: {}",
        alice.session.id,
        manager
            .validate(visitor.token.expose(), None)
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    );

    clock.advance(Duration::from_secs(16 * 60));
    let valid = manager.validate(alice.token.expose(), None).await?;
    println!(
        "16 minutes later the token was renewed: {}",
        valid.renewed_token.is_some()
    );
    let token = valid
        .renewed_token
        .map(|t| t.expose().to_owned())
        .unwrap_or_else(|| alice.token.expose().to_owned());
    println!(
        "cart survived login: {}",
        valid
            .session
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
