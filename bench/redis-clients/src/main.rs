//! GET throughput of two async Redis clients, each over one multiplexed
//! connection shared by 64 tasks, against a local redis-server.
//!
//! `cargo run --release -- PORT [SECONDS] [TASKS]`
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fred::prelude::{Builder, ClientLike, Config, KeysInterface};

const KEY: &str = "bench:session";
const VALUE: &str = r#"{"v":1,"session":{"id":"0123456789abcdef0123456789abcdef","data":{}}}"#;

async fn measure<F, Fut>(tasks: usize, seconds: u64, get: F) -> f64
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let get = Arc::new(get);
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (get, stop, count) = (get.clone(), stop.clone(), count.clone());
        handles.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                get().await;
                count.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Warm up, then count over the measured window.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let start_count = count.load(Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let done = count.load(Ordering::Relaxed) - start_count;
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for handle in handles {
        let _ = handle.await;
    }
    done as f64 / elapsed.as_secs_f64()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().ok_or("usage: PORT [SECONDS] [TASKS]")?.parse()?;
    let seconds: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(5);
    let tasks: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(64);
    let url = format!("redis://127.0.0.1:{port}");

    let client = redis::Client::open(url.as_str())?;
    let redis_rs = client.get_multiplexed_async_connection().await?;
    let mut setup = redis_rs.clone();
    redis::cmd("SET")
        .arg(KEY)
        .arg(VALUE)
        .query_async::<()>(&mut setup)
        .await?;

    let fred_client = Builder::from_config(Config::from_url(&url)?).build()?;
    fred_client.init().await?;

    for round in 1..=2 {
        let conn = redis_rs.clone();
        let rs = measure(tasks, seconds, move || {
            let mut conn = conn.clone();
            async move {
                let value: Option<String> = redis::cmd("GET")
                    .arg(KEY)
                    .query_async(&mut conn)
                    .await
                    .expect("redis-rs GET");
                assert!(value.is_some());
            }
        })
        .await;
        let client = fred_client.clone();
        let fred = measure(tasks, seconds, move || {
            let client = client.clone();
            async move {
                let value: Option<String> = client.get(KEY).await.expect("fred GET");
                assert!(value.is_some());
            }
        })
        .await;
        println!("round {round}: redis-rs multiplexed {rs:.0} GET/s, fred {fred:.0} GET/s ({tasks} tasks, {seconds} s)");
    }
    Ok(())
}
