//! [`PostgresStore`]: the [`SessionStore`] over a pool of PostgreSQL connections.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tessera_core::codec::encode_entry;
use tessera_core::{
    CreateOutcome, EXPIRED_RETENTION, ExportPage, Session, SessionId, SessionStore, StoreError,
    StoredEntry, Timestamp, TokenHash, Tombstone, WriteOutcome,
};
use tokio_postgres::NoTls;
use tokio_postgres::types::ToSql;

use crate::config::PostgresConfig;
use crate::error::{PostgresError, pool_error, store_error, timed_out};
use crate::migrations;
use crate::rows::{
    LiveColumns, decode_live, decode_row, session_id_from_db, to_db, token_hash_from_db,
    version_from_db,
};
use crate::sql::Queries;

/// Sessions in PostgreSQL, shared by every node that uses the same
/// database, schema and table prefix.
///
/// Cheap to clone (clones share the pool). Every operation is bounded by
/// the configured operation timeout and fails with
/// [`StoreError::Unavailable`] when the database cannot be reached; the
/// pool replaces broken connections by itself, so the store recovers when
/// the database comes back. Expired records are never returned and are
/// deleted by [`sweep_expired`](SessionStore::sweep_expired), which
/// [`spawn_sweeper`](Self::spawn_sweeper) runs periodically.
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
                migrations::apply(&mut client, &config.schema, &config.table_prefix).await
            } else {
                migrations::check(&**client, &config.schema, &config.table_prefix).await?;
                Ok(Vec::new())
            }
        };
        // Migrations may take longer than one operation; give them a few.
        let limit = config.operation_timeout.saturating_mul(4);
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
        // mid-rotation), so no lock outlives its use.
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
    async fn query_opt(
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
    async fn query(
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

    /// Reads a conditional write's `(version seen, written)` row.
    async fn conditional_outcome(
        &self,
        row: tokio_postgres::Row,
        key: &TokenHash,
        id: &SessionId,
        expected_version: u64,
        now: Timestamp,
    ) -> Result<WriteOutcome, StoreError> {
        let seen: Option<i64> = row.get(0);
        let written: bool = row.get(1);
        if written {
            return Ok(WriteOutcome::Written);
        }
        match seen.map(version_from_db) {
            None => Ok(WriteOutcome::NotFound),
            // The statement's snapshot showed the expected version, but a
            // concurrent writer committed first: read what it wrote.
            Some(version) if version == expected_version => {
                let row = self
                    .query_opt(
                        "read the current version",
                        &self.inner.sql.current_version,
                        &[&&key.0[..], &now.as_millis(), &&id.0[..]],
                    )
                    .await?;
                Ok(match row {
                    None => WriteOutcome::NotFound,
                    Some(row) => WriteOutcome::VersionConflict {
                        current: version_from_db(row.get(0)),
                    },
                })
            }
            Some(current) => Ok(WriteOutcome::VersionConflict { current }),
        }
    }
}

#[async_trait]
impl SessionStore for PostgresStore {
    async fn create(
        &self,
        key: &TokenHash,
        session: &Session,
    ) -> Result<CreateOutcome, StoreError> {
        let c = LiveColumns::of(session)?;
        let inserted = self
            .execute(
                "create a session",
                &self.inner.sql.create,
                &[
                    &&key.0[..],
                    &&session.id.0[..],
                    &c.subject,
                    &c.version,
                    &c.last_seen_at,
                    &c.idle_timeout_ms,
                    &c.absolute_expires_at,
                    &c.forget_at,
                    &c.record,
                ],
            )
            .await?;
        Ok(if inserted == 1 {
            CreateOutcome::Created
        } else {
            CreateOutcome::AlreadyExists
        })
    }

    async fn load(
        &self,
        key: &TokenHash,
        now: Timestamp,
    ) -> Result<Option<StoredEntry>, StoreError> {
        let row = self
            .query_opt(
                "load a session",
                &self.inner.sql.load,
                &[&&key.0[..], &now.as_millis()],
            )
            .await?;
        row.map(|row| decode_row(row.get(0), row.get(1), row.get(2)))
            .transpose()
    }

    async fn load_by_id(
        &self,
        id: &SessionId,
        now: Timestamp,
    ) -> Result<Option<(TokenHash, Arc<Session>)>, StoreError> {
        let row = self
            .query_opt(
                "load a session by id",
                &self.inner.sql.load_by_id,
                &[&&id.0[..], &now.as_millis()],
            )
            .await?;
        row.map(|row| {
            Ok((
                token_hash_from_db(row.get(0))?,
                decode_live(row.get(1), row.get(2))?,
            ))
        })
        .transpose()
    }

    async fn update(
        &self,
        key: &TokenHash,
        session: &Session,
        expected_version: u64,
        now: Timestamp,
    ) -> Result<WriteOutcome, StoreError> {
        let c = LiveColumns::of(session)?;
        let row = self
            .query_opt(
                "update a session",
                &self.inner.sql.update,
                &[
                    &&key.0[..],
                    &now.as_millis(),
                    &to_db(expected_version),
                    &&session.id.0[..],
                    &c.subject,
                    &c.version,
                    &c.last_seen_at,
                    &c.idle_timeout_ms,
                    &c.absolute_expires_at,
                    &c.forget_at,
                    &c.record,
                ],
            )
            .await?
            .ok_or_else(|| StoreError::corrupt("compare-and-swap returned no row"))?;
        self.conditional_outcome(row, key, &session.id, expected_version, now)
            .await
    }

    async fn touch(
        &self,
        key: &TokenHash,
        last_seen_at: Timestamp,
        now: Timestamp,
    ) -> Result<WriteOutcome, StoreError> {
        let retention_ms = to_db(u64::try_from(EXPIRED_RETENTION.as_millis()).unwrap_or(u64::MAX));
        let touched = self
            .execute(
                "touch a session",
                &self.inner.sql.touch,
                &[
                    &&key.0[..],
                    &last_seen_at.as_millis(),
                    &now.as_millis(),
                    &retention_ms,
                ],
            )
            .await?;
        Ok(if touched == 1 {
            WriteOutcome::Written
        } else {
            WriteOutcome::NotFound
        })
    }

    async fn rotate(
        &self,
        old_key: &TokenHash,
        new_key: &TokenHash,
        session: &Session,
        expected_version: u64,
        tombstone: &Tombstone,
        now: Timestamp,
    ) -> Result<WriteOutcome, StoreError> {
        let c = LiveColumns::of(session)?;
        let tombstone_record = encode_entry(&StoredEntry::Tombstone(*tombstone))?;
        let what = "rotate a session";
        let seen = self
            .with_client(what, async |client| {
                let tombstone_sql = client
                    .prepare_cached(&self.inner.sql.tombstone)
                    .await
                    .map_err(|e| store_error(what, e))?;
                let create_sql = client
                    .prepare_cached(&self.inner.sql.create)
                    .await
                    .map_err(|e| store_error(what, e))?;
                let tx = client
                    .transaction()
                    .await
                    .map_err(|e| store_error(what, e))?;
                let row = tx
                    .query_one(
                        &tombstone_sql,
                        &[
                            &&old_key.0[..],
                            &now.as_millis(),
                            &to_db(expected_version),
                            &&session.id.0[..],
                            &tombstone.forget_at.as_millis(),
                            &tombstone_record,
                        ],
                    )
                    .await
                    .map_err(|e| store_error(what, e))?;
                if !row.get::<_, bool>(1) {
                    // Nothing was written; dropping the transaction rolls back.
                    return Ok(Some(row));
                }
                let inserted = tx
                    .execute(
                        &create_sql,
                        &[
                            &&new_key.0[..],
                            &&session.id.0[..],
                            &c.subject,
                            &c.version,
                            &c.last_seen_at,
                            &c.idle_timeout_ms,
                            &c.absolute_expires_at,
                            &c.forget_at,
                            &c.record,
                        ],
                    )
                    .await
                    .map_err(|e| store_error(what, e))?;
                if inserted != 1 {
                    return Err(StoreError::corrupt(
                        "rotation target key is already in use; nothing was changed",
                    ));
                }
                tx.commit().await.map_err(|e| store_error(what, e))?;
                Ok(None)
            })
            .await?;
        match seen {
            None => Ok(WriteOutcome::Written),
            Some(row) => {
                self.conditional_outcome(row, old_key, &session.id, expected_version, now)
                    .await
            }
        }
    }

    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        let deleted = self
            .execute("delete a session", &self.inner.sql.delete, &[&&id.0[..]])
            .await?;
        Ok(deleted > 0)
    }

    async fn list_by_subject(
        &self,
        subject: &str,
        now: Timestamp,
    ) -> Result<Vec<Arc<Session>>, StoreError> {
        let rows = self
            .query(
                "list a subject's sessions",
                &self.inner.sql.list_by_subject,
                &[&subject, &now.as_millis()],
            )
            .await?;
        rows.iter()
            .map(|row| decode_live(row.get(0), row.get(1)))
            .collect()
    }

    async fn delete_by_subject(
        &self,
        subject: &str,
        except: Option<&SessionId>,
        now: Timestamp,
    ) -> Result<Vec<SessionId>, StoreError> {
        let except = except.map(|id| &id.0[..]);
        let rows = self
            .query(
                "delete a subject's sessions",
                &self.inner.sql.delete_by_subject,
                &[&subject, &now.as_millis(), &except],
            )
            .await?;
        rows.iter()
            .map(|row| session_id_from_db(row.get(0)))
            .collect()
    }

    async fn global_epoch(&self) -> Result<u64, StoreError> {
        let row = self
            .query_opt("read the global epoch", &self.inner.sql.global_epoch, &[])
            .await?
            .ok_or_else(|| StoreError::corrupt("the global epoch row is missing"))?;
        Ok(version_from_db(row.get(0)))
    }

    async fn bump_global_epoch(&self) -> Result<u64, StoreError> {
        let row = self
            .query_opt(
                "bump the global epoch",
                &self.inner.sql.bump_global_epoch,
                &[],
            )
            .await?
            .ok_or_else(|| StoreError::corrupt("the global epoch row is missing"))?;
        Ok(version_from_db(row.get(0)))
    }

    async fn subject_epoch(&self, subject: &str) -> Result<u64, StoreError> {
        let row = self
            .query_opt(
                "read a subject epoch",
                &self.inner.sql.subject_epoch,
                &[&subject],
            )
            .await?;
        Ok(row.map_or(0, |row| version_from_db(row.get(0))))
    }

    async fn bump_subject_epoch(&self, subject: &str) -> Result<u64, StoreError> {
        let row = self
            .query_opt(
                "bump a subject epoch",
                &self.inner.sql.bump_subject_epoch,
                &[&subject],
            )
            .await?
            .ok_or_else(|| StoreError::corrupt("bumping a subject epoch returned no row"))?;
        Ok(version_from_db(row.get(0)))
    }

    async fn sweep_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.sweep(now).await
    }

    async fn export_page(
        &self,
        cursor: Option<&str>,
        limit: usize,
        now: Timestamp,
    ) -> Result<ExportPage, StoreError> {
        let after = match cursor {
            Some(text) => ExportPage::parse_key_cursor(text)?.0.to_vec(),
            None => Vec::new(),
        };
        let limit = i64::try_from(limit.max(1)).unwrap_or(i64::MAX);
        let rows = self
            .query(
                "export a page of sessions",
                &self.inner.sql.export_page,
                &[&now.as_millis(), &after, &limit],
            )
            .await?;
        let sessions = rows
            .iter()
            .map(|row| {
                Ok((
                    token_hash_from_db(row.get(0))?,
                    decode_live(row.get(1), row.get(2))?,
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let full = i64::try_from(sessions.len()).unwrap_or(i64::MAX) >= limit;
        let next = if full {
            sessions.last().map(|(key, _)| ExportPage::key_cursor(key))
        } else {
            None
        };
        Ok(ExportPage { sessions, next })
    }
}
