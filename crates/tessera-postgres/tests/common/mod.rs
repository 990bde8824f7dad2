//! Helpers shared by the integration tests: fresh schemas on the test
//! database, and a private PostgreSQL server for failure tests.
#![allow(dead_code)]

pub mod temp_pg;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use tessera_core::testkit::Harness;
use tessera_core::{SessionRecord, Timestamp};
use tessera_postgres::{PostgresConfig, PostgresStore};

/// A record for direct store calls: a fresh id and token, times around now.
pub fn sample_record(store: &PostgresStore, subject: Option<&str>) -> SessionRecord {
    Harness::new(Arc::new(store.clone())).sample_record(subject)
}

/// The wall clock as a timestamp.
pub fn now() -> Timestamp {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis();
    Timestamp(i64::try_from(millis).expect("millis fit"))
}

/// The shared test database (trust auth on 127.0.0.1:5432, database `test`),
/// or `TESSERA_TEST_POSTGRES_URL`.
///
/// Test connections turn `synchronous_commit` off: a commit then does not
/// wait for its WAL flush (several milliseconds on this kind of disk), which
/// would otherwise dominate the contended compare-and-swap cases. It changes
/// durability after a crash only, not what any statement sees.
pub fn base_url() -> String {
    std::env::var("TESSERA_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        "postgres://postgres@127.0.0.1:5432/test?options=-c%20synchronous_commit%3Doff".to_owned()
    })
}

/// A schema name no other test (in this or another process) uses.
pub fn unique_schema(tag: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "tsst_{tag}_{}_{nanos}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A plain connection to the test database, for setup and inspection.
pub async fn admin() -> tokio_postgres::Client {
    admin_at(&base_url()).await
}

/// A plain connection to a database.
pub async fn admin_at(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!("cannot reach PostgreSQL at {url} ({e}); run scripts/setup/postgres.sh")
        });
    tokio::spawn(connection);
    client
}

/// Runs one statement without parameters on the test database.
pub async fn admin_execute(sql: &str, what: &str) {
    admin().await.execute(sql, &[]).await.expect(what);
}

/// The number of rows of `table` in `schema`.
pub async fn count_rows(schema: &str, table: &str) -> i64 {
    admin()
        .await
        .query_one(&format!(r#"SELECT count(*) FROM "{schema}".{table}"#), &[])
        .await
        .expect("count")
        .get(0)
}

/// Settings for `schema` on the test database.
pub fn config_at(schema: &str) -> PostgresConfig {
    PostgresConfig::from_url(&base_url())
        .expect("test URL")
        .schema(schema)
}

/// Schemas made by one test, all dropped by [`Schemas::drop_all`].
#[derive(Clone)]
pub struct Schemas {
    tag: &'static str,
    made: Arc<Mutex<Vec<String>>>,
}

impl Schemas {
    /// A new set; `tag` goes into every schema name.
    pub fn new(tag: &'static str) -> Self {
        Self {
            tag,
            made: Arc::default(),
        }
    }

    /// A new, unique schema name, remembered for dropping.
    pub fn name(&self) -> String {
        let name = unique_schema(self.tag);
        self.made.lock().expect("schema list").push(name.clone());
        name
    }

    /// Settings for a fresh schema on the test database.
    pub fn config(&self) -> PostgresConfig {
        config_at(&self.name())
    }

    /// A store over a fresh schema.
    pub async fn fresh_store(&self) -> PostgresStore {
        self.fresh_store_with(8).await
    }

    /// A store over a fresh schema with a pool of `connections`.
    pub async fn fresh_store_with(&self, connections: usize) -> PostgresStore {
        PostgresStore::connect_with(self.config().max_connections(connections))
            .await
            .unwrap_or_else(|e| {
                panic!("cannot open a PostgreSQL store ({e}); run scripts/setup/postgres.sh")
            })
    }

    /// Drops every schema made so far.
    pub async fn drop_all(&self) {
        let names: Vec<String> = std::mem::take(&mut *self.made.lock().expect("schema list"));
        if names.is_empty() {
            return;
        }
        let client = admin().await;
        for name in names {
            client
                .batch_execute(&format!(r#"DROP SCHEMA IF EXISTS "{name}" CASCADE"#))
                .await
                .unwrap_or_else(|e| panic!("drop schema {name}: {e}"));
        }
    }
}
