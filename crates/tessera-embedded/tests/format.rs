//! The on-disk format stays readable: the committed database files of
//! store formats 1 and 2 still open (format 1 is converted to format 2),
//! tokens issued before the conversion keep working until they are
//! replaced, and files this build cannot read are refused clearly.

mod common;

use std::path::Path;
use std::time::Duration;

use redb::{MultimapTableHandle, ReadableDatabase, ReadableTable, TableDefinition, TableHandle};
use tessera_core::store::{Epochs, Maintenance, Records, SubjectIndex};
use tessera_core::testkit::invalid_reason as reason;
use tessera_core::{
    AuthLevel, ClientInfo, InvalidReason, ManualClock, SessionData, SessionId, SessionManager,
    SessionToken, Timestamp, TokenHash, codec, forget_at,
};
use tessera_embedded::{DATABASE_FILE, EmbeddedError, EmbeddedStore};

use common::format_1::{self, OldFile, OldSession};

// The tables of store format 2, spelled out here on purpose: if the
// implementation's tables drift from them, these tests fail.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const RECORDS: TableDefinition<&[u8; 16], &[u8]> = TableDefinition::new("records");
const LEGACY_TOKENS: TableDefinition<&[u8; 32], &[u8; 16]> = TableDefinition::new("legacy_tokens");

const CREATED: Timestamp = Timestamp(1_700_000_000_000);

/// A moment when every fixture session is still valid.
fn early() -> Timestamp {
    CREATED.plus(Duration::from_secs(120))
}

/// A copy of a committed fixture in a fresh directory.
fn fixture(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    for entry in std::fs::read_dir(&from).expect("fixture") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).expect("copy");
    }
    dir
}

/// The store format and the tables of a closed database file.
fn file_layout(dir: &Path) -> (Option<u64>, Vec<String>) {
    let db = redb::Database::open(dir.join(DATABASE_FILE)).expect("open the file");
    let txn = db.begin_read().expect("read");
    let version = txn
        .open_table(META)
        .expect("meta")
        .get("format_version")
        .expect("get")
        .map(|v| v.value());
    let mut tables: Vec<String> = txn
        .list_tables()
        .expect("tables")
        .map(|t| t.name().to_owned())
        .chain(
            txn.list_multimap_tables()
                .expect("multimap tables")
                .map(|t| t.name().to_owned()),
        )
        .collect();
    tables.sort();
    (version, tables)
}

/// The tables of format 2 (`attachments` and `journal` are added to older
/// files of the format when they are opened).
fn format_2_tables() -> Vec<String> {
    [
        "attachments",
        "journal",
        "legacy_tokens",
        "meta",
        "records",
        "subject_epochs",
    ]
    .map(String::from)
    .to_vec()
}

fn manager(store: &EmbeddedStore, clock: &ManualClock) -> SessionManager {
    SessionManager::builder(store.clone())
        .clock(clock.clone())
        .build()
        .expect("manager")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_committed_format_1_database_is_converted_when_opened() {
    let dir = fixture("format-1");
    assert_eq!(
        file_layout(dir.path()).0,
        Some(1),
        "the fixture is of format 1"
    );
    let store = EmbeddedStore::open(dir.path()).expect("the format 1 fixture opens");

    // Alice's session, renewed a minute after it began (its first key left
    // a tombstone), and an anonymous one; keys are fixed, not token hashes.
    let (alice_key, anonymous_key, tombstone_key) = (
        TokenHash([0x11; 32]),
        TokenHash([0x22; 32]),
        TokenHash([0x33; 32]),
    );
    let alice_id = SessionId([0xA1; 16]);
    let renewed_at = CREATED.plus(Duration::from_secs(60));
    let alice = store
        .load(&alice_id, early())
        .await
        .expect("load")
        .expect("alice's session");
    let client = ClientInfo::new(
        Some("203.0.113.9".parse().expect("ip")),
        Some("Firefox/130.0"),
    );
    assert_eq!(alice.subject.as_deref(), Some("alice"));
    assert_eq!(alice.auth_level, AuthLevel(2));
    assert_eq!(alice.authenticated_at, Some(CREATED));
    assert_eq!(
        alice.data,
        SessionData::from_json(r#"{"cart":[1,2,3],"theme":"dark"}"#).expect("data")
    );
    assert_eq!(alice.created_at, CREATED);
    assert_eq!(alice.last_seen_at, renewed_at);
    assert_eq!(alice.token_issued_at, renewed_at);
    assert_eq!(alice.idle_timeout_ms, 30 * 60 * 1000);
    assert_eq!(
        alice.absolute_expires_at,
        CREATED.plus(Duration::from_secs(12 * 3600))
    );
    assert_eq!(alice.version, 2);
    assert_eq!(alice.epoch, 1);
    assert_eq!(alice.client.as_deref(), Some(&client));
    assert_eq!(alice.binding.as_deref(), Some(&client.binding()));
    assert_eq!(
        alice.revision().token,
        alice_key,
        "the record's token is the key it was stored under"
    );

    // The old keys lead to the sessions; the tombstone's key leads nowhere.
    assert_eq!(
        store.find_legacy(&alice_key, early()).await.expect("find"),
        Some(alice_id)
    );
    let anonymous_id = SessionId([0xB2; 16]);
    let found = store.find_legacy(&anonymous_key, early()).await;
    assert_eq!(found.expect("find"), Some(anonymous_id));
    assert_eq!(
        store
            .find_legacy(&tombstone_key, early())
            .await
            .expect("find"),
        None,
        "tombstones are dropped"
    );
    let anonymous = store
        .load(&anonymous_id, early())
        .await
        .expect("load")
        .expect("the anonymous session");
    assert_eq!(anonymous.subject, None);
    assert_eq!(anonymous.data, SessionData::empty());

    // Listing, epochs and revocation reach the converted sessions.
    let listed = store
        .list_subject("alice", None, 10, early())
        .await
        .expect("list");
    assert_eq!(listed.items, vec![alice.clone()]);
    assert_eq!(store.global_epoch().await.expect("epoch"), 1);
    assert_eq!(store.subject_epoch("alice").await.expect("epoch"), 2);
    let clock = ManualClock::new(early());
    let m = manager(&store, &clock);
    assert_eq!(m.list_subject("alice").await.expect("list").len(), 1);
    assert_eq!(m.revoke_subject("alice", None).await.expect("revoke"), 1);
    assert_eq!(
        store.find_legacy(&alice_key, early()).await.expect("find"),
        None,
        "a revoked session's old key leads nowhere"
    );
    drop(m);
    store.close().expect("close");

    // The file is of format 2 now, without the old tables, and opens as such.
    assert_eq!(file_layout(dir.path()), (Some(2), format_2_tables()));
    let store = EmbeddedStore::open(dir.path()).expect("reopen");
    assert!(
        store
            .load(&alice_id, early())
            .await
            .expect("load")
            .is_none()
    );
    let found = store.find_legacy(&anonymous_key, early()).await;
    assert_eq!(found.expect("find"), Some(anonymous_id));
    // Sweeping removes the pointer of the revoked session, and once its
    // deadline passes, the anonymous session's record and pointer.
    let later = forget_at(&anonymous);
    assert_eq!(store.sweep_expired(early()).await.expect("sweep"), 1);
    assert_eq!(store.sweep_expired(later).await.expect("sweep"), 2);
    assert!(store.is_empty());
    store.close().expect("close");
    let db = redb::Database::open(dir.path().join(DATABASE_FILE)).expect("file");
    let txn = db.begin_read().expect("read");
    assert!(
        txn.open_table(LEGACY_TOKENS)
            .expect("pointers")
            .iter()
            .expect("iter")
            .next()
            .is_none(),
        "no pointer is left behind"
    );
}

/// Alice (signed in, her data holds the CSRF secret of the old layer),
/// a rotated-away token of hers, Bob, and an anonymous visitor, in the
/// format 1 layout with tokens whose text is known.
struct OldTokens {
    alice: SessionToken,
    alice_before_rotation: SessionToken,
    bob: SessionToken,
    anonymous: SessionToken,
}

fn write_format_1_with_tokens(dir: &Path) -> OldTokens {
    let tokens = OldTokens {
        alice: SessionToken::legacy_from_secret([1; 32]),
        alice_before_rotation: SessionToken::legacy_from_secret([2; 32]),
        bob: SessionToken::legacy_from_secret([3; 32]),
        anonymous: SessionToken::legacy_from_secret([4; 32]),
    };
    let session = |id: u8, subject, data| OldSession {
        id: SessionId([id; 16]),
        subject,
        data,
        created_at: CREATED,
        last_seen_at: CREATED.plus(Duration::from_secs(30)),
        version: 2,
        epoch: 1,
    };
    format_1::write(
        dir,
        &OldFile {
            format_version: Some(1),
            global_epoch: 1,
            sessions: vec![
                (
                    tokens.alice.hash(),
                    session(
                        0xA1,
                        Some("alice"),
                        serde_json::json!({"cart": [7], "__tessera_csrf": "c2VjcmV0"}),
                    ),
                ),
                (
                    tokens.bob.hash(),
                    session(0xB0, Some("bob"), serde_json::json!({})),
                ),
                (
                    tokens.anonymous.hash(),
                    session(0xAA, None, serde_json::json!({"lang": "de"})),
                ),
            ],
            tombstones: vec![(
                tokens.alice_before_rotation.hash(),
                format_1::tombstone(
                    SessionId([0xA1; 16]),
                    tokens.alice.hash(),
                    CREATED.plus(Duration::from_secs(12 * 3600)),
                ),
            )],
            subject_epochs: vec![("bob", 3)],
            ..OldFile::default()
        },
    );
    tokens
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_of_format_1_validate_after_the_conversion_and_are_replaced() {
    let dir = tempfile::tempdir().expect("temp dir");
    let old = write_format_1_with_tokens(dir.path());
    let store = EmbeddedStore::open(dir.path()).expect("open converts");
    let clock = ManualClock::new(early());
    let m = manager(&store, &clock);

    // Alice's first request after the upgrade: valid, and her token is
    // replaced by one of the current format.
    let first = m
        .validate(old.alice.expose(), None)
        .await
        .expect("alice's old token validates");
    assert_eq!(first.record().id, SessionId([0xA1; 16]));
    assert_eq!(first.record().subject.as_deref(), Some("alice"));
    assert_eq!(
        first.record().data,
        SessionData::from_json(r#"{"cart":[7]}"#).expect("data"),
        "the data, without the old layer's CSRF key"
    );
    let new = first
        .issued()
        .expect("a token of the first format is replaced at its first use")
        .expose()
        .to_owned();
    let parsed = SessionToken::parse(&new).expect("a token");
    assert_eq!(parsed.session_id(), Some(SessionId([0xA1; 16])));
    let again = m.validate(&new, None).await.expect("the new token");
    assert!(
        again.issued().is_none(),
        "the new token is not replaced again"
    );
    // Requests still in flight with the old token resolve for the grace.
    let in_flight = m
        .validate(old.alice.expose(), None)
        .await
        .expect("the old token within the grace");
    assert_eq!(in_flight.record().id, SessionId([0xA1; 16]));

    // A token a rotation had replaced before the upgrade is unknown.
    assert_eq!(
        reason(m.validate(old.alice_before_rotation.expose(), None).await),
        InvalidReason::Unknown
    );

    // The anonymous visitor's token works the same way.
    let visitor = m
        .validate(old.anonymous.expose(), None)
        .await
        .expect("the anonymous token");
    assert_eq!(
        visitor.record().data,
        SessionData::from_json(r#"{"lang":"de"}"#).expect("data")
    );
    assert!(visitor.issued().is_some(), "replaced too");

    // Bob never came back: his session is listed, its subject epoch kept,
    // and revoking his sessions reaches it; his old token then fails.
    assert_eq!(m.list_subject("bob").await.expect("list").len(), 1);
    assert_eq!(store.subject_epoch("bob").await.expect("epoch"), 3);
    assert_eq!(m.revoke_subject("bob", None).await.expect("revoke"), 1);
    assert_eq!(
        reason(m.validate(old.bob.expose(), None).await),
        InvalidReason::Unknown
    );
    drop(m);
    store.close().expect("close");

    // After a restart the replaced token is what counts.
    let store = EmbeddedStore::open(dir.path()).expect("reopen");
    let m = manager(&store, &clock);
    m.validate(&new, None)
        .await
        .expect("the replacement survives a restart");
    // Revoking everything reaches converted sessions as well.
    m.revoke_everything().await.expect("revoke everything");
    assert_eq!(reason(m.validate(&new, None).await), InvalidReason::Revoked);
    drop(m);
    store.close().expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_committed_format_2_database_still_opens_and_its_tokens_validate() {
    let dir = fixture("format-2");
    let tokens: Vec<(String, String)> = std::fs::read_to_string(dir.path().join("tokens.txt"))
        .expect("tokens")
        .lines()
        .map(|line| {
            let (name, token) = line.split_once(' ').expect("NAME TOKEN");
            (name.to_owned(), token.to_owned())
        })
        .collect();
    let token = |name: &str| {
        tokens
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.clone())
            .unwrap_or_else(|| panic!("no token for {name}"))
    };
    let store = EmbeddedStore::open(dir.path()).expect("the format 2 fixture opens");
    assert_eq!(store.len(), 3);
    assert_eq!(store.global_epoch().await.expect("epoch"), 1);
    assert_eq!(store.subject_epoch("alice").await.expect("epoch"), 2);
    let clock = ManualClock::new(CREATED.plus(Duration::from_secs(180)));
    let m = manager(&store, &clock);

    let alice = m.validate(&token("alice"), None).await.expect("alice");
    let record = alice.record();
    assert_eq!(record.subject.as_deref(), Some("alice"));
    assert_eq!(record.auth_level, AuthLevel(2));
    assert_eq!(
        record.data,
        SessionData::from_json(r#"{"cart":[1,2,3],"theme":"light"}"#).expect("data")
    );
    assert_eq!(record.version, 2, "created, then one data change");
    assert_eq!(
        record.token_issued_at,
        CREATED.plus(Duration::from_secs(60))
    );
    assert!(record.client.is_some());
    assert_eq!(m.list_subject("alice").await.expect("list").len(), 1);

    let anonymous = m
        .validate(&token("anonymous"), None)
        .await
        .expect("anonymous");
    assert_eq!(anonymous.record().subject, None);

    // A session converted from format 1 before the fixture was written.
    let carol = m
        .validate(&token("carol-format-1"), None)
        .await
        .expect("carol's token of the first format");
    assert_eq!(carol.record().id, SessionId([0xC3; 16]));
    assert_eq!(carol.record().version, 3);
    assert!(carol.issued().is_some(), "and replaced at its first use");
    drop(m);
    store.close().expect("close");
    assert_eq!(file_layout(dir.path()), (Some(2), format_2_tables()));
}

/// Writes a database file with the format 2 tables by hand.
fn write_format_2_by_hand(
    dir: &Path,
    format_version: u64,
    fill: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>,
) {
    let db = redb::Database::create(dir.join(DATABASE_FILE)).expect("create");
    let txn = db.begin_write().expect("write");
    {
        let mut meta = txn.open_table(META).expect("meta");
        meta.insert("format_version", format_version)
            .expect("version");
        txn.open_table(RECORDS).expect("records");
        txn.open_table(LEGACY_TOKENS).expect("pointers");
        txn.open_table(TableDefinition::<&str, u64>::new("subject_epochs"))
            .expect("epochs");
    }
    fill(&txn).expect("fill");
    txn.commit().expect("commit");
}

#[test]
fn a_newer_store_format_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_format_2_by_hand(dir.path(), 3, |_| Ok(()));
    match EmbeddedStore::open(dir.path()) {
        Err(
            error @ EmbeddedError::NewerFormat {
                found: 3,
                supported: 2,
                ..
            },
        ) => {
            assert!(error.to_string().contains("upgrade Tessera"), "{error}");
        }
        other => panic!("expected NewerFormat, got {other:?}"),
    }
}

#[test]
fn a_newer_record_format_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut bytes = codec::encode(
        &common::record(CREATED, None, Duration::from_secs(60)),
        early(),
    );
    bytes[0] = 3;
    write_record_by_hand(dir.path(), [7; 16], &bytes);
    assert_corrupt_at_open(dir.path(), "upgrade Tessera");
}

#[test]
fn tables_without_a_format_version_are_not_taken_for_a_session_database() {
    let dir = tempfile::tempdir().expect("temp dir");
    format_1::write(
        dir.path(),
        &OldFile {
            format_version: None,
            ..OldFile::default()
        },
    );
    assert_corrupt_at_open(dir.path(), "no store format version");
}

#[test]
fn a_record_under_another_id_is_reported_at_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    let record = common::record(CREATED, Some("alice"), Duration::from_secs(60));
    let bytes = codec::encode(&record, early());
    write_record_by_hand(dir.path(), [9; 16], &bytes);
    assert_corrupt_at_open(dir.path(), "holds session");
}

#[test]
fn a_format_1_file_that_cannot_be_converted_is_refused_and_left_as_it_was() {
    // A session its id index does not know: converting it would be a guess.
    let dir = tempfile::tempdir().expect("temp dir");
    let id = SessionId([7; 16]);
    format_1::write(
        dir.path(),
        &OldFile {
            format_version: Some(1),
            sessions: vec![(
                TokenHash([7; 32]),
                OldSession {
                    id,
                    subject: Some("alice"),
                    data: serde_json::json!({}),
                    created_at: CREATED,
                    last_seen_at: CREATED,
                    version: 1,
                    epoch: 0,
                },
            )],
            unindexed: vec![id],
            ..OldFile::default()
        },
    );
    let before = file_layout(dir.path());
    assert_corrupt_at_open(dir.path(), "id index");
    assert_eq!(file_layout(dir.path()), before, "nothing was converted");

    // A record of an unknown kind in the old layout.
    let dir = tempfile::tempdir().expect("temp dir");
    format_1::write(
        dir.path(),
        &OldFile {
            format_version: Some(1),
            tombstones: vec![(TokenHash([8; 32]), br#"{"v":2,"session":{}}"#.to_vec())],
            ..OldFile::default()
        },
    );
    assert_corrupt_at_open(dir.path(), "format 1 record");
    assert_eq!(file_layout(dir.path()).0, Some(1));
}

/// Opening the store in `dir` fails as corrupt, saying `says`.
#[track_caller]
fn assert_corrupt_at_open(dir: &Path, says: &str) {
    match EmbeddedStore::open(dir) {
        Err(error @ EmbeddedError::Corrupt { .. }) => {
            assert!(error.to_string().contains(says), "{error}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

/// Writes `bytes` under `key` in the records table of a format 2 file
/// made by hand.
fn write_record_by_hand(dir: &Path, key: [u8; 16], bytes: &[u8]) {
    write_format_2_by_hand(dir, 2, |txn| {
        txn.open_table(RECORDS)?.insert(&key, bytes)?;
        Ok(())
    });
}
