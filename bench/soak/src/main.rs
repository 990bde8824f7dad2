//! Drives a running tesserad with a mixed workload for a fixed time and
//! writes one CSV line per second: operations, errors, p50/p99/max latency
//! and the server's resident memory.
//!
//! Workers own disjoint slices of the session pool, so no worker ever uses
//! a token another one just ended: every answer must be a success, and any
//! other answer counts as an error.
#![forbid(unsafe_code)]

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::sync::Mutex;

#[derive(Parser)]
struct Args {
    /// tesserad's base URL.
    #[arg(long)]
    server: String,
    /// The API key.
    #[arg(long)]
    api_key: String,
    /// tesserad's process id (for resident memory).
    #[arg(long)]
    pid: u32,
    /// Live sessions kept throughout.
    #[arg(long, default_value_t = 100_000)]
    sessions: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// How long the mixed phase runs, in seconds.
    #[arg(long, default_value_t = 600)]
    seconds: u64,
    /// Sessions' lifetime on the server (its idle and absolute timeouts),
    /// in seconds: a session older than this plus the 5-minute retention
    /// may be unknown to the server, which is then no error.
    #[arg(long, default_value_t = 60)]
    lifetime_seconds: u64,
    /// Where the per-second CSV goes.
    #[arg(long)]
    csv: std::path::PathBuf,
}

#[derive(Clone, Copy)]
enum Op {
    Validate,
    Update,
    Login,
    Logout,
}

const OPS: [Op; 4] = [Op::Validate, Op::Update, Op::Login, Op::Logout];

struct Stats {
    latency: Mutex<[Histogram<u64>; 4]>,
    ops: AtomicU64,
    errors: AtomicU64,
    expired: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
}

impl Stats {
    fn error(&self, what: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut first) = self.first_error.lock()
            && first.is_none()
        {
            *first = Some(what);
        }
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

struct Client {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Client {
    async fn post(&self, path: &str, body: Value) -> Result<(u16, Value), String> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("{path}: {e}"))?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(|e| format!("{path}: {e}"))?;
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).map_err(|e| format!("{path}: {e}: {text}"))?
        };
        Ok((status, value))
    }

    async fn create(&self, subject: &str) -> Result<String, String> {
        match self.post("/v1/sessions", json!({"subject": subject})).await? {
            (201, body) => body["token"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("create: no token in {body}")),
            (status, body) => Err(format!("create: {status} {body}")),
        }
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

/// How long the server remembers why a session ended, after its deadline.
const RETENTION: Duration = Duration::from_secs(300);

/// One of a worker's sessions: its current token and when it was created.
struct Slot {
    token: String,
    created: Instant,
}

/// Whether an answer says the session reached its idle or absolute
/// deadline (the soak runs with short timeouts, so sessions end and are
/// replaced throughout): `expired_*`, or `unknown` once the session is so
/// old that the server has forgotten it.
fn expired(status: u16, body: &Value, age: Duration, lifetime: Duration) -> bool {
    status == 401
        && body["reason"].as_str().is_some_and(|reason| {
            reason.starts_with("expired") || (reason == "unknown" && age > lifetime + RETENTION)
        })
}

/// One operation on one of the worker's own sessions. `Ok(true)` when the
/// session had expired and was replaced by a new one.
async fn run_op(
    client: &Client,
    op: Op,
    slot: &mut Slot,
    worker: usize,
    lifetime: Duration,
) -> Result<bool, String> {
    let age = slot.created.elapsed();
    let result = run_op_once(client, op, &mut slot.token, worker, age, lifetime).await;
    match result {
        Err(Ended) => {
            slot.token = client.create(&format!("user-{}", fastrand::u32(..10_000))).await?;
            slot.created = Instant::now();
            Ok(true)
        }
        Ok(done) => done.map(|()| false),
    }
}

/// The session ended by its deadline.
struct Ended;

async fn run_op_once(
    client: &Client,
    op: Op,
    token: &mut String,
    worker: usize,
    age: Duration,
    lifetime: Duration,
) -> Result<Result<(), String>, Ended> {
    let answer = |result: Result<(u16, Value), String>| match result {
        Ok((status, body)) if expired(status, &body, age, lifetime) => Err(Ended),
        other => Ok(other),
    };
    Ok(match op {
        Op::Validate => {
            match answer(client.post("/v1/sessions/validate", json!({"token": token})).await)? {
                Ok((200, body)) => {
                    if let Some(renewed) = body["token"].as_str() {
                        *token = renewed.to_owned();
                    }
                    Ok(())
                }
                Ok((status, body)) => Err(format!("validate: {status} {body}")),
                Err(error) => Err(error),
            }
        }
        Op::Update => {
            let body = json!({"token": token, "patch": {"n": fastrand::u32(..), "worker": worker}});
            match answer(client.post("/v1/sessions/update", body).await)? {
                Ok((200, _)) => Ok(()),
                Ok((status, body)) => Err(format!("update: {status} {body}")),
                Err(error) => Err(error),
            }
        }
        Op::Login => {
            let body = json!({"token": token, "subject": format!("user-{}", fastrand::u32(..10_000))});
            match answer(client.post("/v1/sessions/login", body).await)? {
                Ok((200, body)) => match body["token"].as_str() {
                    Some(new) => {
                        *token = new.to_owned();
                        Ok(())
                    }
                    None => Err(format!("login: no token in {body}")),
                },
                Ok((status, body)) => Err(format!("login: {status} {body}")),
                Err(error) => Err(error),
            }
        }
        Op::Logout => {
            match client.post("/v1/sessions/logout", json!({"token": token})).await {
                Ok((204, _)) => {
                    // Keep the number of live sessions constant.
                    client
                        .create(&format!("user-{}", fastrand::u32(..10_000)))
                        .await
                        .map(|new| *token = new)
                }
                Ok((status, body)) => Err(format!("logout: {status} {body}")),
                Err(error) => Err(error),
            }
        }
    })
}

fn pick() -> Op {
    match fastrand::u32(..100) {
        0..80 => Op::Validate,
        80..90 => Op::Update,
        90..95 => Op::Login,
        _ => Op::Logout,
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let client = Arc::new(Client {
        http: reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(args.concurrency)
            .timeout(Duration::from_secs(30))
            .build()?,
        base: args.server.trim_end_matches('/').to_owned(),
        key: args.api_key.clone(),
    });

    // Fill the pool.
    let started = Instant::now();
    let per_worker = args.sessions.div_ceil(args.concurrency);
    let mut fillers = Vec::new();
    for worker in 0..args.concurrency {
        let client = client.clone();
        let count = per_worker.min(args.sessions.saturating_sub(worker * per_worker));
        fillers.push(tokio::spawn(async move {
            let mut tokens = Vec::with_capacity(count);
            for n in 0..count {
                let token = client.create(&format!("user-{}", (worker * 7919 + n) % 10_000)).await?;
                tokens.push(Slot {
                    token,
                    created: Instant::now(),
                });
            }
            Ok::<_, String>(tokens)
        }));
    }
    let mut pools = Vec::new();
    for filler in fillers {
        pools.push(filler.await??);
    }
    let created: usize = pools.iter().map(Vec::len).sum();
    eprintln!(
        "created {created} sessions in {:.1} s; resident memory {} MiB",
        started.elapsed().as_secs_f64(),
        rss_kib(args.pid) / 1024
    );

    let stats = Arc::new(Stats {
        latency: Mutex::new([histogram(), histogram(), histogram(), histogram()]),
        ops: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        expired: AtomicU64::new(0),
        first_error: std::sync::Mutex::new(None),
    });
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let lifetime = Duration::from_secs(args.lifetime_seconds);
    let mut workers = Vec::new();
    for (worker, mut pool) in pools.into_iter().enumerate() {
        let client = client.clone();
        let stats = stats.clone();
        workers.push(tokio::spawn(async move {
            let mut local = [histogram(), histogram(), histogram(), histogram()];
            let mut last_flush = Instant::now();
            while Instant::now() < deadline && !pool.is_empty() {
                let slot = fastrand::usize(..pool.len());
                let op = pick();
                let began = Instant::now();
                let result = run_op(&client, op, &mut pool[slot], worker, lifetime).await;
                let micros = began.elapsed().as_micros().min(u128::from(u64::MAX)) as u64;
                let _ = local[op as usize].record(micros.max(1));
                stats.ops.fetch_add(1, Ordering::Relaxed);
                match result {
                    Ok(true) => {
                        stats.expired.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(false) => {}
                    Err(error) => stats.error(error),
                }
                if last_flush.elapsed() >= Duration::from_millis(100) {
                    let mut shared = stats.latency.lock().await;
                    for (into, from) in shared.iter_mut().zip(local.iter_mut()) {
                        let _ = into.add(&*from);
                        from.reset();
                    }
                    last_flush = Instant::now();
                }
            }
            let mut shared = stats.latency.lock().await;
            for (into, from) in shared.iter_mut().zip(local.iter()) {
                let _ = into.add(from);
            }
        }));
    }

    let mut csv = std::fs::File::create(&args.csv)?;
    writeln!(
        csv,
        "second,ops,errors,expired,p50_us,p99_us,max_us,validate_p99_us,update_p99_us,login_p99_us,logout_p99_us,rss_kib"
    )?;
    let mut overall = [histogram(), histogram(), histogram(), histogram()];
    let mut last_ops = 0;
    let mut second = 0u64;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        second += 1;
        let interval = {
            let mut shared = stats.latency.lock().await;
            let taken = shared.clone();
            for h in shared.iter_mut() {
                h.reset();
            }
            taken
        };
        let mut all = histogram();
        for (h, total) in interval.iter().zip(overall.iter_mut()) {
            let _ = all.add(h);
            let _ = total.add(h);
        }
        let ops = stats.ops.load(Ordering::Relaxed);
        writeln!(
            csv,
            "{second},{},{},{},{},{},{},{},{},{},{},{}",
            ops - last_ops,
            stats.errors.load(Ordering::Relaxed),
            stats.expired.load(Ordering::Relaxed),
            all.value_at_quantile(0.5),
            all.value_at_quantile(0.99),
            all.max(),
            interval[0].value_at_quantile(0.99),
            interval[1].value_at_quantile(0.99),
            interval[2].value_at_quantile(0.99),
            interval[3].value_at_quantile(0.99),
            rss_kib(args.pid),
        )?;
        csv.flush()?;
        last_ops = ops;
    }
    for worker in workers {
        worker.await?;
    }
    let errors = stats.errors.load(Ordering::Relaxed);
    let total = stats.ops.load(Ordering::Relaxed);
    let mut summary = format!(
        "{total} operations in {} s ({:.0}/s), {errors} errors, {} sessions replaced after expiring; resident memory {} MiB",
        args.seconds,
        total as f64 / args.seconds as f64,
        stats.expired.load(Ordering::Relaxed),
        rss_kib(args.pid) / 1024
    );
    for (op, h) in OPS.iter().zip(overall.iter()) {
        let name = match op {
            Op::Validate => "validate",
            Op::Update => "update",
            Op::Login => "login",
            Op::Logout => "logout+create",
        };
        summary.push_str(&format!(
            "; {name}: {} ops, p50 {} µs, p99 {} µs",
            h.len(),
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99)
        ));
    }
    println!("{summary}");
    if let Ok(first) = stats.first_error.lock()
        && let Some(first) = first.as_ref()
    {
        println!("first error: {first}");
    }
    if errors > 0 {
        std::process::exit(1);
    }
    Ok(())
}
