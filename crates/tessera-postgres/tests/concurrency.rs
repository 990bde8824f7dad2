//! Concurrent writers through the store directly: compare-and-swap loses no
//! update, with one pool or with several (as several nodes would).

mod common;

use common::{Schemas, now, sample_record};
use tessera_core::forget_at;
use tessera_core::store::{Records, WriteOutcome};
use tessera_core::{SessionData, SessionRecord};
use tessera_postgres::PostgresStore;

fn with_counter(record: &SessionRecord, counter: u64) -> SessionRecord {
    let mut next = record.clone();
    next.version += 1;
    next.data = SessionData::from_json(&format!(r#"{{"counter":{counter}}}"#)).expect("data");
    next
}

/// `writers` tasks each add 1 to a counter `increments` times, spread over
/// `stores`, reading and compare-and-swapping until their write lands.
async fn hammer(stores: &[PostgresStore], writers: usize, increments: u64) {
    let first = with_counter(&sample_record(&stores[0], Some("writer")), 0);
    let id = first.id;
    let start = now();
    stores[0]
        .create(&first, forget_at(&first))
        .await
        .expect("create");
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = stores[w % stores.len()].clone();
        tasks.push(tokio::spawn(async move {
            let mut done = 0;
            while done < increments {
                let current = store
                    .load(&id, start)
                    .await
                    .expect("load")
                    .expect("the session is there");
                let counter: u64 = current.data.get("counter").expect("counter");
                let next = with_counter(&current, counter + 1);
                match store
                    .update(&next, current.revision(), forget_at(&next), start)
                    .await
                    .expect("update")
                {
                    WriteOutcome::Written => done += 1,
                    WriteOutcome::Conflict { current: seen } => {
                        assert!(
                            seen.version > current.version,
                            "a conflict reports a newer revision"
                        );
                    }
                    WriteOutcome::NotFound => panic!("session vanished"),
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("writer");
    }
    let last = stores[0]
        .load(&id, start)
        .await
        .expect("load")
        .expect("the session is there");
    let total = writers as u64 * increments;
    assert_eq!(
        last.data.get::<u64>("counter"),
        Some(total),
        "no lost update"
    );
    assert_eq!(last.version, first.version + total, "one version per write");
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
async fn concurrent_writes_expecting_one_revision_have_one_winner() {
    let schemas = Schemas::new("one");
    let store = schemas.fresh_store().await;
    let original = sample_record(&store, Some("writer"));
    let start = now();
    store
        .create(&original, forget_at(&original))
        .await
        .expect("create");
    let mut tasks = Vec::new();
    for n in 0..16 {
        let (store, original) = (store.clone(), original.clone());
        tasks.push(tokio::spawn(async move {
            let next = with_counter(&original, n);
            let outcome = store
                .update(&next, original.revision(), forget_at(&next), start)
                .await
                .expect("update");
            (n, next.revision(), outcome)
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        let (n, written, outcome) = task.await.expect("writer");
        match outcome {
            WriteOutcome::Written => winners.push(n),
            WriteOutcome::Conflict { current } => {
                assert_eq!(current, written, "a loser sees the winner's revision");
            }
            WriteOutcome::NotFound => panic!("the session vanished"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one write wins");
    let stored = store
        .load(&original.id, start)
        .await
        .expect("load")
        .expect("the session is there");
    assert_eq!(stored.data.get::<u64>("counter"), Some(winners[0]));
    schemas.drop_all().await;
}
