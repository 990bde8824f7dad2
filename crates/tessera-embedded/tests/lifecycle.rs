//! Opening, closing, reopening, locking and sweeping the embedded store.

use std::sync::Arc;
use std::time::Duration;

use tessera_core::{
    Clock, DataChange, Login, ManualClock, NewSession, Session, SessionData, SessionId,
    SessionManager, SessionStore, SessionToken, StoredEntry, Timestamp, TokenHash, Tombstone,
};
use tessera_embedded::{DATABASE_FILE, EmbeddedError, EmbeddedStore};

fn key() -> TokenHash {
    SessionToken::generate().expect("token").hash()
}

fn session(now: Timestamp, subject: Option<&str>, idle: Duration) -> Session {
    Session {
        id: SessionId::generate().expect("id"),
        subject: subject.map(str::to_owned),
        auth_level: 0,
        authenticated_at: None,
        data: SessionData::empty(),
        created_at: now,
        last_seen_at: now,
        token_issued_at: now,
        idle_timeout_ms: u64::try_from(idle.as_millis()).expect("idle"),
        absolute_expires_at: now.plus(Duration::from_secs(12 * 3600)),
        version: 1,
        epoch: 0,
        client: None,
        binding: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_after_clean_close_keeps_everything() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::starting_now();
    let store = EmbeddedStore::open(dir.path()).expect("open");
    let manager = SessionManager::builder(store.clone())
        .clock(clock.clone())
        .build()
        .expect("manager");

    let anonymous = manager.create(NewSession::default()).await.expect("create");
    let pre_login = anonymous.token.expose().to_owned();
    let signed_in = manager
        .login(Some(&pre_login), Login::new("alice"))
        .await
        .expect("login");
    let token = signed_in.token.expose().to_owned();
    let data = SessionData::from_json(r#"{"cart":[1,2]}"#).expect("data");
    manager
        .update(&token, DataChange::Replace(data.clone()), None, None)
        .await
        .expect("update");
    let other = manager
        .login(None, Login::new("alice"))
        .await
        .expect("second session");
    store.bump_global_epoch().await.expect("epoch");
    store
        .bump_subject_epoch("alice")
        .await
        .expect("subject epoch");
    let epoch = store.global_epoch().await.expect("epoch");
    drop(manager);
    store.close().expect("close");

    let store = EmbeddedStore::open(dir.path()).expect("reopen");
    assert_eq!(store.global_epoch().await.expect("epoch"), epoch);
    assert_eq!(store.subject_epoch("alice").await.expect("epoch"), 1);
    let now = clock.now();
    let listed = store.list_by_subject("alice", now).await.expect("list");
    assert_eq!(listed.len(), 2, "both of alice's sessions survive");
    // The pre-login token left a tombstone behind.
    let pre_login_key = SessionToken::parse(&pre_login).expect("token").hash();
    assert!(matches!(
        store.load(&pre_login_key, now).await.expect("load"),
        Some(StoredEntry::Tombstone(_))
    ));
    // Sessions are revoked by the epoch bump, but their records are intact.
    let key = SessionToken::parse(&token).expect("token").hash();
    match store.load(&key, now).await.expect("load") {
        Some(StoredEntry::Live(session)) => {
            assert_eq!(session.data, data);
            assert_eq!(session.subject.as_deref(), Some("alice"));
            assert_eq!(session.id, signed_in.session.id);
        }
        other => panic!("expected the live session, got {other:?}"),
    }
    assert!(
        store
            .load_by_id(&other.session.id, now)
            .await
            .expect("by id")
            .is_some()
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_store_refuses_every_clone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(dir.path()).expect("open");
    let clone = store.clone();
    store.close().expect("close");
    assert!(clone.is_closed());
    let now = ManualClock::starting_now().now();
    assert!(clone.load(&key(), now).await.is_err());
    assert!(
        clone
            .create(&key(), &session(now, None, Duration::from_secs(60)))
            .await
            .is_err()
    );
    assert!(clone.ping().await.is_err());
}

/// Waits (in real time, bounded) until the background sweeper has run.
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
async fn the_sweeper_removes_expired_records_and_keeps_indexes_clean() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::starting_now();
    let start = clock.now();
    let store = EmbeddedStore::open(dir.path()).expect("open");

    // 300 short sessions of "eve" (more than one sweep transaction), one long
    // session of "eve", and a rotated long session whose tombstone is short.
    let mut short = Vec::new();
    let mut creates = Vec::new();
    for _ in 0..300 {
        let (k, s) = (key(), session(start, Some("eve"), Duration::from_secs(1)));
        short.push((k, s.clone()));
        let store = store.clone();
        creates.push(tokio::spawn(async move { store.create(&k, &s).await }));
    }
    for create in creates {
        create.await.expect("task").expect("create");
    }
    let (long_key, long) = (
        key(),
        session(start, Some("eve"), Duration::from_secs(3600)),
    );
    store.create(&long_key, &long).await.expect("create");
    let (old_key, new_key, rotated) = (
        key(),
        key(),
        session(start, None, Duration::from_secs(3600)),
    );
    store.create(&old_key, &rotated).await.expect("create");
    let tombstone = Tombstone {
        session_id: rotated.id,
        successor: new_key,
        grace_until: None,
        forget_at: start.plus(Duration::from_secs(30)),
    };
    store
        .rotate(&old_key, &new_key, &rotated, 1, &tombstone, start)
        .await
        .expect("rotate");
    assert_eq!(store.len(), 303);

    let sweeper =
        store.spawn_sweeper_with_clock(Duration::from_millis(10), Arc::new(clock.clone()));
    clock.advance(short[0].1.forget_at().since(start) + Duration::from_secs(1));
    until(|| store.len() == 2).await;
    sweeper.abort();

    // Physically gone: even reads at the start time find nothing.
    for (k, s) in &short {
        assert!(store.load(k, start).await.expect("load").is_none());
        assert!(
            store
                .load_by_id(&s.id, start)
                .await
                .expect("by id")
                .is_none()
        );
    }
    assert!(
        store.load(&old_key, start).await.expect("load").is_none(),
        "tombstone swept"
    );
    let eve = store.list_by_subject("eve", start).await.expect("list");
    assert_eq!(eve.len(), 1, "only the long session is indexed");
    assert_eq!(eve[0].id, long.id);
    assert!(
        store
            .load_by_id(&rotated.id, start)
            .await
            .expect("by id")
            .is_some()
    );
    store.close().expect("close");

    // Reopening checks that the file's indexes agree with its records.
    let store = EmbeddedStore::open(dir.path()).expect("reopen");
    assert_eq!(store.len(), 2);
    assert_eq!(
        store
            .list_by_subject("eve", start)
            .await
            .expect("list")
            .len(),
        1
    );
    store.close().expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweeping_spares_what_a_touch_revived() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::starting_now();
    let start = clock.now();
    let store = EmbeddedStore::open(dir.path()).expect("open");
    let (k, s) = (key(), session(start, Some("fay"), Duration::from_secs(60)));
    store.create(&k, &s).await.expect("create");
    let later = start.plus(Duration::from_secs(50));
    store.touch(&k, later, later).await.expect("touch");
    // At the first deadline the touched session is still kept.
    let removed = store.sweep_expired(s.forget_at()).await.expect("sweep");
    assert_eq!(removed, 0);
    assert_eq!(
        store
            .list_by_subject("fay", s.forget_at())
            .await
            .expect("list")
            .len(),
        1
    );
    let removed = store
        .sweep_expired(s.forget_at().plus(Duration::from_secs(50)))
        .await
        .expect("sweep");
    assert_eq!(removed, 1);
    assert_eq!(
        store
            .list_by_subject("fay", start)
            .await
            .expect("list")
            .len(),
        0
    );
    store.close().expect("close");
}
