//! Library-level throughput of `SessionManager::validate` and `update` at
//! 64 concurrent tasks over 10 000 sessions, on the memory store, on Redis,
//! and on Redis behind the near cache, one after the other in one run
//! (`bench/redis/run.sh` puts `redis-benchmark` beside it).
//!
//! `cargo run --release -p tessera-redis --example validate_throughput -- redis://127.0.0.1:6379 [SECONDS]`

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tessera_core::near_cache::{NearCache, NearCacheConfig};
use tessera_core::store::SessionStore;
use tessera_core::{DataChange, MemoryStore, NewSession, SessionManager};
use tessera_redis::{RedisBus, RedisConfig, RedisStore};

const TASKS: usize = 64;
const SESSIONS: usize = 10_000;

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Validate,
    Update,
}

/// Runs `op` from 64 tasks for `seconds`; returns (ops/s, p50 µs, p99 µs).
async fn measure(
    manager: SessionManager,
    tokens: Arc<Vec<String>>,
    op: Op,
    seconds: u64,
) -> (f64, u64, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let measuring = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let (manager, tokens, stop, count, measuring) = (
            manager.clone(),
            tokens.clone(),
            stop.clone(),
            count.clone(),
            measuring.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(100_000);
            // Each task owns its slice of the sessions, so updates do not contend.
            let mine: Vec<&String> = tokens.iter().skip(task).step_by(TASKS).collect();
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let token = mine[i % mine.len()];
                i += 1;
                let began = Instant::now();
                let ok = match op {
                    Op::Validate => manager.validate(token, None).await.is_ok(),
                    // What an API call that changes the data does: resolve
                    // the token, then write.
                    Op::Update => match manager.resolve(token, None).await {
                        Ok(current) => manager
                            .update(
                                &current,
                                DataChange::MergePatch(serde_json::json!({"n": i})),
                                None,
                                None,
                            )
                            .await
                            .is_ok(),
                        Err(_) => false,
                    },
                };
                assert!(ok, "operation failed");
                // The memory store never waits: let the timer and the other tasks run.
                tokio::task::yield_now().await;
                if measuring.load(Ordering::Relaxed) {
                    latencies.push(began.elapsed().as_micros() as u64);
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
            latencies
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    measuring.store(false, Ordering::Relaxed);
    let rate = count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("task"));
    }
    all.sort_unstable();
    let at = |q: f64| {
        all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    (rate, at(0.5), at(0.99))
}

async fn run(name: &str, store: Arc<dyn SessionStore>, seconds: u64) {
    let manager = SessionManager::builder_shared(store)
        // A load generator: the anonymous creation caps would refuse it.
        .anonymous_creation_caps(None, None)
        .build()
        .expect("manager");
    let mut tokens = Vec::with_capacity(SESSIONS);
    for n in 0..SESSIONS {
        let issued = manager
            .create(NewSession::default().subject(format!("user-{n}")))
            .await
            .expect("create");
        tokens.push(issued.issued().expect("a token").expose().to_owned());
    }
    let tokens = Arc::new(tokens);
    for (op, label) in [(Op::Validate, "validate"), (Op::Update, "update")] {
        let (rate, p50, p99) = measure(manager.clone(), tokens.clone(), op, seconds).await;
        println!("{name:<22} {label:<9} {rate:>9.0}/s  p50 {p50:>6} µs  p99 {p99:>6} µs");
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned());
    let seconds = args.next().and_then(|s| s.parse().ok()).unwrap_or(5);

    run("memory", Arc::new(MemoryStore::new()), seconds).await;

    let config = RedisConfig::from_url(&url)?.prefix("bench-validate:");
    let store = RedisStore::connect_with(config.clone()).await?;
    run("redis", Arc::new(store.clone()), seconds).await;

    let bus = RedisBus::new(&store, &config)?;
    let cached = NearCache::new(store, Arc::new(bus), NearCacheConfig::default());
    while !cached.stats().usable {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    run("redis + near cache", Arc::new(cached.clone()), seconds).await;
    let stats = cached.stats();
    println!(
        "near cache: {} hits, {} misses ({:.1} % hits)",
        stats.hits,
        stats.misses,
        100.0 * stats.hits as f64 / (stats.hits + stats.misses).max(1) as f64
    );
    Ok(())
}
