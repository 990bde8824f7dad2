//! Failure behaviour: a dead, hung or slow Redis makes operations fail as
//! unavailable (never hang, never answer), and the same store recovers when
//! Redis is back.

mod common;

use std::time::Duration;

use common::{DelayingProxy, TempRedis};
use tessera_core::store::{Records, StoreError};
use tessera_core::{NewSession, SessionId, SessionManager, Timestamp};
use tessera_redis::{RedisConfig, RedisStore};

/// A write of `value` as a merge patch into the session `valid`.
async fn write(
    manager: &SessionManager,
    valid: &tessera_core::ActiveSession,
    value: serde_json::Value,
) -> Result<tessera_core::ActiveSession, tessera_core::SessionError> {
    let change = tessera_core::DataChange::MergePatch(value);
    manager.update(valid, change, None, None).await
}

/// Generous: only catches an operation that hangs instead of failing.
const HANG: Duration = Duration::from_secs(20);

async fn store_at(url: &str) -> RedisStore {
    let config = RedisConfig::from_url(url)
        .expect("url")
        .operation_timeout(Duration::from_millis(500))
        .connect_timeout(Duration::from_millis(500));
    RedisStore::connect_with(config).await.expect("connect")
}

async fn load_outcome(store: &RedisStore) -> Result<(), StoreError> {
    let id = SessionId::generate().expect("id");
    tokio::time::timeout(HANG, store.load(&id, Timestamp(0)))
        .await
        .expect("the operation returned instead of hanging")
        .map(drop)
}

async fn wait_until_answering(store: &RedisStore, what: &str) {
    let started = std::time::Instant::now();
    while store.ping().await.is_err() {
        assert!(started.elapsed() < HANG, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_redis_is_unavailable_and_the_store_recovers_on_restart() {
    let mut server = TempRedis::start();
    let store = store_at(&server.url()).await;
    let manager = SessionManager::builder(store.clone())
        .build()
        .expect("manager");
    let created = manager.create(NewSession::default()).await.expect("create");
    let token = created.issued().expect("token").expose().to_owned();

    server.kill();
    for _ in 0..5 {
        let asked = std::time::Instant::now();
        let outcome = load_outcome(&store).await;
        println!("unavailable after {:?}", asked.elapsed());
        assert!(
            matches!(outcome, Err(StoreError::Unavailable { .. })),
            "a dead Redis must make the store unavailable, got {outcome:?}"
        );
    }
    let validated = tokio::time::timeout(HANG, manager.validate(&token, None))
        .await
        .expect("validation returned");
    assert!(
        validated.is_err(),
        "no session is valid while Redis is down"
    );
    assert!(store.ping().await.is_err(), "readiness fails");

    // Same port, same store object: it reconnects by itself, and loads
    // its scripts again into the new (empty) server.
    server.start_server();
    let started = std::time::Instant::now();
    wait_until_answering(&store, "the store did not reconnect").await;
    println!(
        "answering again {:?} after redis-server answered PING",
        started.elapsed()
    );
    load_outcome(&store).await.expect("loads again");
    let created = manager
        .create(NewSession::default())
        .await
        .expect("create after restart");
    let token = created.issued().expect("token").expose().to_owned();
    let valid = manager
        .validate(&token, None)
        .await
        .expect("validates after restart");
    write(&manager, &valid, serde_json::json!({"after": "restart"}))
        .await
        .expect("a script runs after restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_redis_times_out_as_unavailable() {
    let server = TempRedis::start();
    let store = store_at(&server.url()).await;
    store.ping().await.expect("ping");
    server.pause();
    // Many at once: each fails on its own timeout, none waits for another.
    let attempts: Vec<_> = (0..32)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { load_outcome(&store).await })
        })
        .collect();
    for attempt in attempts {
        let outcome = attempt.await.expect("task");
        assert!(
            matches!(outcome, Err(StoreError::Unavailable { .. })),
            "a hung Redis must make the store unavailable, got {outcome:?}"
        );
    }
    server.resume();
    wait_until_answering(&store, "the store did not recover").await;
    load_outcome(&store).await.expect("loads again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_link_answers_within_the_timeout_and_fails_beyond_it() {
    let server = TempRedis::start();
    let proxy = DelayingProxy::start(server.port()).await;
    let store = store_at(&format!("redis://127.0.0.1:{}", proxy.port())).await;
    let manager = SessionManager::builder(store.clone())
        .build()
        .expect("manager");
    let created = manager.create(NewSession::default()).await.expect("create");
    let token = created.issued().expect("token").expose().to_owned();

    // Slow but within the 500 ms timeout: everything still works.
    proxy.set_delay(Duration::from_millis(100));
    let valid = manager
        .validate(&token, None)
        .await
        .expect("a slow validation");
    write(&manager, &valid, serde_json::json!({"slow": true}))
        .await
        .expect("a slow update");

    // Beyond the timeout: unavailable, each operation on its own clock.
    proxy.set_delay(Duration::from_secs(2));
    let attempts: Vec<_> = (0..16)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let asked = std::time::Instant::now();
                (load_outcome(&store).await, asked.elapsed())
            })
        })
        .collect();
    for attempt in attempts {
        let (outcome, took) = attempt.await.expect("task");
        assert!(
            matches!(outcome, Err(StoreError::Unavailable { .. })),
            "a link slower than the timeout must make the store unavailable, got {outcome:?}"
        );
        assert!(took < Duration::from_millis(1500), "failed after {took:?}");
    }
    assert!(
        manager.validate(&token, None).await.is_err(),
        "no session is valid while Redis does not answer in time"
    );

    proxy.set_delay(Duration::ZERO);
    wait_until_answering(&store, "the store did not recover from the slow link").await;
    manager
        .validate(&token, None)
        .await
        .expect("validates once the link is fast again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_opened_lazily_while_redis_is_down_works_once_it_is_up() {
    let port = common::free_port(u16::MAX);
    let config = RedisConfig::from_url(&format!("redis://127.0.0.1:{port}"))
        .expect("url")
        .operation_timeout(Duration::from_millis(500))
        .connect_timeout(Duration::from_millis(500));
    let store = RedisStore::connect_lazy(config).await.expect("lazy store");
    assert!(matches!(
        load_outcome(&store).await,
        Err(StoreError::Unavailable { .. })
    ));
    let _server = TempRedis::start_on(port, &[]);
    wait_until_answering(&store, "the store did not connect").await;
    load_outcome(&store).await.expect("loads");
}
