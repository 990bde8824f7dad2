//! Sweeping: batched deletes, several nodes at once, and the core's
//! sweeper loop over this store.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Schemas, count_rows, sample_record};
use tessera_core::store::{Maintenance, Records, SubjectIndex, spawn_sweeper_with_clock};
use tessera_core::{Clock, ManualClock, Timestamp};
use tessera_postgres::PostgresStore;

/// Creates `count` records of subject `swept` that may be forgotten at `forget_at`.
async fn fill(store: &PostgresStore, count: usize, forget_at: Timestamp) {
    let mut tasks = Vec::new();
    for chunk in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for _ in (chunk..count).step_by(8) {
                let record = sample_record(&store, Some("swept"));
                store.create(&record, forget_at).await.expect("create");
            }
        }));
    }
    for task in tasks {
        task.await.expect("filler");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweepers_on_several_nodes_split_the_work() {
    let schemas = Schemas::new("sweep");
    let config = schemas.config().sweep_batch(40).max_connections(4);
    let first = PostgresStore::connect_with(config.clone())
        .await
        .expect("store");
    let now = common::now();
    fill(&first, 600, now.plus(Duration::from_secs(60))).await;
    fill(&first, 10, now.plus(Duration::from_secs(24 * 3600))).await;
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
    assert_eq!(
        count_rows(nodes[0].schema(), "records").await,
        10,
        "live sessions stay"
    );
    let listed = nodes[0]
        .list_subject("swept", None, 100, later)
        .await
        .expect("list");
    assert_eq!(listed.items.len(), 10);
    schemas.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_core_sweeper_loop_deletes_what_is_due() {
    let schemas = Schemas::new("sweepbg");
    let store = schemas.fresh_store().await;
    let schema = store.schema().to_owned();
    let clock = ManualClock::starting_now();
    fill(&store, 20, clock.now().plus(Duration::from_secs(60))).await;
    let sweeper = spawn_sweeper_with_clock(
        store.clone(),
        Duration::from_millis(20),
        Arc::new(clock.clone()),
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        count_rows(&schema, "records").await,
        20,
        "nothing is due yet"
    );
    clock.advance(Duration::from_secs(3600));
    let mut left = count_rows(&schema, "records").await;
    for _ in 0..500 {
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        left = count_rows(&schema, "records").await;
    }
    assert_eq!(left, 0, "the sweeper deletes what is due");
    assert!(!sweeper.is_finished(), "the loop runs until stopped");
    sweeper.stop();
    schemas.drop_all().await;
}
