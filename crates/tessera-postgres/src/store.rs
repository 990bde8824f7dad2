//! [`PostgresStore`]: the pool, the statements and the one way every
//! operation runs (on a pooled connection, within the operation timeout).
//! The store's operations are in `records.rs` and `maintenance.rs`.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tessera_core::store::StoreError;
use tokio_postgres::NoTls;
use tokio_postgres::types::ToSql;

use crate::config::PostgresConfig;
use crate::error::{PostgresError, pool_error, store_error, timed_out};
use crate::migrations;
use crate::sql::Queries;

/// Sessions in PostgreSQL, shared by every node that uses the same
/// database, schema and table prefix.
///
/// Cheap to clone (clones share the pool). Every operation is bounded by
/// the configured operation timeout and fails with
/// [`StoreError::Unavailable`] when the database cannot be reached; the
/// pool replaces broken connections by itself, so the store recovers when
/// the database comes back. Records past their forget deadline are never
/// returned, and are deleted by
/// [`sweep_expired`](tessera_core::store::Maintenance::sweep_expired),
/// which [`tessera_core::store::spawn_sweeper`] runs periodically.
#[derive(Clone)]
pub struct PostgresStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pool: Pool,
    pub(crate) sql: Queries,
    operation_timeout: Duration,
    pub(crate) sweep_batch: i64,
    schema: String,
    table_prefix: String,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = self.inner.pool.status();
        f.debug_struct("PostgresStore")
            .field("schema", &self.inner.schema)
            .field("table_prefix", &self.inner.table_prefix)
            .field("connections", &status.size)
            .field("max_connections", &status.max_size)
            .finish()
    }
}

impl PostgresStore {
    /// Connects with a URL (see [`PostgresConfig::from_url`]) and the
    /// default settings, creating or upgrading the schema.
    pub async fn connect(url: &str) -> Result<Self, PostgresError> {
        Self::connect_with(PostgresConfig::from_url(url)?).await
    }

    /// Connects with explicit settings. Runs the migrations unless they are
    /// turned off, in which case the schema must already be current.
    pub async fn connect_with(config: PostgresConfig) -> Result<Self, PostgresError> {
        config.validate()?;
        let store = Self::build(&config)?;
        store.prepare_schema(config).await?;
        Ok(store)
    }

    /// A store that connects on first use, without touching the database
    /// now: for a process that must start while PostgreSQL is down. Its
    /// operations fail as unavailable until the database answers; the
    /// schema must have been prepared ([`migrate`](crate::migrate)).
    pub fn connect_lazy(config: PostgresConfig) -> Result<Self, PostgresError> {
        config.validate()?;
        Self::build(&config)
    }

    /// Runs the migrations (or, when they are off, checks the schema is
    /// current); returns the versions applied.
    pub(crate) async fn prepare_schema(
        &self,
        config: PostgresConfig,
    ) -> Result<Vec<i32>, PostgresError> {
        let prepare = async {
            let mut client = self.client().await?;
            if config.run_migrations {
                let limit = config.migration_timeout;
                migrations::apply(&mut client, &config.schema, &config.table_prefix, limit).await
            } else {
                migrations::check(&**client, &config.schema, &config.table_prefix).await?;
                Ok(Vec::new())
            }
        };
        // A migration run may wait for another node's and convert many
        // sessions: it has its own limit.
        let limit = config.migration_timeout.max(config.operation_timeout);
        tokio::time::timeout(limit, prepare)
            .await
            .map_err(|_| timed_out("prepare the schema", limit))?
    }

    /// The pool and statements, without touching the database.
    pub(crate) fn build(config: &PostgresConfig) -> Result<Self, PostgresError> {
        let mut connection = config.connection.clone();
        connection.connect_timeout(config.connect_timeout);
        // The server cancels statements that outlive the operation timeout
        // and ends a transaction left idle (say by a client that vanished
        // mid-migration), so no lock outlives its use.
        let timeout_ms = config.operation_timeout.as_millis();
        let mut options = connection.get_options().unwrap_or_default().to_owned();
        options.push_str(&format!(
            " -c statement_timeout={timeout_ms} -c idle_in_transaction_session_timeout={}",
            timeout_ms.saturating_mul(2)
        ));
        connection.options(options.trim());
        if connection.get_application_name().is_none() {
            connection.application_name("tessera");
        }
        let manager = Manager::from_config(
            connection,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.max_connections)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(config.operation_timeout))
            .create_timeout(Some(config.connect_timeout))
            .recycle_timeout(Some(config.connect_timeout))
            .build()
            .map_err(|e| PostgresError::Config(format!("cannot build the connection pool: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                sql: Queries::new(&config.schema, &config.table_prefix),
                operation_timeout: config.operation_timeout,
                sweep_batch: i64::from(config.sweep_batch),
                schema: config.schema.clone(),
                table_prefix: config.table_prefix.clone(),
            }),
        })
    }

    /// The schema the store's tables are in.
    pub fn schema(&self) -> &str {
        &self.inner.schema
    }

    /// The prefix of the store's table names.
    pub fn table_prefix(&self) -> &str {
        &self.inner.table_prefix
    }

    /// A pooled connection.
    pub(crate) async fn client(&self) -> Result<Object, StoreError> {
        self.inner.pool.get().await.map_err(pool_error)
    }

    /// Runs one operation on a pooled connection within the operation
    /// timeout (waiting for the connection included). A connection whose
    /// operation ran out of time is taken out of the pool and closed: its
    /// peer may be gone without a word (a network partition, a crashed
    /// host), and reusing it would make later operations hang too.
    pub(crate) async fn with_client<T>(
        &self,
        what: &str,
        operation: impl AsyncFnOnce(&mut Object) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let limit = self.inner.operation_timeout;
        let deadline = tokio::time::Instant::now() + limit;
        let mut client = tokio::time::timeout_at(deadline, self.client())
            .await
            .map_err(|_| timed_out(what, limit))??;
        match tokio::time::timeout_at(deadline, operation(&mut client)).await {
            Ok(result) => result,
            Err(_) => {
                drop(Object::take(client));
                Err(timed_out(what, limit))
            }
        }
    }

    /// Runs one statement that returns at most one row.
    pub(crate) async fn query_opt(
        &self,
        what: &str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<tokio_postgres::Row>, StoreError> {
        self.with_client(what, async |client| {
            let statement = client
                .prepare_cached(sql)
                .await
                .map_err(|e| store_error(what, e))?;
            client
                .query_opt(&statement, params)
                .await
                .map_err(|e| store_error(what, e))
        })
        .await
    }

    /// Runs one statement and returns its rows.
    pub(crate) async fn query(
        &self,
        what: &str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        self.with_client(what, async |client| {
            let statement = client
                .prepare_cached(sql)
                .await
                .map_err(|e| store_error(what, e))?;
            client
                .query(&statement, params)
                .await
                .map_err(|e| store_error(what, e))
        })
        .await
    }

    /// Runs one statement and returns how many rows it changed.
    pub(crate) async fn execute(
        &self,
        what: &str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        self.with_client(what, async |client| {
            let statement = client
                .prepare_cached(sql)
                .await
                .map_err(|e| store_error(what, e))?;
            client
                .execute(&statement, params)
                .await
                .map_err(|e| store_error(what, e))
        })
        .await
    }
}
