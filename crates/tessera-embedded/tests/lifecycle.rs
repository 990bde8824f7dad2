//! Opening, closing, reopening, locking, file permissions and sweeping of
//! the embedded store.

mod common;

use std::sync::Arc;
use std::time::Duration;

use tessera_core::store::{
    AttachmentKind, Attachments, Durability, Epochs, Journal, JournalEntry, Maintenance, Records,
    SubjectIndex, WriteOutcome, spawn_sweeper_with_clock,
};
use tessera_core::{
    Clock, DataChange, Login, ManualClock, NewSession, SessionData, SessionId, SessionManager,
    SessionRecord, Timestamp, forget_at,
};
use tessera_embedded::{DATABASE_FILE, EmbeddedError, EmbeddedStore};

use common::{record, rotated, token_hash};

fn token(session: &tessera_core::ActiveSession) -> String {
    session
        .issued()
        .expect("a credential was issued")
        .expose()
        .to_owned()
}

async fn subject_ids(store: &EmbeddedStore, subject: &str, now: Timestamp) -> Vec<SessionId> {
    let mut ids = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list_subject(subject, cursor.as_deref(), 100, now)
            .await
            .expect("list");
        ids.extend(page.items.iter().map(|r| r.id));
        match page.next {
            Some(next) => cursor = Some(next),
            None => return ids,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_after_clean_close_keeps_everything() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::starting_now();
    let store = EmbeddedStore::open(dir.path()).expect("open");
    // A new file's global epoch starts at the current time (above any a
    // lost file in its place handed out), and survives restarts.
    let start = store.global_epoch().await.expect("epoch");
    let opened_at = u64::try_from(clock.now().as_millis()).expect("after 1970");
    assert!(
        start + 60_000 > opened_at && start <= opened_at + 60_000,
        "{start} is not about {opened_at}"
    );
    assert_eq!(store.durability(), Durability::Persistent);
    let epoch = store.bump_global_epoch().await.expect("epoch");
    assert_eq!(epoch, start + 1);
    let manager = SessionManager::builder(store.clone())
        .clock(clock.clone())
        .build()
        .expect("manager");

    let anonymous = manager.create(NewSession::default()).await.expect("create");
    let pre_login = token(&anonymous);
    let signed_in = manager
        .login(Some(&anonymous), Login::new("alice"))
        .await
        .expect("login");
    let data = SessionData::from_json(r#"{"cart":[1,2]}"#).expect("data");
    let updated = manager
        .update(&signed_in, DataChange::Replace(data.clone()), None, None)
        .await
        .expect("update");
    let signed_in_token = token(&signed_in);
    let other = manager
        .login(None, Login::new("alice"))
        .await
        .expect("second session");
    store
        .bump_subject_epoch("alice")
        .await
        .expect("subject epoch");
    let kind = AttachmentKind::DeviceBinding;
    let later = clock.now().plus(Duration::from_secs(3600));
    store
        .store_attachment(&other.record().id, kind, b"bound", None, later, clock.now())
        .await
        .expect("attach");
    let entry = JournalEntry {
        at: clock.now(),
        nonce: [7; 8],
        value: b"revoked alice".to_vec(),
    };
    store.append_journal(&entry, later).await.expect("journal");
    drop(manager);
    store.close().expect("close");

    let store = EmbeddedStore::open(dir.path()).expect("reopen");
    assert_eq!(store.global_epoch().await.expect("epoch"), epoch);
    assert_eq!(store.subject_epoch("alice").await.expect("epoch"), 1);
    let now = clock.now();
    let mut listed = subject_ids(&store, "alice", now).await;
    listed.sort();
    let mut expected = vec![signed_in.record().id, other.record().id];
    expected.sort();
    assert_eq!(listed, expected, "both of alice's sessions survive");
    let stored = store
        .load(&signed_in.record().id, now)
        .await
        .expect("load")
        .expect("the signed-in session");
    assert_eq!(stored, **updated.record(), "the record as last written");
    assert_eq!(stored.data, data);
    let attached = store
        .load_attachment(&other.record().id, kind, now)
        .await
        .expect("load attachment")
        .expect("the attachment survives");
    assert_eq!(
        (attached.generation, &attached.value[..]),
        (1, &b"bound"[..])
    );
    let journal = store.journal_page(None, 10, now).await.expect("journal");
    assert_eq!(journal.items, vec![entry], "the journal survives");

    let manager = SessionManager::builder(store.clone())
        .clock(clock.clone())
        .build()
        .expect("manager");
    let valid = manager
        .validate(&signed_in_token, None)
        .await
        .expect("the token issued at login still validates");
    assert_eq!(valid.record().subject.as_deref(), Some("alice"));
    assert!(
        manager.validate(&pre_login, None).await.is_err(),
        "the token from before the login stays dead"
    );
    drop(manager);
    store.close().expect("close again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_database_is_locked_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(dir.path()).expect("open");
    match EmbeddedStore::open(dir.path()) {
        Err(EmbeddedError::Locked { path }) => {
            assert_eq!(path, dir.path().join(DATABASE_FILE));
            let message = EmbeddedError::Locked { path }.to_string();
            assert!(message.contains("locked"), "{message}");
            assert!(message.contains("another process"), "{message}");
        }
        other => panic!("expected a lock error, got {other:?}"),
    }
    store.close().expect("close");
    let again = EmbeddedStore::open(dir.path()).expect("open after close");
    drop(again);
    // Dropping the last clone closes the database too.
    EmbeddedStore::open(dir.path())
        .expect("open after drop")
        .close()
        .expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_directory_is_shared_with_other_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("nested").join("data");
    let store = EmbeddedStore::open(&data).expect("open creates the directory");
    std::fs::write(data.join("api-keys"), "kept").expect("write");
    store.close().expect("close");
    let store = EmbeddedStore::open(&data).expect("reopen");
    store.close().expect("close");
    assert_eq!(
        std::fs::read_to_string(data.join("api-keys")).expect("read"),
        "kept"
    );
    let mut names: Vec<_> = std::fs::read_dir(&data)
        .expect("list")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
        .collect();
    names.sort();
    assert_eq!(names, vec!["api-keys".to_owned(), DATABASE_FILE.to_owned()]);
}

#[cfg(unix)]
#[test]
fn the_database_file_is_created_readable_by_its_owner_only() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Whatever the process's umask allows, the file gets no group or other bits.
    let mode = mode_after_opening(dir.path());
    assert_eq!(mode, 0o600, "mode {mode:o}");
    // Reopening (and writing) keeps it so.
    let mode = mode_after_opening(dir.path());
    assert_eq!(mode, 0o600, "mode after reopening {mode:o}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_store_refuses_every_clone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(dir.path()).expect("open");
    let now = ManualClock::starting_now().now();
    let kept = record(now, None, Duration::from_secs(60));
    store.create(&kept, forget_at(&kept)).await.expect("create");
    let clone = store.clone();
    store.close().expect("close");
    assert!(clone.is_closed());
    assert!(clone.load(&kept.id, now).await.is_err(), "reads fail too");
    let fresh = record(now, None, Duration::from_secs(60));
    assert!(clone.create(&fresh, forget_at(&fresh)).await.is_err());
    assert!(clone.ping().await.is_err());
}

/// Waits (in real time, bounded) until `done`.
async fn until(mut done: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the sweeper did not run within 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_core_sweeper_removes_expired_records_and_keeps_indexes_clean() {
    let (dir, clock, store) = fresh();
    let start = clock.now();

    // 300 short sessions of "eve" (more than one sweep transaction), one
    // long session of "eve", and a long anonymous one that was rotated.
    let mut short: Vec<SessionRecord> = Vec::new();
    let mut creates = Vec::new();
    for _ in 0..300 {
        let r = record(start, Some("eve"), Duration::from_secs(1));
        short.push(r.clone());
        let store = store.clone();
        creates.push(tokio::spawn(async move {
            store.create(&r, forget_at(&r)).await
        }));
    }
    for create in creates {
        create.await.expect("task").expect("create");
    }
    let long = record(start, Some("eve"), Duration::from_secs(3600));
    store.create(&long, forget_at(&long)).await.expect("create");
    let anonymous = record(start, None, Duration::from_secs(3600));
    store
        .create(&anonymous, forget_at(&anonymous))
        .await
        .expect("create");
    let moved = rotated(&anonymous, token_hash());
    let outcome = store
        .update(&moved, anonymous.revision(), forget_at(&moved), start)
        .await;
    assert_eq!(outcome.expect("rotate"), WriteOutcome::Written);
    assert_eq!(store.len(), 302);

    let sweeper = spawn_sweeper_with_clock(
        store.clone(),
        Duration::from_millis(10),
        Arc::new(clock.clone()),
    );
    clock.advance(forget_at(&short[0]).since(start) + Duration::from_secs(1));
    until(|| store.len() == 2).await;
    sweeper.stop();

    // Physically gone: even reads at the start time find nothing.
    for r in &short {
        assert!(store.load(&r.id, start).await.expect("load").is_none());
    }
    assert_eq!(subject_ids(&store, "eve", start).await, vec![long.id]);
    assert_eq!(
        store.load(&anonymous.id, start).await.expect("load"),
        Some(moved),
        "the rotated record is one record, kept"
    );
    store.close().expect("close");

    // Reopening builds the index from the records: the same listing.
    let store = EmbeddedStore::open(dir.path()).expect("reopen");
    assert_eq!(store.len(), 2);
    assert_eq!(subject_ids(&store, "eve", start).await, vec![long.id]);
    store.close().expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweeping_spares_what_a_touch_moved_on() {
    let (dir, clock, store) = fresh();
    let start = clock.now();
    let r = record(start, Some("fay"), Duration::from_secs(60));
    let first = forget_at(&r);
    store.create(&r, first).await.expect("create");
    let later = start.plus(Duration::from_secs(50));
    let mut touched = r.clone();
    touched.last_seen_at = later;
    let second = forget_at(&touched);
    assert_eq!(
        store
            .touch(&r.id, later, second, later)
            .await
            .expect("touch"),
        WriteOutcome::Written
    );
    // At the first deadline the touched session is still kept.
    assert_eq!(store.sweep_expired(first).await.expect("sweep"), 0);
    assert_eq!(subject_ids(&store, "fay", first).await, vec![r.id]);
    assert_eq!(store.sweep_expired(second).await.expect("sweep"), 1);
    assert!(subject_ids(&store, "fay", start).await.is_empty());
    store.close().expect("close");
    let store = EmbeddedStore::open(dir.path()).expect("reopen");
    assert!(store.is_empty());
    store.close().expect("close");
}

/// Opens the store in `dir` and closes it again; the permission bits of
/// its database file then.
#[cfg(unix)]
fn mode_after_opening(dir: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;

    EmbeddedStore::open(dir)
        .expect("open")
        .close()
        .expect("close");
    let metadata = std::fs::metadata(dir.join(DATABASE_FILE)).expect("metadata");
    metadata.permissions().mode() & 0o777
}

/// A store in a new temporary directory, and a manual clock.
fn fresh() -> (tempfile::TempDir, ManualClock, EmbeddedStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(dir.path()).expect("open");
    (dir, ManualClock::starting_now(), store)
}
