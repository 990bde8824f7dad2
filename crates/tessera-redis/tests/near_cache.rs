//! The near cache in front of a real Redis store, its invalidations on
//! Redis pub/sub: requests racing on the same sessions of one node never
//! leave a replaced version in the cache.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::TempRedis;
use tessera_core::near_cache::{NearCache, NearCacheConfig};
use tessera_core::store::Records;
use tessera_core::{Clock, DataChange, NewSession, SessionError, SessionManager, SystemClock};
use tessera_redis::{RedisBus, RedisConfig, RedisStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_requests_of_one_node_leave_no_stale_entry() {
    let redis = TempRedis::start();
    let config = RedisConfig::from_url(&redis.url()).expect("url");
    let store = RedisStore::connect_with(config.clone())
        .await
        .expect("store");
    let bus = RedisBus::new(&store, &config).expect("bus");
    let cache = NearCache::new(store.clone(), Arc::new(bus), NearCacheConfig::default());
    let started = Instant::now();
    while !cache.stats().usable {
        assert!(started.elapsed() < Duration::from_secs(5), "never usable");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let node = SessionManager::builder(cache.clone())
        .build()
        .expect("manager");
    let mut sessions = Vec::new();
    for _ in 0..64 {
        let created = node.create(NewSession::default()).await.expect("create");
        let token = created.issued().expect("a token").expose().to_owned();
        sessions.push((created.record().id, token));
    }
    let sessions = Arc::new(sessions);
    let mut tasks = Vec::new();
    for worker in 0..64usize {
        let (node, sessions) = (node.clone(), sessions.clone());
        tasks.push(tokio::spawn(async move {
            for round in 0..300usize {
                let (_, token) = &sessions[(worker * 7 + round) % sessions.len()];
                // Losing races for a while is contention; losing them for
                // seconds means the cache keeps serving a replaced version.
                let give_up = Instant::now() + Duration::from_secs(20);
                loop {
                    assert!(
                        Instant::now() < give_up,
                        "worker {worker} round {round}: every retry lost for 20 s"
                    );
                    let valid = node.validate(token, None).await.expect("valid");
                    let version = valid.record().version;
                    match node
                        .update(
                            &valid,
                            DataChange::MergePatch(serde_json::json!({"w": worker, "r": round})),
                            Some(version),
                            None,
                        )
                        .await
                    {
                        Ok(_) => break,
                        Err(SessionError::VersionConflict { .. }) => {}
                        Err(other) => panic!("{other}"),
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("worker");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut stale = 0;
    for (id, _) in sessions.iter() {
        let now = SystemClock.now();
        let (Some(truth), Some(seen)) = (
            store.load(id, now).await.expect("store"),
            cache.load(id, now).await.expect("cache"),
        ) else {
            panic!("the session is live");
        };
        if seen.version != truth.version {
            stale += 1;
        }
    }
    assert_eq!(stale, 0, "the cache kept replaced versions");
}
