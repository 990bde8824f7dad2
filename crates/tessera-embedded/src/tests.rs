//! The mirror's promise, checked from inside: after any mix of concurrent
//! writes, the mirror equals a fresh load of the database file.

use std::time::Duration;

use tessera_core::{
    Session, SessionData, SessionId, SessionStore, SessionToken, Timestamp, TokenHash, Tombstone,
};

use crate::EmbeddedStore;
use crate::mirror::Mirror;

fn key() -> TokenHash {
    SessionToken::generate().expect("random token").hash()
}

fn session(now: Timestamp, subject: Option<&str>, idle_ms: u64) -> Session {
    Session {
        id: SessionId::generate().expect("random id"),
        subject: subject.map(str::to_owned),
        auth_level: 0,
        authenticated_at: None,
        data: SessionData::empty(),
        created_at: now,
        last_seen_at: now,
        token_issued_at: now,
        idle_timeout_ms: idle_ms,
        absolute_expires_at: now.plus(Duration::from_secs(3600)),
        version: 1,
        epoch: 0,
        client: None,
        binding: None,
    }
}

fn snapshot(store: &EmbeddedStore) -> Mirror {
    store.shared.mirror.read().expect("mirror").clone()
}

/// One client doing random operations on its own sessions and on shared subjects.
async fn random_client(store: EmbeddedStore, seed: u64, start: Timestamp) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let subjects = ["ann", "bob", "cid"];
    let mut mine: Vec<(TokenHash, Session)> = Vec::new();
    for step in 0..60u64 {
        let now = start.plus(Duration::from_millis(step * 500));
        let op = if mine.is_empty() { 0 } else { rng.u8(0..9) };
        let slot = rng.usize(0..mine.len().max(1));
        match op {
            0 | 1 => {
                let subject = subjects.get(rng.usize(0..4)).copied();
                let idle = if rng.bool() { 1_000 } else { 600_000 };
                let fresh = session(now, subject, idle);
                let k = key();
                store.create(&k, &fresh).await.expect("create");
                mine.push((k, fresh));
            }
            2 => {
                let (k, s) = &mut mine[slot];
                let mut next = s.clone();
                next.version += 1;
                next.subject = subjects.get(rng.usize(0..4)).map(|s| (*s).to_owned());
                next.data = SessionData::from_json(&format!(r#"{{"step":{step}}}"#)).expect("data");
                if store
                    .update(k, &next, s.version, now)
                    .await
                    .expect("update")
                    == tessera_core::WriteOutcome::Written
                {
                    *s = next;
                }
            }
            3 => {
                let (k, _) = &mine[slot];
                store.touch(k, now, now).await.expect("touch");
            }
            4 => {
                let (k, s) = mine[slot].clone();
                let new = key();
                let tombstone = Tombstone {
                    session_id: s.id,
                    successor: new,
                    grace_until: Some(now.plus(Duration::from_secs(10))),
                    forget_at: now.plus(Duration::from_secs(rng.u64(1..20))),
                };
                if store
                    .rotate(&k, &new, &s, s.version, &tombstone, now)
                    .await
                    .expect("rotate")
                    == tessera_core::WriteOutcome::Written
                {
                    mine[slot] = (new, s);
                }
            }
            5 => {
                let (_, s) = mine.swap_remove(slot);
                store.delete(&s.id).await.expect("delete");
            }
            6 => {
                let subject = subjects[rng.usize(0..3)];
                store
                    .delete_by_subject(subject, None, now)
                    .await
                    .expect("delete by subject");
            }
            7 => {
                if rng.bool() {
                    store.bump_global_epoch().await.expect("epoch");
                } else {
                    store
                        .bump_subject_epoch(subjects[rng.usize(0..3)])
                        .await
                        .expect("subject epoch");
                }
            }
            _ => {
                store.sweep_expired(now).await.expect("sweep");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_equals_the_database_after_concurrent_writes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(dir.path()).expect("open");
    let start = Timestamp(1_800_000_000_000);
    let clients: Vec<_> = (0..8)
        .map(|seed| tokio::spawn(random_client(store.clone(), seed, start)))
        .collect();
    for client in clients {
        client.await.expect("client");
    }
    let before = snapshot(&store);
    before.check_indexes().expect("indexes agree in memory");
    assert!(!before.entries.is_empty(), "the run stored something");
    store.close().expect("close");

    let reopened = EmbeddedStore::open(dir.path()).expect("reopen");
    assert_eq!(
        snapshot(&reopened),
        before,
        "mirror equals a fresh load of the file"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_leaves_no_trace_and_spares_its_group() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(dir.path()).expect("open");
    let now = Timestamp(1_800_000_000_000);
    let (a, b) = (key(), key());
    let first = session(now, Some("ann"), 600_000);
    store.create(&a, &first).await.expect("create");
    let second = session(now, Some("ann"), 600_000);
    store.create(&b, &second).await.expect("create");
    // Rotating onto a key in use is refused without writing anything.
    let tombstone = Tombstone {
        session_id: first.id,
        successor: b,
        grace_until: None,
        forget_at: now.plus(Duration::from_secs(60)),
    };
    let refused = store.rotate(&a, &b, &first, 1, &tombstone, now).await;
    assert!(refused.is_err(), "rotate onto a used key is an error");
    let after = snapshot(&store);
    after.check_indexes().expect("indexes");
    assert_eq!(after.entries.len(), 2);
    assert!(store.load(&a, now).await.expect("load").is_some());
    store.close().expect("close");
    let reopened = EmbeddedStore::open(dir.path()).expect("reopen");
    assert_eq!(snapshot(&reopened), after);
}
