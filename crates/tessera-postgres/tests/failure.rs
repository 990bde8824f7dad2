//! Failure behaviour against a private PostgreSQL server that the test stops
//! and starts: operations fail as unavailable, never as a valid (or an
//! unknown) session, and the pool recovers by itself.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::temp_pg::TempPostgres;
use tessera_core::store::{Epochs, Maintenance, Records, StoreError, SubjectIndex};
use tessera_core::{NewSession, SessionError, SessionId, SessionManager, Timestamp, forget_at};
use tessera_postgres::{PostgresConfig, PostgresError, PostgresStore};

fn is_unavailable(result: &Result<impl std::fmt::Debug, StoreError>) -> bool {
    matches!(result, Err(StoreError::Unavailable { .. }))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_fails_closed_and_the_pool_recovers_by_itself() {
    let pg = Arc::new(blocking(TempPostgres::start).await);
    let config = PostgresConfig::from_url(&pg.url())
        .expect("url")
        .connect_timeout(Duration::from_millis(500))
        .operation_timeout(Duration::from_secs(2))
        .max_connections(4);
    let store = PostgresStore::connect_with(config)
        .await
        .expect("store on the private server");
    let manager = SessionManager::builder(store.clone())
        .build()
        .expect("manager");
    let live = manager.create(NewSession::default()).await.expect("create");
    let live_token: Arc<str> = live.issued().expect("token").expose().into();
    let revoked = manager.create(NewSession::default()).await.expect("create");
    manager.revoke(&revoked.record().id).await.expect("revoke");
    let revoked_token: Arc<str> = revoked.issued().expect("token").expose().into();

    // Validators keep running through the outage.
    let stop = Arc::new(AtomicBool::new(false));
    let (valid, unavailable) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (manager, stop) = (manager.clone(), stop.clone());
        let (valid, unavailable) = (valid.clone(), unavailable.clone());
        let (live_token, revoked_token) = (live_token.clone(), revoked_token.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match manager.validate(&revoked_token, None).await {
                    Ok(_) => panic!("a revoked session validated"),
                    Err(SessionError::Invalid { .. } | SessionError::Store(_)) => {}
                    Err(other) => panic!("unexpected error for a revoked token: {other}"),
                }
                match manager.validate(&live_token, None).await {
                    Ok(_) => valid.fetch_add(1, Ordering::Relaxed),
                    Err(SessionError::Store(StoreError::Unavailable { .. })) => {
                        unavailable.fetch_add(1, Ordering::Relaxed)
                    }
                    Err(other) => panic!("the live session must be valid or unavailable: {other}"),
                };
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }));
    }

    let server = pg.clone();
    blocking(move || server.stop_server()).await;
    let now = Timestamp(0);
    let id = SessionId([5; 16]);
    assert!(is_unavailable(&store.load(&id, now).await), "load");
    assert!(is_unavailable(&store.ping().await), "ping");
    assert!(is_unavailable(&store.global_epoch().await), "epoch");
    assert!(is_unavailable(&store.sweep_expired(now).await), "sweep");
    assert!(
        is_unavailable(&store.list_subject("x", None, 10, now).await),
        "list"
    );
    match manager.validate(&live_token, None).await {
        Err(SessionError::Store(StoreError::Unavailable { .. })) => {}
        other => panic!("validation while the database is down must fail closed, got {other:?}"),
    }
    let unavailable_seen = unavailable.load(Ordering::Relaxed);

    let server = pg.clone();
    blocking(move || server.start_server()).await;
    let mut recovered = false;
    for _ in 0..300 {
        if store.ping().await.is_ok() {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(recovered, "the same store answers again after the restart");
    let after = manager
        .validate(&live_token, None)
        .await
        .expect("the session survived the restart");
    assert_eq!(after.record().id, live.record().id);
    let valid_before = valid.load(Ordering::Relaxed);
    for _ in 0..300 {
        if valid.load(Ordering::Relaxed) > valid_before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.expect("validator");
    }
    assert!(
        unavailable_seen > 0,
        "validators saw the outage as unavailable"
    );
    assert!(
        valid.load(Ordering::Relaxed) > valid_before,
        "validators recovered without a restart"
    );
}

/// A server that accepts connections and never answers.
async fn silent_server() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (port, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unresponsive_server_times_out_as_unavailable() {
    let (port, server) = silent_server().await;
    let config = PostgresConfig::from_url(&format!("postgres://postgres@127.0.0.1:{port}/test"))
        .expect("url")
        .connect_timeout(Duration::from_millis(300))
        .operation_timeout(Duration::from_millis(600));
    // The outer limits only catch a hang; the store's own timeouts answer first.
    let guard = Duration::from_secs(60);
    match tokio::time::timeout(guard, PostgresStore::connect_with(config.clone())).await {
        Ok(Err(PostgresError::Unavailable(StoreError::Unavailable { .. }))) => {}
        other => panic!("connecting to a silent server must fail as unavailable, got {other:?}"),
    }
    let lazy = PostgresStore::connect_lazy(config).expect("lazy store");
    let load = tokio::time::timeout(guard, lazy.load(&SessionId([1; 16]), Timestamp(0)))
        .await
        .expect("the store's timeout answers");
    assert!(is_unavailable(&load), "got {load:?}");
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_unavailable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let config = PostgresConfig::from_url(&format!("postgres://postgres@127.0.0.1:{port}/test"))
        .expect("url");
    let lazy = PostgresStore::connect_lazy(config).expect("lazy store");
    let record = common::sample_record(&lazy, None);
    let result = lazy.create(&record, forget_at(&record)).await;
    assert!(is_unavailable(&result), "got {result:?}");
}
