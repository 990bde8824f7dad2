//! A store that answers slowly trips the request timeout: tesserad answers
//! `503 store_unavailable` instead of letting requests pile up behind the
//! store, `/readyz` says so, and everything recovers by itself once the
//! store is quick again.
//!
//! The store is PostgreSQL (trust auth on 127.0.0.1:5432, database `test`,
//! or `TESSERA_TEST_POSTGRES_URL`'s server; see
//! `scripts/setup/postgres.sh`), or a private redis-server, reached through
//! a TCP proxy in the test that can hold every packet for [`DELAY`].

#[path = "../../tessera-redis/tests/common/mod.rs"]
mod redis_common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use tessera::SessionManager;
use tessera::postgres::{PostgresConfig, PostgresStore};
use tessera::redis::{RedisConfig, RedisStore};
use tessera::store::SessionStore;
use tesserad::api::{AppState, HttpLimits, router};
use tesserad::keys::ApiKeys;
use tesserad::metrics::{Metrics, MetricsEventSink};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

const KEY: &str = "slow-store-key";
/// How long the proxy holds each packet while slow.
const DELAY: Duration = Duration::from_secs(3);
/// tesserad's `--request-timeout` in this test.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
/// Concurrent requests sent while the store is slow.
const CONCURRENT: usize = 40;

fn postgres_address() -> String {
    let url = std::env::var("TESSERA_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let config: tokio_postgres::Config = url.parse().expect("PostgreSQL URL");
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("127.0.0.1:{port}")
}

/// A TCP proxy to `upstream` that delays everything while `slow` is set.
async fn start_proxy(upstream: String, slow: Arc<AtomicBool>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let upstream = upstream.clone();
            let slow = slow.clone();
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    return;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pipe(client_read, server_write, slow.clone()));
                pipe(server_read, client_write, slow).await;
            });
        }
    });
    port
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    slow: Arc<AtomicBool>,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if slow.load(Ordering::SeqCst) {
            tokio::time::sleep(DELAY).await;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

async fn call(
    router: &Router,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {KEY}"))
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .expect("request");
    let response = router.clone().oneshot(request).await.expect("response");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_store_trips_the_request_timeout_and_recovers() {
    let slow = Arc::new(AtomicBool::new(false));
    let port = start_proxy(postgres_address(), slow.clone()).await;
    let schema = format!("tsst_slow_{}", std::process::id());
    let config = PostgresConfig::from_url(&format!("postgres://postgres@127.0.0.1:{port}/test"))
        .expect("config")
        .schema(&schema)
        .max_connections(4)
        // The store's own limit is longer than the request timeout, so the
        // answers below come from tesserad's timeout.
        .operation_timeout(Duration::from_secs(30));
    let store = PostgresStore::connect_with(config).await.unwrap_or_else(|e| {
        panic!("cannot open a PostgreSQL store through the proxy ({e}); run scripts/setup/postgres.sh")
    });
    slow_store_answers_from_the_timeout(Arc::new(store), &slow).await;

    let (admin, connection) = tokio_postgres::connect(
        &format!("postgres://postgres@{}/test", postgres_address()),
        tokio_postgres::NoTls,
    )
    .await
    .expect("admin connection");
    tokio::spawn(connection);
    admin
        .batch_execute(&format!(r#"DROP SCHEMA IF EXISTS "{schema}" CASCADE"#))
        .await
        .expect("drop schema");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_redis_trips_the_request_timeout_and_recovers() {
    let redis = redis_common::TempRedis::start();
    let slow = Arc::new(AtomicBool::new(false));
    let port = start_proxy(format!("127.0.0.1:{}", redis.port()), slow.clone()).await;
    let config = RedisConfig::from_url(&format!("redis://127.0.0.1:{port}"))
        .expect("config")
        // Longer than the request timeout, so the answers below come from
        // tesserad's timeout.
        .operation_timeout(Duration::from_secs(30));
    let store = RedisStore::connect_with(config)
        .await
        .expect("a Redis store through the proxy");
    slow_store_answers_from_the_timeout(Arc::new(store), &slow).await;
}

/// With the store slow, concurrent requests all answer 503 from the request
/// timeout and `/readyz` 503; once it is quick again, everything works.
async fn slow_store_answers_from_the_timeout(store: Arc<dyn SessionStore>, slow: &AtomicBool) {
    let metrics = Arc::new(Metrics::new(None));
    let manager = SessionManager::builder_shared(store)
        .events(MetricsEventSink::new(metrics.clone()))
        .build()
        .expect("manager");
    let state = AppState::new(
        manager,
        Arc::new(ApiKeys::new(Some(KEY), None).expect("keys")),
    )
    .metrics(metrics)
    .store_description("slow store");
    let router = router(
        state,
        HttpLimits {
            request_timeout: REQUEST_TIMEOUT,
            ..HttpLimits::default()
        },
    );

    let (status, body) = call(
        &router,
        "POST",
        "/v1/sessions/login",
        Some(json!({"subject": "ann"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = body["token"].as_str().expect("token").to_owned();
    assert_eq!(
        call(&router, "GET", "/readyz", None).await.0,
        StatusCode::OK
    );

    // The store turns slow: every request gets its answer from the timeout.
    slow.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let requests: Vec<_> = (0..CONCURRENT)
        .map(|n| {
            let router = router.clone();
            let token = token.clone();
            tokio::spawn(async move {
                match n % 3 {
                    0 => {
                        call(
                            &router,
                            "POST",
                            "/v1/sessions/validate",
                            Some(json!({"token": token})),
                        )
                        .await
                    }
                    1 => {
                        call(
                            &router,
                            "POST",
                            "/v1/sessions",
                            Some(json!({"subject": format!("s{n}")})),
                        )
                        .await
                    }
                    _ => {
                        call(
                            &router,
                            "POST",
                            "/v1/sessions/update",
                            Some(json!({"token": token, "patch": {"n": n}})),
                        )
                        .await
                    }
                }
            })
        })
        .collect();
    for request in requests {
        let (status, body) = request.await.expect("request");
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["error"], "store_unavailable");
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.contains("took longer than")),
            "answered by the request timeout, not by the store: {body}"
        );
    }
    eprintln!(
        "{CONCURRENT} requests to a store delayed by {DELAY:?} all answered 503 in {:?} (timeout {REQUEST_TIMEOUT:?})",
        started.elapsed()
    );
    let (status, body) = call(&router, "GET", "/readyz", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");

    // Quick again: ready and serving without a restart, once the delayed
    // packets have drained.
    slow.store(false, Ordering::SeqCst);
    let mut ready = false;
    for _ in 0..60 {
        if call(&router, "GET", "/readyz", None).await.0 == StatusCode::OK {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        ready,
        "/readyz never answered 200 after the store was quick again"
    );
    let (status, body) = call(
        &router,
        "POST",
        "/v1/sessions/validate",
        Some(json!({"token": token})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["session"]["subject"], "ann");
}
