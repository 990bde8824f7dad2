//! Concurrent writers through the store directly: compare-and-swap loses no
//! update, with one pool or with several (as several nodes would).

mod common;

use std::time::Duration;

use common::Schemas;
use tessera_core::{
    Session, SessionData, SessionId, SessionStore, SessionToken, StoredEntry, Timestamp, Tombstone,
    WriteOutcome,
};
use tessera_postgres::PostgresStore;

fn session(now: Timestamp) -> Session {
    Session {
        id: SessionId::generate().expect("random id"),
        subject: Some("writer".into()),
        auth_level: 1,
        authenticated_at: Some(now),
        data: SessionData::from_json(r#"{"counter":0}"#).expect("data"),
        created_at: now,
        last_seen_at: now,
        token_issued_at: now,
        idle_timeout_ms: 30 * 60 * 1000,
        absolute_expires_at: now.plus(Duration::from_secs(3600)),
        version: 1,
        epoch: 0,
        client: None,
        binding: None,
    }
}

fn now() -> Timestamp {
    Timestamp(
        i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock after 1970")
                .as_millis(),
        )
        .expect("millis fit"),
    )
}

/// `writers` tasks each add 1 to a counter `increments` times, spread over
/// `stores`, reading and compare-and-swapping until their write lands.
async fn hammer(stores: &[PostgresStore], writers: usize, increments: u64) {
    let key = SessionToken::generate().expect("token").hash();
    let start = now();
    stores[0]
        .create(&key, &session(start))
        .await
        .expect("create");
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = stores[w % stores.len()].clone();
        tasks.push(tokio::spawn(async move {
            let mut done = 0;
            while done < increments {
                let Some(StoredEntry::Live(current)) = store.load(&key, start).await.expect("load")
                else {
                    panic!("session vanished");
                };
                let counter: u64 = current.data.get("counter").expect("counter");
                let mut next = Session::clone(&current);
                next.version += 1;
                next.data = SessionData::from_json(&format!(r#"{{"counter":{}}}"#, counter + 1))
                    .expect("data");
                match store
                    .update(&key, &next, current.version, start)
                    .await
                    .expect("update")
                {
                    WriteOutcome::Written => done += 1,
                    WriteOutcome::VersionConflict { current: seen } => {
                        assert!(seen > current.version, "a conflict reports a newer version");
                    }
                    WriteOutcome::NotFound => panic!("session vanished"),
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("writer");
    }
    let Some(StoredEntry::Live(last)) = stores[0].load(&key, start).await.expect("load") else {
        panic!("session vanished");
    };
    let total = writers as u64 * increments;
    assert_eq!(
        last.data.get::<u64>("counter"),
        Some(total),
        "no lost update"
    );
    assert_eq!(last.version, total + 1, "one version per write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_writers_across_two_pools_lose_no_update() {
    let schemas = Schemas::new("cas");
    let config = schemas.config().max_connections(8);
    let a = PostgresStore::connect_with(config.clone())
        .await
        .expect("node a");
    let b = PostgresStore::connect_with(config).await.expect("node b");
    hammer(&[a, b], 64, 8).await;
    schemas.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_rotations_of_one_session_have_one_winner() {
    let schemas = Schemas::new("rot");
    let store = schemas.fresh_store().await;
    let start = now();
    let old = SessionToken::generate().expect("token").hash();
    let original = session(start);
    store.create(&old, &original).await.expect("create");
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (store, original) = (store.clone(), original.clone());
        tasks.push(tokio::spawn(async move {
            let new = SessionToken::generate().expect("token").hash();
            let tombstone = Tombstone {
                session_id: original.id,
                successor: new,
                grace_until: None,
                forget_at: start.plus(Duration::from_secs(3600)),
            };
            let outcome = store
                .rotate(&old, &new, &original, 1, &tombstone, start)
                .await
                .expect("rotate");
            (new, outcome)
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        let (new, outcome) = task.await.expect("rotator");
        match outcome {
            WriteOutcome::Written => winners.push(new),
            WriteOutcome::NotFound => {}
            other => panic!("a losing rotation reports the old key gone, got {other:?}"),
        }
        if !winners.contains(&new) {
            assert!(
                store.load(&new, start).await.expect("load").is_none(),
                "a losing rotation leaves nothing behind"
            );
        }
    }
    assert_eq!(winners.len(), 1, "exactly one rotation wins");
    match store.load(&old, start).await.expect("load old") {
        Some(StoredEntry::Tombstone(t)) => assert_eq!(t.successor, winners[0]),
        other => panic!("old key must be the winner's tombstone, got {other:?}"),
    }
    let (key, _) = store
        .load_by_id(&original.id, start)
        .await
        .expect("by id")
        .expect("live session");
    assert_eq!(key, winners[0], "the id follows the winner");
    schemas.drop_all().await;
}
