//! The sweeper: batched deletes, several nodes at once, and the background task.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Schemas, admin};
use tessera_core::{
    ManualClock, Session, SessionData, SessionId, SessionStore, SessionToken, Timestamp,
};
use tessera_postgres::PostgresStore;

fn session(now: Timestamp, idle_ms: u64) -> Session {
    Session {
        id: SessionId::generate().expect("id"),
        subject: Some("swept".into()),
        auth_level: 1,
        authenticated_at: Some(now),
        data: SessionData::empty(),
        created_at: now,
        last_seen_at: now,
        token_issued_at: now,
        idle_timeout_ms: idle_ms,
        absolute_expires_at: now.plus(Duration::from_secs(12 * 3600)),
        version: 1,
        epoch: 0,
        client: None,
        binding: None,
    }
}

async fn fill(store: &PostgresStore, now: Timestamp, count: usize, idle_ms: u64) {
    let mut tasks = Vec::new();
    for chunk in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for _ in (chunk..count).step_by(8) {
                let key = SessionToken::generate().expect("token").hash();
                store
                    .create(&key, &session(now, idle_ms))
                    .await
                    .expect("create");
            }
        }));
    }
    for task in tasks {
        task.await.expect("filler");
    }
}

async fn rows(schema: &str) -> i64 {
    admin()
        .await
        .query_one(&format!(r#"SELECT count(*) FROM "{schema}".sessions"#), &[])
        .await
        .expect("count")
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweepers_on_several_nodes_split_the_work() {
    let schemas = Schemas::new("sweep");
    let config = schemas.config().sweep_batch(40).max_connections(4);
    let first = PostgresStore::connect_with(config.clone())
        .await
        .expect("store");
    let now = Timestamp(1_700_000_000_000);
    fill(&first, now, 600, 1_000).await;
    fill(&first, now, 10, 24 * 3600 * 1000).await;
    let later = now.plus(Duration::from_secs(3600));
    let mut nodes = vec![first];
    for _ in 0..3 {
        nodes.push(
            PostgresStore::connect_with(config.clone())
                .await
                .expect("node"),
        );
    }
    let mut sweeps = Vec::new();
    for node in &nodes {
        let node = node.clone();
        sweeps.push(tokio::spawn(async move { node.sweep_expired(later).await }));
    }
    let mut removed = 0;
    for sweep in sweeps {
        removed += sweep.await.expect("task").expect("sweep");
    }
    // Each row is deleted by exactly one node; a node that found the rest
    // locked by others stopped early, so one more pass cleans up anything
    // left while the others were still busy.
    removed += nodes[0].sweep_expired(later).await.expect("last pass");
    assert_eq!(removed, 600, "every expired record deleted exactly once");
    assert_eq!(rows(nodes[0].schema()).await, 10, "live sessions stay");
    assert_eq!(
        nodes[0]
            .list_by_subject("swept", later)
            .await
            .expect("list")
            .len(),
        10
    );
    schemas.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_sweeper_deletes_expired_records_and_stops_with_the_store() {
    let schemas = Schemas::new("sweepbg");
    let store = schemas.fresh_store().await;
    let schema = store.schema().to_owned();
    let clock = ManualClock::starting_now();
    let now = tessera_core::Clock::now(&clock);
    fill(&store, now, 20, 1_000).await;
    let handle = store.spawn_sweeper_with_clock(Duration::from_millis(20), Arc::new(clock.clone()));
    assert_eq!(rows(&schema).await, 20, "nothing is due yet");
    clock.advance(Duration::from_secs(3600));
    let mut left = rows(&schema).await;
    for _ in 0..500 {
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        left = rows(&schema).await;
    }
    assert_eq!(left, 0, "the sweeper deletes what is due");
    drop(store);
    tokio::time::timeout(Duration::from_secs(30), handle)
        .await
        .expect("the sweeper ends once the store is dropped")
        .expect("sweeper task");
    schemas.drop_all().await;
}
