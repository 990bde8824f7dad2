//! Writes the store-format fixture that `tests/format.rs` opens: a small
//! database with known sessions, a tombstone and epochs, made through the
//! public API.
//!
//! The committed fixture pins the on-disk format: every later build must
//! open it and read the same sessions. Regenerate it only together with a
//! new fixture for a new format (keep the old one and its test).
//!
//! ```text
//! cargo run -p tessera-embedded --example write_format_fixture -- crates/tessera-embedded/tests/fixtures/format-1
//! ```

use std::time::Duration;

use tessera_core::{
    ClientInfo, Session, SessionData, SessionId, SessionStore, Timestamp, TokenHash, Tombstone,
};
use tessera_embedded::EmbeddedStore;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some(dir) = std::env::args().nth(1) else {
        return Err("usage: write_format_fixture DATA_DIR".into());
    };
    if std::path::Path::new(&dir)
        .join(tessera_embedded::DATABASE_FILE)
        .exists()
    {
        return Err(format!("{dir} already holds a database; remove it first").into());
    }
    let store = EmbeddedStore::open(&dir)?;
    let created = Timestamp(1_700_000_000_000);
    let client = ClientInfo::new(Some("203.0.113.9".parse()?), Some("Firefox/130.0"));
    let alice = Session {
        id: SessionId([0xA1; 16]),
        subject: Some("alice".into()),
        auth_level: 2,
        authenticated_at: Some(created),
        data: SessionData::from_json(r#"{"cart":[1,2,3],"theme":"dark"}"#)?,
        created_at: created,
        last_seen_at: created,
        token_issued_at: created,
        idle_timeout_ms: 30 * 60 * 1000,
        absolute_expires_at: created.plus(Duration::from_secs(12 * 3600)),
        version: 1,
        epoch: 1,
        client: Some(Box::new(client.clone())),
        binding: Some(Box::new(client.binding())),
    };
    let anonymous = Session {
        id: SessionId([0xB2; 16]),
        subject: None,
        auth_level: 0,
        authenticated_at: None,
        data: SessionData::empty(),
        created_at: created,
        last_seen_at: created,
        token_issued_at: created,
        idle_timeout_ms: 30 * 60 * 1000,
        absolute_expires_at: created.plus(Duration::from_secs(12 * 3600)),
        version: 1,
        epoch: 1,
        client: None,
        binding: None,
    };
    let (first_key, alice_key, anonymous_key) = (
        TokenHash([0x33; 32]),
        TokenHash([0x11; 32]),
        TokenHash([0x22; 32]),
    );
    store.bump_global_epoch().await?;
    store.create(&first_key, &alice).await?;
    store.create(&anonymous_key, &anonymous).await?;
    // A renewal a minute later: new key, tombstone with grace at the old one.
    let renewed_at = created.plus(Duration::from_secs(60));
    let mut renewed = alice.clone();
    renewed.token_issued_at = renewed_at;
    renewed.last_seen_at = renewed_at;
    renewed.version = 2;
    let tombstone = Tombstone {
        session_id: alice.id,
        successor: alice_key,
        grace_until: Some(renewed_at.plus(Duration::from_secs(10))),
        forget_at: alice.absolute_expires_at,
    };
    store
        .rotate(&first_key, &alice_key, &renewed, 1, &tombstone, renewed_at)
        .await?;
    store.bump_subject_epoch("alice").await?;
    store.bump_subject_epoch("alice").await?;
    store.close()?;
    println!("wrote {dir}/{}", tessera_embedded::DATABASE_FILE);
    Ok(())
}
