//! A network partition between the store and PostgreSQL, made by a TCP
//! proxy that silently stops forwarding: operations time out as
//! unavailable, and once the network heals the store drops the connections
//! stuck on the vanished peer and recovers without a restart.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{Schemas, base_url, config_at, now, sample_record};
use tessera_core::forget_at;
use tessera_core::store::{Records, StoreError};
use tessera_postgres::{PostgresConfig, PostgresStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Forwards loopback TCP to the test database until partitioned. A
/// partition swallows every byte without closing anything, like a peer that
/// vanished; healing lets new connections through while the old ones stay
/// swallowed.
struct Proxy {
    port: u16,
    partitioned: Arc<AtomicBool>,
    generation: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    partitioned: Arc<AtomicBool>,
    generation: Arc<AtomicU64>,
    born: u64,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if partitioned.load(Ordering::SeqCst) || generation.load(Ordering::SeqCst) != born {
            // Hold both halves open and forward nothing, ever.
            std::future::pending::<()>().await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl Proxy {
    async fn start(upstream: std::net::SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let partitioned = Arc::new(AtomicBool::new(false));
        let generation = Arc::new(AtomicU64::new(0));
        let (p, g) = (partitioned.clone(), generation.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let born = g.load(Ordering::SeqCst);
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pump(client_read, server_write, p.clone(), g.clone(), born));
                tokio::spawn(pump(server_read, client_write, p.clone(), g.clone(), born));
            }
        });
        Self {
            port,
            partitioned,
            generation,
            task,
        }
    }

    fn partition(&self) {
        self.partitioned.store(true, Ordering::SeqCst);
    }

    fn heal(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.partitioned.store(false, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_silent_partition_the_store_drops_stuck_connections_and_recovers() {
    let schemas = Schemas::new("part");
    let schema = schemas.name();
    let direct = config_at(&schema);
    tessera_postgres::migrate(&direct).await.expect("migrate");
    // The proxy stands between the store and the test database.
    let upstream: tokio_postgres::Config = base_url().parse().expect("test URL");
    let port = upstream.get_ports().first().copied().unwrap_or(5432);
    let proxy = Proxy::start(([127, 0, 0, 1], port).into()).await;
    let mut proxied = tokio_postgres::Config::new();
    proxied
        .host("127.0.0.1")
        .port(proxy.port)
        .user(upstream.get_user().unwrap_or("postgres"))
        .dbname(upstream.get_dbname().unwrap_or("test"));
    let config = PostgresConfig::new(proxied)
        .schema(&schema)
        .connect_timeout(Duration::from_millis(500))
        .operation_timeout(Duration::from_millis(700))
        .max_connections(2)
        .run_migrations(false);
    let store = PostgresStore::connect_with(config).await.expect("store");
    let now = now();
    let record = sample_record(&store, None);
    let key = record.id;
    store
        .create(&record, forget_at(&record))
        .await
        .expect("create");
    // Two pooled connections in use, so both are stuck after the partition.
    let (a, b) = tokio::join!(store.load(&key, now), store.load(&key, now));
    assert!(a.is_ok() && b.is_ok(), "loads before the partition");

    proxy.partition();
    for _ in 0..3 {
        let load = store.load(&key, now).await;
        assert!(
            matches!(load, Err(StoreError::Unavailable { .. })),
            "a partitioned store is unavailable, got {load:?}"
        );
    }

    proxy.heal();
    let mut recovered = None;
    for attempt in 0..20 {
        if let Ok(Some(_)) = store.load(&key, now).await {
            recovered = Some(attempt);
            break;
        }
    }
    assert!(
        recovered.is_some(),
        "the store must replace the connections stuck on the vanished peer"
    );
    proxy.task.abort();
    schemas.drop_all().await;
}
