//! Throughput and latency of validate, create and update through a
//! `SessionManager` on the PostgreSQL store, with `pgbench -S` (one
//! primary-key `SELECT` per transaction) at the same concurrency against
//! the same server as the yardstick for validate, which is one primary-key
//! `SELECT` too. pgbench runs before and after validate, and the ratio is
//! taken against the mean of the two runs.
//!
//! ```text
//! cargo run --release -p tessera-postgres --example pg_bench -- \
//!     --url postgres://postgres@127.0.0.1:5432/tessera_bench --concurrency 16 --seconds 5
//! ```
//!
//! `--pgbench none` skips the comparison; otherwise `pgbench` from `PATH`
//! (or the path given) runs, after initialising its tables in the database
//! (`pgbench -i -s 10`) if they are missing. `bench/postgres/run.sh` runs
//! this example.

use std::process::Command;
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
    pgbench: Option<String>,
    writes: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        url: "postgres://postgres@127.0.0.1:5432/tessera_bench".into(),
        concurrency: 16,
        seconds: 5,
        sessions: 10_000,
        pgbench: Some("pgbench".into()),
        writes: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--validate-only" {
            args.writes = false;
            continue;
        }
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let number = || value.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--url" => args.url = value.clone(),
            "--concurrency" => args.concurrency = usize::try_from(number()?).unwrap_or(16),
            "--seconds" => args.seconds = number()?,
            "--sessions" => args.sessions = usize::try_from(number()?).unwrap_or(10_000),
            "--pgbench" => args.pgbench = (value != "none").then(|| value.clone()),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(args)
}

/// Runs `op` from `concurrency` tasks for `duration`; prints and returns ops/s.
async fn measure<F, Fut>(name: &str, concurrency: usize, duration: Duration, op: F) -> f64
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
    let rate = all.len() as f64 / elapsed;
    println!(
        "{name:<22} {rate:>9.0} ops/s   p50 {:>6.2} ms   p99 {:>6.2} ms   ({} ops, {concurrency} concurrent)",
        pct(0.50),
        pct(0.99),
        all.len()
    );
    rate
}

/// `pgbench`'s connection flags for the database of `url`.
fn pgbench_target(url: &str) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let base = url.split('?').next().unwrap_or(url);
    let config: tokio_postgres::Config = base.parse()?;
    let mut flags = Vec::new();
    if let Some(host) = config.get_hosts().first() {
        let host = match host {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        };
        flags.extend(["-h".to_owned(), host]);
    }
    if let Some(port) = config.get_ports().first() {
        flags.extend(["-p".to_owned(), port.to_string()]);
    }
    if let Some(user) = config.get_user() {
        flags.extend(["-U".to_owned(), user.to_owned()]);
    }
    flags.push(config.get_dbname().unwrap_or("postgres").to_owned());
    Ok(flags)
}

/// Runs `pgbench -S` with `extra` flags; prints and returns its tps.
fn pgbench_select(
    program: &str,
    target: &[String],
    concurrency: usize,
    seconds: u64,
    extra: &[&str],
) -> Result<f64, Box<dyn std::error::Error>> {
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(concurrency);
    let output = Command::new(program)
        .args(["-n", "-S", "-c", &concurrency.to_string()])
        .args(["-j", &threads.to_string(), "-T", &seconds.to_string()])
        .args(extra)
        .args(target)
        .output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let tps = text
        .lines()
        .find_map(|line| line.strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse::<f64>().ok())
        .ok_or_else(|| {
            format!(
                "pgbench printed no tps: {text}{}",
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
    let name = format!("pgbench -S {}", extra.join(" "));
    println!("{name:<22} {tps:>9.0} tps     ({concurrency} clients, {threads} threads)");
    Ok(tps)
}

/// Initialises pgbench's tables unless they are there.
async fn pgbench_tables(
    client: &tokio_postgres::Client,
    program: &str,
    target: &[String],
) -> Result<(), Box<dyn std::error::Error>> {
    let present: bool = client
        .query_one("SELECT to_regclass('pgbench_accounts') IS NOT NULL", &[])
        .await?
        .try_get(0)?;
    if !present {
        let status = Command::new(program)
            .args(["-i", "-s", "10", "-q"])
            .args(target)
            .status()?;
        if !status.success() {
            return Err(format!("pgbench -i failed: {status}").into());
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let schema = format!("bench_{}", std::process::id());
    let config = PostgresConfig::from_url(&args.url)?
        .schema(&schema)
        .max_connections(args.concurrency);
    let store = PostgresStore::connect_with(config).await?;
    let manager = SessionManager::builder(store.clone())
        // A load generator: the anonymous creation caps would refuse it.
        .anonymous_creation_caps(None, None)
        .build()?;
    let duration = Duration::from_secs(args.seconds);
    let admin_url = args.url.split('?').next().unwrap_or(&args.url);
    let (client, connection) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);

    // Sessions to validate, created ahead of time.
    let mut tokens = Vec::with_capacity(args.sessions);
    for _ in 0..args.sessions {
        let created = manager
            .create(
                NewSession::default().data(SessionData::from_value(&json!({"cart": [1, 2, 3]}))?),
            )
            .await?;
        let token = created.issued().ok_or("a new session has a token")?;
        tokens.push(token.expose().to_owned());
    }
    let tokens = Arc::new(tokens);
    client
        .batch_execute(&format!(r#"ANALYZE "{schema}".records"#))
        .await?;

    let pgbench = match &args.pgbench {
        Some(program) => {
            let target = pgbench_target(&args.url)?;
            pgbench_tables(&client, program, &target).await?;
            Some((program.clone(), target))
        }
        None => None,
    };
    let run_pgbench = |extra: &[&str]| -> Result<Option<f64>, Box<dyn std::error::Error>> {
        match &pgbench {
            Some((program, target)) => Ok(Some(pgbench_select(
                program,
                target,
                args.concurrency,
                args.seconds,
                extra,
            )?)),
            None => Ok(None),
        }
    };

    let before = run_pgbench(&[])?;
    let (m, t) = (manager.clone(), tokens.clone());
    let validate = measure("validate", args.concurrency, duration, move |w, i| {
        let (m, t) = (m.clone(), t.clone());
        async move {
            let index = (w * 7919 + i as usize * 104_729) % t.len();
            m.validate(&t[index], None).await.expect("validate");
        }
    })
    .await;
    let after = run_pgbench(&[])?;
    let prepared = run_pgbench(&["-M", "prepared"])?;
    if let (Some(before), Some(after)) = (before, after) {
        let simple = (before + after) / 2.0;
        println!(
            "validate / pgbench -S: {:.0} % (simple protocol, mean of the runs before and after)",
            100.0 * validate / simple
        );
    }
    if let Some(prepared) = prepared {
        println!(
            "validate / pgbench -S -M prepared: {:.0} %",
            100.0 * validate / prepared
        );
    }

    if args.writes {
        let m = manager.clone();
        measure("create", args.concurrency, duration, move |_, _| {
            let m = m.clone();
            async move {
                m.create(NewSession::default()).await.expect("create");
            }
        })
        .await;

        // Each task updates its own session (no conflicts): resolve, then
        // one compare-and-swap.
        let (m, t) = (manager.clone(), tokens.clone());
        measure("update", args.concurrency, duration, move |w, i| {
            let (m, t) = (m.clone(), t.clone());
            async move {
                let current = m.resolve(&t[w], None).await.expect("resolve");
                m.update(
                    &current,
                    DataChange::MergePatch(json!({"n": i})),
                    None,
                    None,
                )
                .await
                .expect("update");
            }
        })
        .await;
    }

    client
        .batch_execute(&format!(r#"DROP SCHEMA "{schema}" CASCADE"#))
        .await?;
    Ok(())
}
