//! `tesserad` over shared network stores: several server processes on one
//! store, the store failing under load, the near cache, and `tesserad
//! migrate` between stores. Uses the PostgreSQL on 127.0.0.1:5432 (database
//! `test`, a fresh schema per test), and private PostgreSQL and Redis
//! servers (and a Redis Cluster) it starts itself.

mod common;
#[path = "../../tessera-redis/tests/common/mod.rs"]
mod redis_common;
#[allow(dead_code)]
#[path = "../../tessera-postgres/tests/common/temp_pg.rs"]
mod temp_pg;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{API_KEY, Server, call, client, create, temp_dir, tesserad_command};
use serde_json::{Value, json};
use tessera::store::{Maintenance, Records, SessionStore};
use tessera::token::SessionToken;
use tessera::{Clock, NewSession, SessionManager, SystemClock};

/// The shared test database, or `TESSERA_TEST_POSTGRES_URL`.
fn postgres_base() -> String {
    std::env::var("TESSERA_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A store URL for a schema of its own on the shared test database.
fn postgres_url(tag: &str) -> String {
    let mut random = [0u8; 6];
    getrandom::fill(&mut random).expect("random");
    let schema = format!("tsrv_{tag}_{}", hex::encode(random));
    let base = postgres_base();
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}schema={schema}")
}

/// Drops the schema a [`postgres_url`] names.
async fn drop_schema(url: &str) {
    let Some(schema) = url.split("schema=").nth(1) else {
        return;
    };
    let schema = schema.split('&').next().unwrap_or(schema);
    let base = postgres_base();
    if let Ok((db, connection)) = tokio_postgres::connect(&base, tokio_postgres::NoTls).await {
        tokio::spawn(connection);
        let _ = db
            .batch_execute(&format!(r#"DROP SCHEMA IF EXISTS "{schema}" CASCADE"#))
            .await;
    }
}

fn start_on(store: &str) -> Server {
    start_with(store, &[])
}

fn start_with(store: &str, extra: &[&str]) -> Server {
    let mut args = vec!["--store", store, "--api-key", API_KEY];
    args.extend_from_slice(extra);
    Server::start_raw(&temp_dir("node"), &args, &[])
}

async fn validate(server: &Server, token: &str) -> (u16, Value) {
    call(
        server,
        "POST",
        "/v1/sessions/validate",
        Some(json!({"token": token})),
    )
    .await
}

/// Validates on `server` until `done` holds for the answer or `settle` has
/// passed (a near cache learns of another node's write a moment later);
/// returns the last answer. With `settle` zero: exactly one attempt.
async fn settled(
    server: &Server,
    token: &str,
    settle: Duration,
    done: impl Fn(u16, &Value) -> bool,
) -> (u16, Value) {
    let started = Instant::now();
    loop {
        let (status, body) = validate(server, token).await;
        if done(status, &body) || started.elapsed() >= settle {
            return (status, body);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// What every shared store must give several `tesserad` nodes: a session
/// created on one validates on the other, updates and revocations are seen
/// everywhere at once, and concurrent compare-and-swap writers spread over
/// both nodes lose no update.
async fn many_nodes_share_one_store(a: &Server, b: &Server, settle: Duration) {
    let (token, session) = create(a, Some("alice")).await;
    let id = session["id"].as_str().expect("id").to_owned();
    let (status, body) = validate(b, &token).await;
    assert_eq!(status, 200, "created on A, valid on B: {body}");
    assert_eq!(body["session"]["id"], json!(id));

    let (status, body) = call(
        b,
        "POST",
        "/v1/sessions/update",
        Some(json!({"token": token, "data": {"counter": 0, "from": "B"}})),
    )
    .await;
    assert_eq!(status, 200, "update on B: {body}");
    let (status, body) = settled(a, &token, settle, |_, body| {
        body["session"]["data"]["from"] == json!("B")
    })
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["session"]["data"]["from"],
        json!("B"),
        "A sees B's update"
    );

    // 16 writers, half on each node, each adding 5 to the counter with
    // compare-and-swap and retrying on 409: every increment must land.
    let writers: Vec<_> = (0..16)
        .map(|n| {
            let node = if n % 2 == 0 {
                a.url.clone()
            } else {
                b.url.clone()
            };
            let token = token.clone();
            tokio::spawn(async move {
                let http = client();
                let post = |path: &str, body: Value| {
                    http.post(format!("{node}{path}"))
                        .bearer_auth(API_KEY)
                        .json(&body)
                        .send()
                };
                let mut conflicts = 0u32;
                let mut done = 0;
                while done < 5 {
                    let read: Value = post("/v1/sessions/validate", json!({"token": token}))
                        .await
                        .expect("validate")
                        .json()
                        .await
                        .expect("json");
                    let version = read["session"]["version"].as_u64().expect("version");
                    let counter = read["session"]["data"]["counter"]
                        .as_u64()
                        .expect("counter");
                    let response = post(
                        "/v1/sessions/update",
                        json!({"token": token, "version": version,
                               "patch": {"counter": counter + 1}}),
                    )
                    .await
                    .expect("update");
                    match response.status().as_u16() {
                        200 => done += 1,
                        409 => conflicts += 1,
                        other => panic!("update answered {other}"),
                    }
                }
                conflicts
            })
        })
        .collect();
    let mut conflicts = 0;
    for writer in writers {
        conflicts += writer.await.expect("writer");
    }
    let (_, body) = settled(b, &token, settle, |_, body| {
        body["session"]["data"]["counter"] == json!(80)
    })
    .await;
    assert_eq!(
        body["session"]["data"]["counter"],
        json!(80),
        "16 writers × 5 increments over two nodes ({conflicts} conflicts retried)"
    );

    let (status, _) = call(a, "DELETE", &format!("/v1/sessions/{id}"), None).await;
    assert_eq!(status, 204, "revoke on A");
    let (status, body) = settled(b, &token, settle, |status, _| status == 401).await;
    assert_eq!(status, 401, "revoked on A, refused by B: {body}");
    assert_eq!(body["error"], json!("invalid_session"));

    // The subject index is shared too: list on one node, revoke-all on the other.
    let mut tokens = Vec::new();
    for node in [a, b, a] {
        tokens.push(create(node, Some("bob")).await.0);
    }
    let (status, body) = call(b, "GET", "/v1/subjects/bob/sessions", None).await;
    assert_eq!(status, 200);
    assert_eq!(body["sessions"].as_array().map(Vec::len), Some(3), "{body}");
    let (status, body) = call(a, "DELETE", "/v1/subjects/bob/sessions", None).await;
    assert_eq!(status, 200);
    assert_eq!(body["revoked"], json!(3));
    for token in &tokens {
        let (status, _) = settled(b, token, settle, |status, _| status == 401).await;
        assert_eq!(status, 401, "revoked everywhere");
    }

    let (status, _) = call(b, "POST", "/v1/admin/revoke-all", None).await;
    assert_eq!(status, 200);
    let (other, _) = create(b, None).await;
    assert_eq!(
        validate(a, &other).await.0,
        200,
        "sessions after revoke-all live"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_tesserad_nodes_share_sessions_on_postgres() {
    let url = postgres_url("nodes");
    let a = start_on(&url);
    let b = start_on(&url);
    many_nodes_share_one_store(&a, &b, Duration::ZERO).await;
    drop((a, b));
    drop_schema(&url).await;
}

/// What clients saw while the store was failing.
#[derive(Default)]
struct Observed {
    /// Answers "valid" for a revoked or unknown token (must stay 0).
    wrongly_valid: AtomicU64,
    /// Answers other than 200, 401 and 503 `store_unavailable`, with what they were.
    unexpected: Mutex<Vec<String>>,
    /// 503 answers.
    unavailable: AtomicU64,
    /// Answers in all.
    answers: AtomicU64,
}

/// Validates a live, a revoked and an unknown token in a loop until `stop`.
fn spawn_load(
    server: &Server,
    live: String,
    revoked: String,
    stop: Arc<AtomicBool>,
    seen: Arc<Observed>,
) -> tokio::task::JoinHandle<()> {
    let url = server.at("/v1/sessions/validate");
    // Well formed, of no session: a random selector and verifier.
    let unknown = {
        let live = SessionToken::parse(&live).expect("a token");
        let mut text = live.expose().to_owned();
        text.replace_range(4..26, "AAAAAAAAAAAAAAAAAAAAAA");
        text
    };
    tokio::spawn(async move {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client");
        let tokens = [(live, true), (revoked, false), (unknown, false)];
        let mut n = 0usize;
        while !stop.load(Ordering::Relaxed) {
            let (token, may_be_valid) = &tokens[n % tokens.len()];
            n += 1;
            let response = http
                .post(&url)
                .bearer_auth(API_KEY)
                .json(&json!({"token": token}))
                .send()
                .await;
            let Ok(response) = response else {
                let mut unexpected = seen.unexpected.lock().expect("lock");
                unexpected.push(format!("no answer: {response:?}"));
                continue;
            };
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            seen.answers.fetch_add(1, Ordering::Relaxed);
            match status {
                200 if !may_be_valid => {
                    seen.wrongly_valid.fetch_add(1, Ordering::Relaxed);
                }
                200 | 401 => {}
                503 if body["error"] == json!("store_unavailable") => {
                    seen.unavailable.fetch_add(1, Ordering::Relaxed);
                }
                _ => seen
                    .unexpected
                    .lock()
                    .expect("lock")
                    .push(format!("{status} {body}")),
            }
        }
    })
}

async fn readyz(server: &Server) -> u16 {
    client()
        .get(server.at("/readyz"))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// A store process the outage test can stop and start.
trait Outage {
    fn stop(&mut self);
    fn start(&mut self);
}

impl Outage for temp_pg::TempPostgres {
    fn stop(&mut self) {
        self.stop_server();
    }
    fn start(&mut self) {
        self.start_server();
    }
}

impl Outage for redis_common::TempRedis {
    fn stop(&mut self) {
        self.kill();
    }
    fn start(&mut self) {
        self.start_server();
    }
}

/// Under load, the store goes away and comes back: while it is away every
/// session call answers 503 `store_unavailable` and `/readyz` 503; no
/// revoked or unknown token is ever answered valid; afterwards the server
/// recovers by itself. Returns how long recovery took after the store was back.
async fn outage_under_load(server: &Server, store: &mut dyn Outage) -> Duration {
    let (live, _) = create(server, Some("carol")).await;
    let (revoked, _) = create(server, Some("carol")).await;
    let (status, _) = call(
        server,
        "POST",
        "/v1/sessions/logout",
        Some(json!({"token": revoked})),
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(readyz(server).await, 200);

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Observed::default());
    let load: Vec<_> = (0..6)
        .map(|_| {
            spawn_load(
                server,
                live.clone(),
                revoked.clone(),
                stop.clone(),
                seen.clone(),
            )
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    store.stop();
    let down_since = Instant::now();
    // Fails closed: readiness turns 503 and validation answers 503.
    let mut ready = readyz(server).await;
    while ready != 503 && down_since.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        ready = readyz(server).await;
    }
    assert_eq!(ready, 503, "/readyz while the store is down");
    let (status, body) = validate(server, &live).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], json!("store_unavailable"));
    tokio::time::sleep(Duration::from_secs(1)).await;

    store.start();
    let back_at = Instant::now();
    loop {
        let (status, _) = validate(server, &live).await;
        if status == 200 {
            break;
        }
        assert!(
            back_at.elapsed() < Duration::from_secs(30),
            "tesserad never recovered after the store came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let recovered_in = back_at.elapsed();
    let mut ready = readyz(server).await;
    while ready != 200 && back_at.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        ready = readyz(server).await;
    }
    assert_eq!(ready, 200, "/readyz after recovery");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.expect("load task");
    }

    let unexpected = seen.unexpected.lock().expect("lock").clone();
    println!(
        "outage: {} answers, {} × 503, recovered {:?} after the store came back",
        seen.answers.load(Ordering::Relaxed),
        seen.unavailable.load(Ordering::Relaxed),
        recovered_in
    );
    assert_eq!(
        seen.wrongly_valid.load(Ordering::Relaxed),
        0,
        "a revoked or unknown token was answered valid"
    );
    assert!(unexpected.is_empty(), "unexpected answers: {unexpected:?}");
    assert!(
        seen.unavailable.load(Ordering::Relaxed) > 0,
        "the outage was seen"
    );
    assert_eq!(validate(server, &revoked).await.0, 401);
    recovered_in
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_outage_under_load_fails_closed_and_recovers() {
    let mut database = temp_pg::TempPostgres::start();
    let url = format!(
        "{}?operation_timeout_ms=1000&connect_timeout_ms=1000",
        database.url()
    );
    let server = start_on(&url);
    outage_under_load(&server, &mut database).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_outage_under_load_fails_closed_and_recovers() {
    // Persistent, so that sessions outlive the restart.
    let mut redis =
        redis_common::TempRedis::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let url = format!("{}?operation_timeout_ms=500", redis.url());
    let server = start_on(&url);
    outage_under_load(&server, &mut redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_outage_with_near_cache_never_serves_from_a_stale_cache() {
    // Persistent, so that sessions outlive the restart.
    let mut redis =
        redis_common::TempRedis::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let url = format!("{}?operation_timeout_ms=500", redis.url());
    let server = start_with(&url, &["--near-cache"]);
    outage_under_load(&server, &mut redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_tesserad_nodes_share_sessions_on_redis() {
    let redis = redis_common::TempRedis::start();
    let a = start_on(&redis.url());
    let b = start_on(&redis.url());
    many_nodes_share_one_store(&a, &b, Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_tesserad_nodes_share_sessions_on_a_redis_cluster() {
    let cluster = redis_common::TempCluster::start();
    let a = start_on(&cluster.url());
    let b = start_on(&cluster.url());
    many_nodes_share_one_store(&a, &b, Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_tesserad_nodes_with_near_caches_share_sessions_on_redis() {
    let redis = redis_common::TempRedis::start();
    let a = start_with(&redis.url(), &["--near-cache"]);
    let b = start_with(&redis.url(), &["--near-cache"]);
    // Give both caches time to subscribe.
    tokio::time::sleep(Duration::from_millis(500)).await;
    many_nodes_share_one_store(&a, &b, Duration::from_secs(2)).await;

    // How long a revocation on one node takes to reach the other's cache:
    // B validates (and caches) a session, A revokes it, B polls.
    let mut delays = Vec::new();
    for _ in 0..100 {
        let (token, session) = create(&a, Some("dave")).await;
        let id = session["id"].as_str().expect("id").to_owned();
        for _ in 0..2 {
            assert_eq!(validate(&b, &token).await.0, 200);
        }
        let (status, _) = call(&a, "DELETE", &format!("/v1/sessions/{id}"), None).await;
        assert_eq!(status, 204);
        let revoked_at = Instant::now();
        while validate(&b, &token).await.0 == 200 {
            assert!(
                revoked_at.elapsed() < Duration::from_secs(2),
                "B kept serving a session revoked on A"
            );
        }
        delays.push(revoked_at.elapsed());
    }
    delays.sort();
    println!(
        "near cache: a revocation on A was refused by B after p50 {:?}, p99 {:?}, max {:?}",
        delays[49], delays[98], delays[99]
    );
}

/// Creates sessions in an embedded store directly (as a server would
/// have); returns their tokens.
async fn fill_embedded(dir: &Path, count: usize) -> Vec<String> {
    let store = tessera::embedded::EmbeddedStore::open(dir).expect("open the embedded store");
    let manager = SessionManager::builder(store.clone())
        .build()
        .expect("manager");
    let mut tokens = Vec::with_capacity(count);
    for n in 0..count {
        let issued = manager
            .create(NewSession::anonymous().subject(format!("user-{}", n % 10)))
            .await
            .expect("create");
        let token = issued.issued().expect("a token").expose().to_owned();
        if n % 3 == 0 {
            manager
                .update(
                    &issued,
                    tessera::DataChange::MergePatch(json!({"n": n})),
                    None,
                    None,
                )
                .await
                .expect("update");
        }
        tokens.push(token);
    }
    drop(manager);
    store.close().expect("close");
    tokens
}

fn migrate(args: &[&str]) -> String {
    let output = tesserad_command()
        .arg("migrate")
        .args(args)
        .arg("--quiet")
        .output()
        .expect("run tesserad migrate");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "tesserad migrate {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The number before `label` in a migrate summary line.
fn count(summary: &str, label: &str) -> u64 {
    summary
        .split(", ")
        .chain(summary.split(": "))
        .find_map(|part| {
            part.trim()
                .strip_suffix(label)?
                .trim()
                .rsplit(' ')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no `{label}` in `{summary}`"))
}

/// Checks every token against a store: valid, with the data it had.
async fn all_valid(store: Arc<dyn SessionStore>, tokens: &[String]) {
    let manager = SessionManager::builder_shared(store)
        .build()
        .expect("manager");
    for (n, token) in tokens.iter().enumerate() {
        let valid = manager
            .validate(token, None)
            .await
            .unwrap_or_else(|e| panic!("token {n} does not validate after the copy: {e}"));
        assert_eq!(
            valid.record().subject.as_deref(),
            Some(format!("user-{}", n % 10).as_str())
        );
        if n % 3 == 0 {
            assert_eq!(valid.record().data.get::<usize>("n"), Some(n));
            assert_eq!(valid.record().version, 2);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_copies_embedded_to_postgres_and_back_resumably() {
    let source_dir = temp_dir("migrate-from");
    let tokens = fill_embedded(&source_dir, 1000).await;
    let embedded = format!("embedded:{}", source_dir.display());
    let postgres = postgres_url("migrate");

    let summary = migrate(&["--from", &embedded, "--to", &postgres, "--page-size", "64"]);
    assert!(summary.starts_with("migrated 1000 sessions"), "{summary}");
    assert_eq!(count(&summary, "created"), 1000, "{summary}");
    let pg = tessera::postgres::PostgresStore::connect(&postgres)
        .await
        .expect("connect");
    all_valid(Arc::new(pg.clone()), &tokens).await;

    // Safe to run twice: everything is already there.
    let again = migrate(&["--from", &embedded, "--to", &postgres]);
    assert_eq!(count(&again, "created"), 0, "{again}");
    assert_eq!(count(&again, "already current"), 1000, "{again}");

    // And back, from PostgreSQL into a new embedded store.
    let back_dir = temp_dir("migrate-back");
    let back = format!("embedded:{}", back_dir.display());
    let summary = migrate(&["--from", &postgres, "--to", &back]);
    assert_eq!(count(&summary, "created"), 1000, "{summary}");
    let returned = tessera::embedded::EmbeddedStore::open(&back_dir).expect("open");
    all_valid(Arc::new(returned.clone()), &tokens).await;
    returned.close().expect("close");

    // Resumable: a checkpoint left after the first 400 sessions makes the
    // next run copy only the rest.
    let resumed = postgres_url("resume");
    let source = tessera::embedded::EmbeddedStore::open(&source_dir).expect("open");
    let first = source
        .export_page(None, 400, SystemClock.now())
        .await
        .expect("export");
    source.close().expect("close");
    let cursor = first.next.expect("more than one page");
    let checkpoint = temp_dir("checkpoint").join("migrate.json");
    std::fs::write(
        &checkpoint,
        json!({"from": embedded, "to": resumed, "cursor": cursor,
               "done": {"created": 400, "updated": 0, "unchanged": 0, "revoked": 0, "conflicts": 0}})
        .to_string(),
    )
    .expect("write checkpoint");
    let checkpoint_arg = checkpoint.display().to_string();
    let summary = migrate(&[
        "--from",
        &embedded,
        "--to",
        &resumed,
        "--checkpoint",
        &checkpoint_arg,
        "--page-size",
        "50",
    ]);
    assert_eq!(
        count(&summary, "created"),
        1000,
        "400 before the checkpoint + 600: {summary}"
    );
    assert!(
        !checkpoint.exists(),
        "a complete copy removes its checkpoint"
    );
    let partial = tessera::postgres::PostgresStore::connect(&resumed)
        .await
        .expect("connect");
    let now = SystemClock.now();
    for record in &first.items {
        assert!(
            partial.load(&record.id, now).await.expect("load").is_none(),
            "sessions before the checkpoint were not copied again"
        );
    }
    let summary = migrate(&["--from", &embedded, "--to", &resumed]);
    assert_eq!(count(&summary, "created"), 400, "{summary}");
    all_valid(Arc::new(partial.clone()), &tokens).await;
    let id = SessionToken::parse(&tokens[0])
        .expect("token")
        .session_id()
        .expect("a current token names its session");
    let stored = partial.load(&id, now).await.expect("load");
    assert!(stored.is_some());

    // On into Redis, the path of a deployment outgrowing one machine.
    let redis = redis_common::TempRedis::start();
    let summary = migrate(&["--from", &postgres, "--to", &redis.url()]);
    assert_eq!(count(&summary, "created"), 1000, "{summary}");
    let in_redis = tessera::redis::RedisStore::connect(&redis.url())
        .await
        .expect("connect");
    all_valid(Arc::new(in_redis), &tokens).await;

    // Copying a store onto itself is refused.
    let output = tesserad_command()
        .args(["migrate", "--from", &postgres, "--to", &postgres])
        .output()
        .expect("run");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("same store"));

    drop_schema(&postgres).await;
    drop_schema(&resumed).await;
    let _ = std::fs::remove_dir_all(&source_dir);
    let _ = std::fs::remove_dir_all(&back_dir);
}
