//! Failure behaviour: a dead or hung Redis makes operations fail as
//! unavailable (never hang, never answer), and the same store recovers when
//! Redis is back.

mod common;

use std::time::Duration;

use common::TempRedis;
use tessera_core::{NewSession, SessionManager, SessionStore, SessionToken, StoreError, Timestamp};
use tessera_redis::{RedisConfig, RedisStore};

/// Generous: only catches an operation that hangs instead of failing.
const HANG: Duration = Duration::from_secs(20);

async fn store_on(server: &TempRedis) -> RedisStore {
    let config = RedisConfig::from_url(&server.url())
        .expect("url")
        .operation_timeout(Duration::from_millis(500))
        .connect_timeout(Duration::from_millis(500));
    RedisStore::connect_with(config).await.expect("connect")
}

async fn load_outcome(store: &RedisStore) -> Result<(), StoreError> {
    let key = SessionToken::generate().expect("token").hash();
    tokio::time::timeout(HANG, store.load(&key, Timestamp(0)))
        .await
        .expect("the operation returned instead of hanging")
        .map(drop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_redis_is_unavailable_and_the_store_recovers_on_restart() {
    let mut server = TempRedis::start();
    let store = store_on(&server).await;
    let manager = SessionManager::builder(store.clone())
        .build()
        .expect("manager");
    let issued = manager.create(NewSession::default()).await.expect("create");

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
    let validated = tokio::time::timeout(HANG, manager.validate(issued.token.expose(), None))
        .await
        .expect("validation returned");
    assert!(
        validated.is_err(),
        "no session is valid while Redis is down"
    );
    assert!(store.ping().await.is_err(), "readiness fails");

    // Same port, same store object: it reconnects by itself.
    server.start_server();
    let started = std::time::Instant::now();
    while store.ping().await.is_err() {
        assert!(started.elapsed() < HANG, "the store did not reconnect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "answering again {:?} after redis-server answered PING",
        started.elapsed()
    );
    load_outcome(&store).await.expect("loads again");
    let issued = manager
        .create(NewSession::default())
        .await
        .expect("create after restart");
    manager
        .validate(issued.token.expose(), None)
        .await
        .expect("validates after restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_redis_times_out_as_unavailable() {
    let server = TempRedis::start();
    let store = store_on(&server).await;
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
    let started = std::time::Instant::now();
    while store.ping().await.is_err() {
        assert!(started.elapsed() < HANG, "the store did not recover");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    load_outcome(&store).await.expect("loads again");
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
    let started = std::time::Instant::now();
    while store.ping().await.is_err() {
        assert!(started.elapsed() < HANG, "the store did not connect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    load_outcome(&store).await.expect("loads");
}
