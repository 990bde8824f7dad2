//! Writes the store-format fixture that `tests/format.rs` opens: a small
//! database of store format 2 with known sessions, epochs and a session
//! converted from store format 1, made through the public API, and beside
//! it `tokens.txt`, the tokens that were issued for them (`NAME TOKEN` per
//! line).
//!
//! The committed fixture pins the on-disk format: every later build must
//! open it and accept the same tokens. Regenerate it only together with a
//! new fixture for a new format (keep the old one and its test).
//!
//! ```text
//! cargo run -p tessera-embedded --example write_format_fixture -- crates/tessera-embedded/tests/fixtures/format-2
//! ```
//!
//! The fixture of store format 1 (`tests/fixtures/format-1`) was written by
//! the version of this example that came with format 1, through the store
//! of that time; its records sit under fixed keys (`[0x11; 32]` and so on)
//! that are no token's hash.

use std::io::Write;
use std::time::Duration;

use tessera_core::store::Epochs;
use tessera_core::{
    ClientInfo, DataChange, ManualClock, NewSession, SessionData, SessionId, SessionManager,
    SessionToken, Timestamp,
};
use tessera_embedded::{DATABASE_FILE, EmbeddedStore};

#[path = "../tests/common/format_1.rs"]
mod format_1;

/// When the fixture's sessions begin.
const CREATED: Timestamp = Timestamp(1_700_000_000_000);

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some(dir) = std::env::args().nth(1) else {
        return Err("usage: write_format_fixture DATA_DIR".into());
    };
    let dir = std::path::Path::new(&dir);
    if dir.join(DATABASE_FILE).exists() {
        return Err(format!(
            "{} already holds a database; remove it first",
            dir.display()
        )
        .into());
    }
    let mut tokens = Vec::new();

    // A session of store format 1, converted when the store opens: the
    // fixture keeps its pointer from the old token's hash.
    let carol = SessionToken::legacy_from_secret([0xC3; 32]);
    format_1::write(
        dir,
        &format_1::OldFile {
            format_version: Some(1),
            global_epoch: 1,
            sessions: vec![(
                carol.hash(),
                format_1::OldSession {
                    id: SessionId([0xC3; 16]),
                    subject: Some("carol"),
                    data: serde_json::json!({"lang": "fr", "__tessera_csrf": "old"}),
                    created_at: CREATED,
                    last_seen_at: CREATED,
                    version: 3,
                    epoch: 1,
                },
            )],
            ..format_1::OldFile::default()
        },
    );
    tokens.push(("carol-format-1", carol.expose().to_owned()));

    let store = EmbeddedStore::open(dir)?;
    let clock = ManualClock::new(CREATED);
    let manager = SessionManager::builder(store.clone())
        .clock(clock.clone())
        .build()?;

    // Alice signs in with a second factor, renews her token a minute later
    // (the successor arrives, the old token keeps a grace), and changes her data.
    let client = ClientInfo::new(Some("203.0.113.9".parse()?), Some("Firefox/130.0"));
    let created = manager
        .create(
            NewSession::default()
                .subject("alice")
                .auth_level(2)
                .client(client)
                .data(SessionData::from_json(
                    r#"{"cart":[1,2,3],"theme":"dark"}"#,
                )?),
        )
        .await?;
    let first = issued(&created)?;
    clock.advance(Duration::from_secs(60));
    let resolved = manager.resolve(&first, None).await?;
    let rotated = manager.rotate(&resolved).await?;
    let alice = issued(&rotated)?;
    let confirmed = manager.validate(&alice, None).await?;
    manager
        .update(
            &confirmed,
            DataChange::MergePatch(serde_json::json!({"theme": "light"})),
            None,
            None,
        )
        .await?;
    tokens.push(("alice", alice));

    let anonymous = manager.create(NewSession::anonymous()).await?;
    tokens.push(("anonymous", issued(&anonymous)?));

    store.bump_subject_epoch("alice").await?;
    store.bump_subject_epoch("alice").await?;
    drop(manager);
    store.close()?;

    let mut file = std::fs::File::create(dir.join("tokens.txt"))?;
    for (name, token) in tokens {
        writeln!(file, "{name} {token}")?;
    }
    println!("wrote {}/{DATABASE_FILE} and tokens.txt", dir.display());
    Ok(())
}

fn issued(session: &tessera_core::ActiveSession) -> Result<String, Box<dyn std::error::Error>> {
    Ok(session
        .issued()
        .ok_or("the manager issued no token")?
        .expose()
        .to_owned())
}
