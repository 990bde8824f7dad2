//! A write that keeps losing its compare-and-swap ends in
//! [`SessionError::WriteContention`], and a [`SessionError::VersionConflict`]
//! always names a version that moved: `expected != current_version`.
//!
//! Regression: a write that ran out of retries used to be answered with a
//! version conflict (HTTP 409) whose `expected` equalled its
//! `current_version`, which told the client to re-read a version it
//! already had. That happened when the token changed under a write (a
//! renewal or rotation elsewhere) while the version stayed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::json;
use tessera_core::store::{Intercept, Intercepted, Operation, Records, StoreError};
use tessera_core::testkit::{Harness, Outage};
use tessera_core::{
    Clock, DataChange, ManualClock, MemoryStore, NewSession, SessionData, SessionError, SessionId,
    forget_at,
};

/// Another writer that wins every race for one session: right before
/// each of the manager's updates reaches the store, it changes the
/// session's data itself (a new version).
struct Rival {
    store: MemoryStore,
    clock: ManualClock,
    target: Mutex<Option<SessionId>>,
    wins: AtomicU64,
}

impl Rival {
    async fn win(&self, id: SessionId) -> Result<(), StoreError> {
        let now = self.clock.now();
        let Some(mut record) = self.store.load(&id, now).await? else {
            return Ok(());
        };
        let expected = record.revision();
        let wins = self.wins.fetch_add(1, Ordering::SeqCst) + 1;
        record.version += 1;
        record.data = SessionData::from_value(&json!({"rival": wins})).expect("data");
        self.store
            .update(&record, expected, forget_at(&record), now)
            .await?;
        Ok(())
    }
}

/// The hook that lets the rival in before each update.
struct RivalHook(Arc<Rival>);

impl Intercept for RivalHook {
    async fn before(&self, op: Operation) -> Result<(), StoreError> {
        let target = *self.0.target.lock().expect("lock");
        if let (Operation::Update, Some(id)) = (op, target) {
            self.0.win(id).await?;
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_write_that_loses_every_race_ends_in_write_contention() {
    let store = MemoryStore::new();
    let clock = ManualClock::starting_now();
    let rival = Arc::new(Rival {
        store: store.clone(),
        clock: clock.clone(),
        target: Mutex::new(None),
        wins: AtomicU64::new(0),
    });
    let h = Harness {
        clock,
        ..Harness::new(Arc::new(Intercepted::new(store, RivalHook(rival.clone()))))
    };
    let manager = h.manager();
    let session = manager
        .create(NewSession::anonymous())
        .await
        .expect("create");
    let version = session.record().version;
    *rival.target.lock().expect("lock") = Some(session.record().id);

    // Without an expected version every attempt is retried on the fresh
    // record, until the retries run out.
    let mut runs = 0u64;
    let outcome = manager
        .modify(&session, None, None, |data| {
            runs += 1;
            data.insert("mine".into(), json!(runs));
            Ok(())
        })
        .await;
    let wins = rival.wins.load(Ordering::SeqCst);
    match outcome {
        Err(SessionError::WriteContention {
            attempts,
            last_version,
        }) => {
            assert_eq!(
                u64::try_from(attempts).expect("small"),
                runs,
                "one try per run"
            );
            assert_eq!(wins, runs, "the rival won each");
            assert_eq!(last_version, version + wins, "the version last seen");
        }
        other => panic!("expected write contention, got {other:?}"),
    }
    // With an expected version, the first lost race is the caller's
    // conflict, and it names the version that moved.
    let current = manager
        .resolve(session.issued().expect("token").expose(), None)
        .await
        .expect("resolve");
    let expected = current.record().version;
    match manager
        .update(
            &current,
            DataChange::MergePatch(json!({"x": 1})),
            Some(expected),
            None,
        )
        .await
    {
        Err(SessionError::VersionConflict {
            expected: e,
            current_version,
        }) => {
            assert_eq!(e, expected);
            assert_eq!(current_version, expected + 1);
        }
        other => panic!("expected a version conflict, got {other:?}"),
    }
    // The rival stops: the same write goes through.
    *rival.target.lock().expect("lock") = None;
    let current = manager
        .resolve(session.issued().expect("token").expose(), None)
        .await
        .expect("resolve");
    let change = DataChange::MergePatch(json!({"x": 1}));
    manager
        .update(&current, change, None, None)
        .await
        .expect("written");
}

/// The token most recently issued, shared by the requests of one client.
#[derive(Clone)]
struct Latest(Arc<Mutex<String>>);

impl Latest {
    fn get(&self) -> String {
        self.0.lock().expect("lock").clone()
    }

    fn set(&self, token: &str) {
        *self.0.lock().expect("lock") = token.to_owned();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_versioned_writers_never_see_an_unmoved_conflict() {
    const WRITERS: u64 = 8;
    const WRITES: u64 = 50;
    let h = Harness::new(Arc::new(Intercepted::new(
        MemoryStore::new(),
        Outage::yielding(),
    )));
    let manager = h.manager();
    let counter = SessionData::from_value(&json!({"counter": 0})).expect("data");
    let created = manager
        .create(NewSession::anonymous().data(counter))
        .await
        .expect("create");
    let latest = Latest(Arc::new(Mutex::new(
        created.issued().expect("token").expose().to_owned(),
    )));
    let done = Arc::new(AtomicBool::new(false));
    let conflicts = Arc::new(AtomicU64::new(0));
    let rotations = Arc::new(AtomicU64::new(0));

    // Rotations change the token and keep the version: the writes racing
    // them lose their compare-and-swap without any version moving.
    let mut rotators = Vec::new();
    for _ in 0..2 {
        let (manager, latest, done, rotations) = (
            manager.clone(),
            latest.clone(),
            done.clone(),
            rotations.clone(),
        );
        rotators.push(tokio::spawn(async move {
            while !done.load(Ordering::SeqCst) {
                let Ok(current) = manager.resolve(&latest.get(), None).await else {
                    continue;
                };
                match manager.rotate(&current).await {
                    Ok(rotated) => {
                        latest.set(rotated.issued().expect("token").expose());
                        rotations.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(SessionError::Invalid { .. } | SessionError::WriteContention { .. }) => {}
                    Err(other) => panic!("rotate: {other}"),
                }
                tokio::task::yield_now().await;
            }
        }));
    }

    let mut writers = Vec::new();
    for _ in 0..WRITERS {
        let (manager, latest, conflicts) = (manager.clone(), latest.clone(), conflicts.clone());
        writers.push(tokio::spawn(async move {
            let mut written = 0;
            while written < WRITES {
                // A token two rotations old is unknown: take the newest.
                let Ok(current) = manager.resolve(&latest.get(), None).await else {
                    continue;
                };
                let version = current.record().version;
                let counter: u64 = current.record().data.get("counter").unwrap_or(0);
                let next = SessionData::from_value(&json!({"counter": counter + 1})).expect("data");
                match manager
                    .update(&current, DataChange::Replace(next), Some(version), None)
                    .await
                {
                    Ok(_) => written += 1,
                    Err(SessionError::VersionConflict {
                        expected,
                        current_version,
                    }) => {
                        assert_eq!(expected, version, "the version the caller expected");
                        assert_ne!(
                            expected, current_version,
                            "a conflict always names a version that moved"
                        );
                        conflicts.fetch_add(1, Ordering::SeqCst);
                    }
                    // The held token was rotated twice in between, or every
                    // retry lost: re-read and try again.
                    Err(SessionError::Invalid { .. } | SessionError::WriteContention { .. }) => {}
                    Err(other) => panic!("update: {other}"),
                }
            }
        }));
    }
    for writer in writers {
        writer.await.expect("writer");
    }
    done.store(true, Ordering::SeqCst);
    for rotator in rotators {
        rotator.await.expect("rotator");
    }
    let last = manager
        .resolve(&latest.get(), None)
        .await
        .expect("the session lives");
    assert_eq!(
        last.record().data.get::<u64>("counter"),
        Some(WRITERS * WRITES),
        "no update lost"
    );
    assert_eq!(last.record().version, 1 + WRITERS * WRITES);
    assert!(conflicts.load(Ordering::SeqCst) > 0, "the writers raced");
    assert!(
        rotations.load(Ordering::SeqCst) > 0,
        "the token changed under them"
    );
    println!(
        "{} conflicts, {} rotations",
        conflicts.load(Ordering::SeqCst),
        rotations.load(Ordering::SeqCst)
    );
}
