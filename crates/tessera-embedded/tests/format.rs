//! The on-disk format stays readable: a committed database file of store
//! format 1 still opens and loads, records written by hand in the format 1
//! layout load, and files this build cannot read are refused clearly.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use redb::{MultimapTableDefinition, TableDefinition};
use tessera_core::{
    ClientInfo, Session, SessionData, SessionId, SessionStore, StoredEntry, Timestamp, TokenHash,
    Tombstone,
};
use tessera_embedded::{DATABASE_FILE, EmbeddedError, EmbeddedStore};

// The store format 1 layout, spelled out here on purpose: if the
// implementation's tables drift from it, these tests fail.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const ENTRIES: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("entries");
const IDS: TableDefinition<&[u8; 16], &[u8; 32]> = TableDefinition::new("ids");
const SUBJECTS: MultimapTableDefinition<&str, &[u8; 16]> = MultimapTableDefinition::new("subjects");
const SUBJECT_EPOCHS: TableDefinition<&str, u64> = TableDefinition::new("subject_epochs");

const CREATED: Timestamp = Timestamp(1_700_000_000_000);

/// A moment when every fixture record is still kept.
fn early() -> Timestamp {
    CREATED.plus(Duration::from_secs(120))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_format_1_database_still_opens_and_loads() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format-1/sessions.redb");
    std::fs::copy(&fixture, dir.path().join(DATABASE_FILE)).expect("copy the fixture");
    let store = EmbeddedStore::open(dir.path()).expect("the format 1 fixture opens");

    let client = ClientInfo::new(
        Some("203.0.113.9".parse().expect("ip")),
        Some("Firefox/130.0"),
    );
    let renewed_at = CREATED.plus(Duration::from_secs(60));
    let alice = Session {
        id: SessionId([0xA1; 16]),
        subject: Some("alice".into()),
        auth_level: 2,
        authenticated_at: Some(CREATED),
        data: SessionData::from_json(r#"{"cart":[1,2,3],"theme":"dark"}"#).expect("data"),
        created_at: CREATED,
        last_seen_at: renewed_at,
        token_issued_at: renewed_at,
        idle_timeout_ms: 30 * 60 * 1000,
        absolute_expires_at: CREATED.plus(Duration::from_secs(12 * 3600)),
        version: 2,
        epoch: 1,
        client: Some(Box::new(client.clone())),
        binding: Some(Box::new(client.binding())),
    };
    match store
        .load(&TokenHash([0x11; 32]), early())
        .await
        .expect("load")
    {
        Some(StoredEntry::Live(found)) => assert_eq!(*found, alice),
        other => panic!("expected alice's session, got {other:?}"),
    }
    match store
        .load(&TokenHash([0x33; 32]), early())
        .await
        .expect("load")
    {
        Some(StoredEntry::Tombstone(found)) => assert_eq!(
            found,
            Tombstone {
                session_id: alice.id,
                successor: TokenHash([0x11; 32]),
                grace_until: Some(renewed_at.plus(Duration::from_secs(10))),
                forget_at: alice.absolute_expires_at,
            }
        ),
        other => panic!("expected the tombstone, got {other:?}"),
    }
    let (key, anonymous) = store
        .load_by_id(&SessionId([0xB2; 16]), early())
        .await
        .expect("by id")
        .expect("the anonymous session");
    assert_eq!(key, TokenHash([0x22; 32]));
    assert_eq!(anonymous.subject, None);
    assert_eq!(anonymous.data, SessionData::empty());
    let listed = store.list_by_subject("alice", early()).await.expect("list");
    assert_eq!(listed, vec![Arc::new(alice)]);
    assert_eq!(store.global_epoch().await.expect("epoch"), 1);
    assert_eq!(store.subject_epoch("alice").await.expect("epoch"), 2);

    // It is writable as it is.
    let mut next = (*listed[0]).clone();
    next.version = 3;
    store
        .update(&key_of_alice(), &next, 2, early())
        .await
        .expect("update");
    store.close().expect("close");
}

fn key_of_alice() -> TokenHash {
    TokenHash([0x11; 32])
}

/// Writes a database file in the format 1 layout by hand.
fn write_by_hand(
    dir: &Path,
    format_version: Option<u64>,
    fill: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>,
) {
    let db = redb::Database::create(dir.join(DATABASE_FILE)).expect("create");
    let txn = db.begin_write().expect("write");
    {
        let mut meta = txn.open_table(META).expect("meta");
        if let Some(version) = format_version {
            meta.insert("format_version", version).expect("version");
        }
        txn.open_table(ENTRIES).expect("entries");
        txn.open_table(IDS).expect("ids");
        txn.open_multimap_table(SUBJECTS).expect("subjects");
        txn.open_table(SUBJECT_EPOCHS).expect("subject epochs");
    }
    fill(&txn).expect("fill");
    txn.commit().expect("commit");
}

// A version 1 record as the first release wrote it: no client, no binding.
const ALICE_V1: &[u8] = br#"{"v":1,"session":{"id":"BwcHBwcHBwcHBwcHBwcHBw","subject":"alice","auth_level":1,"authenticated_at":1700000000000,"data":{"n":1},"created_at":1700000000000,"last_seen_at":1700000000000,"token_issued_at":1700000000000,"idle_timeout_ms":1800000,"absolute_expires_at":1700043200000,"version":4,"epoch":0}}"#;
const TOMBSTONE_V1: &[u8] = br#"{"v":1,"tombstone":{"session_id":"BwcHBwcHBwcHBwcHBwcHBw","successor":"0707070707070707070707070707070707070707070707070707070707070707","grace_until":null,"forget_at":1700043200000}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_written_by_hand_in_the_format_1_layout_load() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_by_hand(dir.path(), Some(1), |txn| {
        txn.open_table(META)?.insert("global_epoch", 4)?;
        let mut entries = txn.open_table(ENTRIES)?;
        entries.insert(&[7; 32], ALICE_V1)?;
        entries.insert(&[8; 32], TOMBSTONE_V1)?;
        txn.open_table(IDS)?.insert(&[7; 16], &[7; 32])?;
        txn.open_multimap_table(SUBJECTS)?
            .insert("alice", &[7; 16])?;
        txn.open_table(SUBJECT_EPOCHS)?.insert("alice", 9)?;
        Ok(())
    });
    let store = EmbeddedStore::open(dir.path()).expect("open");
    let (key, session) = store
        .load_by_id(&SessionId([7; 16]), early())
        .await
        .expect("by id")
        .expect("alice");
    assert_eq!(key, TokenHash([7; 32]));
    assert_eq!(session.version, 4);
    assert_eq!(session.data.get::<u64>("n"), Some(1));
    assert_eq!(session.client, None);
    assert!(matches!(
        store.load(&TokenHash([8; 32]), early()).await.expect("load"),
        Some(StoredEntry::Tombstone(t)) if t.successor == TokenHash([7; 32])
    ));
    assert_eq!(store.global_epoch().await.expect("epoch"), 4);
    assert_eq!(store.subject_epoch("alice").await.expect("epoch"), 9);
    assert_eq!(
        store
            .list_by_subject("alice", early())
            .await
            .expect("list")
            .len(),
        1
    );
    store.close().expect("close");
}

#[test]
fn a_newer_store_format_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_by_hand(dir.path(), Some(2), |_| Ok(()));
    match EmbeddedStore::open(dir.path()) {
        Err(
            error @ EmbeddedError::NewerFormat {
                found: 2,
                supported: 1,
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
    write_by_hand(dir.path(), Some(1), |txn| {
        txn.open_table(ENTRIES)?
            .insert(&[7; 32], br#"{"v":2,"session":{}}"#.as_slice())?;
        Ok(())
    });
    match EmbeddedStore::open(dir.path()) {
        Err(error @ EmbeddedError::Corrupt { .. }) => {
            assert!(error.to_string().contains("upgrade Tessera"), "{error}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn records_without_a_format_version_are_not_taken_for_a_session_database() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_by_hand(dir.path(), None, |txn| {
        txn.open_table(ENTRIES)?.insert(&[7; 32], ALICE_V1)?;
        Ok(())
    });
    assert!(matches!(
        EmbeddedStore::open(dir.path()),
        Err(EmbeddedError::Corrupt { .. })
    ));
}

#[test]
fn indexes_that_contradict_the_records_are_reported_at_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A live session that the id index does not know.
    write_by_hand(dir.path(), Some(1), |txn| {
        txn.open_table(ENTRIES)?.insert(&[7; 32], ALICE_V1)?;
        Ok(())
    });
    match EmbeddedStore::open(dir.path()) {
        Err(error @ EmbeddedError::Corrupt { .. }) => {
            assert!(error.to_string().contains("id index"), "{error}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}
