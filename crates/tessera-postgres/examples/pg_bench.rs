//! Throughput and latency of validate, create and update through a
//! `SessionManager` on the PostgreSQL store (run by `bench/postgres/run.sh`).
//!
//! ```text
//! cargo run --release -p tessera-postgres --example pg_bench -- \
//!     --url postgres://postgres@127.0.0.1:5432/tessera_bench --concurrency 16 --seconds 5
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tessera_core::{DataChange, NewSession, SessionData, SessionManager};
use tessera_postgres::{PostgresConfig, PostgresStore};

struct Args {
    url: String,
    concurrency: usize,
    seconds: u64,
    sessions: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        url: "postgres://postgres@127.0.0.1:5432/tessera_bench".into(),
        concurrency: 16,
        seconds: 5,
        sessions: 10_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let number = || value.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--url" => args.url = value.clone(),
            "--concurrency" => args.concurrency = usize::try_from(number()?).unwrap_or(16),
            "--seconds" => args.seconds = number()?,
            "--sessions" => args.sessions = usize::try_from(number()?).unwrap_or(10_000),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(args)
}

/// Runs `op` from `concurrency` tasks for `duration`; prints ops/s and percentiles.
async fn measure<F, Fut>(name: &str, concurrency: usize, duration: Duration, op: F)
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = 0;
            while started.elapsed() < duration {
                let t = Instant::now();
                op(worker, i).await;
                latencies.push(t.elapsed());
                i += 1;
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("bench task"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| {
        let index = ((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1));
        all.get(index)
            .map_or(0.0, |d: &Duration| d.as_secs_f64() * 1000.0)
    };
    println!(
        "{name:<9} {:>9.0} ops/s   p50 {:>6.2} ms   p99 {:>6.2} ms   ({} ops, {concurrency} concurrent)",
        all.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99),
        all.len()
    );
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let schema = format!("bench_{}", std::process::id());
    let config = PostgresConfig::from_url(&args.url)?
        .schema(&schema)
        .max_connections(args.concurrency);
    let store = PostgresStore::connect_with(config).await?;
    let manager = SessionManager::builder(store.clone()).build()?;
    let duration = Duration::from_secs(args.seconds);

    // Sessions to validate, created ahead of time.
    let mut tokens = Vec::with_capacity(args.sessions);
    for _ in 0..args.sessions {
        let issued = manager
            .create(NewSession {
                data: Some(SessionData::from_value(&json!({"cart": [1, 2, 3]}))?),
                ..NewSession::default()
            })
            .await?;
        tokens.push(issued.token.expose().to_owned());
    }
    let tokens = Arc::new(tokens);

    let (m, t) = (manager.clone(), tokens.clone());
    measure("validate", args.concurrency, duration, move |w, i| {
        let (m, t) = (m.clone(), t.clone());
        async move {
            let index = (w * 7919 + i as usize * 104_729) % t.len();
            m.validate(&t[index], None).await.expect("validate");
        }
    })
    .await;

    let m = manager.clone();
    measure("create", args.concurrency, duration, move |_, _| {
        let m = m.clone();
        async move {
            m.create(NewSession::default()).await.expect("create");
        }
    })
    .await;

    // Each task updates its own session (no conflicts): load + compare-and-swap.
    let (m, t) = (manager.clone(), tokens.clone());
    measure("update", args.concurrency, duration, move |w, i| {
        let (m, t) = (m.clone(), t.clone());
        async move {
            let patch = json!({"n": i});
            m.update(&t[w], DataChange::MergePatch(patch), None, None)
                .await
                .expect("update");
        }
    })
    .await;

    let (client, connection) = tokio_postgres::connect(&args.url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    client
        .batch_execute(&format!(r#"DROP SCHEMA "{schema}" CASCADE"#))
        .await?;
    Ok(())
}
