//! `export_page` while the keyspace grows and shrinks between pages (Redis
//! resizes its tables, and `SCAN` may answer a cursor differently): every
//! record that lived throughout is exported, on a server and on a cluster.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::{TempCluster, TempRedis, fresh_store};
use tessera_core::store::{Maintenance, Records, SessionStore};
use tessera_core::testkit::Harness;
use tessera_core::{SessionId, forget_at};
use tessera_redis::RedisStore;

async fn create_many(store: &RedisStore, h: &Harness, count: usize) -> Vec<SessionId> {
    let records: Vec<_> = (0..count).map(|_| h.sample_record(None)).collect();
    futures_util::future::try_join_all(
        records
            .iter()
            .map(|record| store.create(record, forget_at(record))),
    )
    .await
    .expect("create");
    records.iter().map(|record| record.id).collect()
}

async fn export_survives_resizing(store: RedisStore) {
    let h = Harness::new(Arc::new(store.clone()) as Arc<dyn SessionStore>);
    let lasting: HashSet<SessionId> = create_many(&store, &h, 60).await.into_iter().collect();
    let mut seen = HashSet::new();
    let mut churn: Vec<SessionId> = Vec::new();
    let mut cursor: Option<String> = None;
    for page_number in 0.. {
        assert!(page_number < 10_000, "the export never ends");
        let page = store
            .export_page(cursor.as_deref(), 7, h.now())
            .await
            .expect("export");
        assert!(page.items.len() <= 7, "a page holds at most the limit");
        seen.extend(page.items.iter().map(|r| r.id));
        // Grow the keyspace twentyfold, then shrink it again (Redis shrinks
        // a table below a tenth full on its next cron tick), between pages.
        if churn.is_empty() {
            churn = create_many(&store, &h, 1200).await;
        } else {
            let gone: Vec<SessionId> = std::mem::take(&mut churn);
            futures_util::future::try_join_all(gone.iter().map(|id| store.delete(id)))
                .await
                .expect("delete");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let missed = lasting.difference(&seen).count();
    assert_eq!(
        missed, 0,
        "{missed} records that lived throughout were not exported"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_misses_nothing_while_a_server_resizes() {
    let server = TempRedis::start();
    export_survives_resizing(fresh_store(&server.url(), "exr").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_misses_nothing_while_a_cluster_resizes() {
    let cluster = TempCluster::start();
    export_survives_resizing(fresh_store(&cluster.url(), "cexr").await).await;
}
