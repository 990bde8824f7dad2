//! Measures `load` (the validation read) on one Redis server in one round
//! trip (a script that follows the pointer) against two (pointer, then
//! record, as a cluster needs), at 64 concurrent tasks.
//!
//! `cargo run --release -p tessera-redis --example load_round_trips -- redis://127.0.0.1:6379 [SECONDS]`

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tessera_core::{
    Session, SessionData, SessionId, SessionStore, SessionToken, Timestamp, TokenHash,
};
use tessera_redis::{RedisConfig, RedisStore};

const TASKS: usize = 64;
const SESSIONS: usize = 1000;

fn now() -> Timestamp {
    Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0),
    )
}

async fn rate(store: RedisStore, keys: Arc<Vec<TokenHash>>, seconds: u64) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let (store, keys, stop, count) = (store.clone(), keys.clone(), stop.clone(), count.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = task;
            while !stop.load(Ordering::Relaxed) {
                let found = store.load(&keys[i % keys.len()], now()).await;
                assert!(matches!(found, Ok(Some(_))), "load failed: {found:?}");
                count.fetch_add(1, Ordering::Relaxed);
                i += TASKS;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (start, started) = (count.load(Ordering::Relaxed), Instant::now());
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let done = count.load(Ordering::Relaxed) - start;
    let rate = done as f64 / started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    rate
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned());
    let seconds: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(5);
    let config = RedisConfig::from_url(&url)?.prefix("bench-rt:");
    let one = RedisStore::connect_with(config.clone()).await?;
    let two = RedisStore::connect_with(config.two_step_load(true)).await?;
    let mut keys = Vec::new();
    for _ in 0..SESSIONS {
        let key = SessionToken::generate()?.hash();
        let now = now();
        let session = Session {
            id: SessionId::generate()?,
            subject: None,
            auth_level: 0,
            authenticated_at: None,
            data: SessionData::from_json(r#"{"cart":[1,2,3],"theme":"dark"}"#)?,
            created_at: now,
            last_seen_at: now,
            token_issued_at: now,
            idle_timeout_ms: 600_000,
            absolute_expires_at: now.plus(Duration::from_secs(3600)),
            version: 1,
            epoch: 0,
            client: None,
            binding: None,
        };
        one.create(&key, &session).await?;
        keys.push(key);
    }
    let keys = Arc::new(keys);
    for round in 1..=2 {
        let single = rate(one.clone(), keys.clone(), seconds).await;
        let double = rate(two.clone(), keys.clone(), seconds).await;
        println!(
            "round {round}: one round trip {single:.0} loads/s, two round trips {double:.0} loads/s ({TASKS} tasks)"
        );
    }
    Ok(())
}
