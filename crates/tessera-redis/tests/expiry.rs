//! Native expiry: Redis removes the records of expired sessions by itself,
//! at the forget deadline the manager gave (`PXAT`); a touch moves the
//! key's expiry with the deadline; the subject index entries the records
//! leave go when the subject is listed or the store is swept. On a server
//! and on a cluster.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{TempCluster, TempRedis, fresh_store};
use tessera_core::store::{Maintenance, Records, SessionStore, SubjectIndex};
use tessera_core::testkit::Harness;
use tessera_core::{Clock, SessionRecord, SystemClock, Timestamp};
use tessera_redis::RedisStore;

/// Polls until `check` holds; the limit only catches a hang.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not happen");
}

async fn create(
    store: &RedisStore,
    h: &Harness,
    subject: &str,
    forget: Timestamp,
) -> SessionRecord {
    let record = h.sample_record(Some(subject));
    store.create(&record, forget).await.expect("create");
    record
}

fn pttl(cli: &impl Fn(&[&str]) -> String, key: &str) -> i64 {
    cli(&["PTTL", key]).parse().expect("PTTL answers a number")
}

async fn expired_sessions_leave_nothing(store: RedisStore, cli: impl Fn(&[&str]) -> String) {
    let h = Harness::new(Arc::new(store.clone()) as Arc<dyn SessionStore>);
    let soon = SystemClock.now().plus(Duration::from_millis(1500));
    let later = SystemClock.now().plus(Duration::from_secs(3600));
    // `gone`: every session expires. `mixed`: one of three survives.
    let mut short_lived = Vec::new();
    for _ in 0..3 {
        short_lived.push(create(&store, &h, "gone", soon).await);
    }
    let survivor = create(&store, &h, "mixed", later).await;
    for _ in 0..2 {
        short_lived.push(create(&store, &h, "mixed", soon).await);
    }
    // Two buckets of the subject index, each holding one subject's entries.
    let gone_index = store.subject_index_key("gone");
    let mixed_index = store.subject_index_key("mixed");
    assert_ne!(gone_index, mixed_index);
    assert_eq!(cli(&["HLEN", &gone_index]), "3");
    assert_eq!(cli(&["HLEN", &mixed_index]), "3");
    let ttl = pttl(&cli, &store.record_key(&survivor.id));
    assert!(
        (3_500_000..=3_600_000).contains(&ttl),
        "the record expires at its deadline (PTTL {ttl})"
    );

    // Redis itself removes the records, with no call from the store.
    for record in &short_lived {
        let key = store.record_key(&record.id);
        eventually("records expiring", || cli(&["EXISTS", &key]) == "0").await;
    }

    // Listing a subject drops its stale entries; a sweep drops the others.
    let listed = store
        .list_subject("mixed", None, 10, SystemClock.now())
        .await
        .expect("list");
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].id, survivor.id);
    assert_eq!(
        cli(&["HLEN", &mixed_index]),
        "1",
        "listing tidied the index"
    );
    assert_eq!(
        cli(&["HLEN", &gone_index]),
        "3",
        "an unlisted index waits for the sweep"
    );
    let swept = store.sweep_expired(SystemClock.now()).await.expect("sweep");
    assert_eq!(swept, 3, "the sweep counts the entries it dropped");
    assert_eq!(
        cli(&["EXISTS", &gone_index]),
        "0",
        "an emptied bucket is gone"
    );
    assert_eq!(cli(&["HLEN", &mixed_index]), "1", "a live entry stays");
    assert_eq!(
        store.sweep_expired(SystemClock.now()).await.expect("sweep"),
        0
    );

    // A touch moves the expiry forward with the deadline, never back.
    let key = store.record_key(&survivor.id);
    let now = SystemClock.now();
    let further = later.plus(Duration::from_secs(3600));
    store
        .touch(&survivor.id, now, further, now)
        .await
        .expect("touch");
    let ttl = pttl(&cli, &key);
    assert!(ttl > 7_100_000, "touched expiry (PTTL {ttl})");
    store
        .touch(&survivor.id, now, later, now)
        .await
        .expect("touch back");
    assert!(pttl(&cli, &key) > 7_100_000, "never moved back");
    let stored = store
        .load(&survivor.id, now)
        .await
        .expect("load")
        .expect("live");
    let mut next = stored.clone();
    next.version += 1;
    let shorter = now.plus(Duration::from_secs(600));
    store
        .update(&next, stored.revision(), shorter, now)
        .await
        .expect("update");
    let ttl = pttl(&cli, &key);
    assert!(
        (500_000..=600_000).contains(&ttl),
        "an update sets the deadline it is given (PTTL {ttl})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_sessions_leave_nothing_on_a_server() {
    let server = TempRedis::start();
    let store = fresh_store(&server.url(), "exp").await;
    expired_sessions_leave_nothing(store, |args| server.cli(args)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_sessions_leave_nothing_on_a_cluster() {
    let cluster = TempCluster::start();
    let store = fresh_store(&cluster.url(), "cexp").await;
    expired_sessions_leave_nothing(store, |args| cluster.cli(args)).await;
}
