//! [`RedisStore`]: the [`SessionStore`] over a standalone Redis or a Redis Cluster.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::{FromRedisValue, Value};
use tessera_core::codec::encode_entry;
use tessera_core::{
    CreateOutcome, EXPIRED_RETENTION, ExportPage, Session, SessionId, SessionStore, StoreError,
    StoredEntry, Timestamp, TokenHash, Tombstone, WriteOutcome,
};

use crate::config::RedisConfig;
use crate::conn::Conn;
use crate::error::{RedisStoreError, store_error, timed_out};
use crate::keys::{Keys, decode_subject};
use crate::records::{
    LiveFields, array, bytes, decode_cas, decode_hmget, decode_load, int, pointer_deadline,
    wall_clock_ms,
};
use crate::scripts;

/// Sessions in Redis, shared by every node that uses the same server (or
/// cluster) and key prefix.
///
/// Cheap to clone (clones share one multiplexed connection). Every
/// operation is bounded by the operation timeout and fails with
/// [`StoreError::Unavailable`] when Redis cannot be reached; the connection
/// is re-established by itself when Redis is back. Records expire in Redis
/// itself (`PEXPIREAT` at their forget deadline), so there is nothing to sweep.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Conn,
    keys: Keys,
    operation_timeout: Duration,
    cluster: bool,
    /// Load in two round trips (pointer, then record): required in a
    /// cluster, where the two live in different slots.
    two_step_load: bool,
    redacted_url: String,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.inner.redacted_url)
            .field("prefix", &self.inner.keys.prefix())
            .field("cluster", &self.inner.cluster)
            .finish()
    }
}

impl RedisStore {
    /// Connects with a URL (see [`RedisConfig::from_url`]).
    pub async fn connect(url: &str) -> Result<Self, RedisStoreError> {
        Self::connect_with(RedisConfig::from_url(url)?).await
    }

    /// Connects with explicit settings; fails if Redis cannot be reached.
    pub async fn connect_with(config: RedisConfig) -> Result<Self, RedisStoreError> {
        config.validate()?;
        let conn = Conn::open(&config, false).await?;
        Ok(Self::build(&config, conn))
    }

    /// A store that connects on first use, for a process that must start
    /// while Redis is down: its operations fail as unavailable until Redis
    /// answers. A cluster is always connected at once (its slot map is
    /// needed), so for `redis+cluster://` this is [`connect_with`](Self::connect_with).
    pub async fn connect_lazy(config: RedisConfig) -> Result<Self, RedisStoreError> {
        config.validate()?;
        let conn = Conn::open(&config, true).await?;
        Ok(Self::build(&config, conn))
    }

    fn build(config: &RedisConfig, conn: Conn) -> Self {
        Self {
            inner: Arc::new(Inner {
                cluster: config.is_cluster(),
                two_step_load: config.is_cluster() || config.two_step_load,
                conn,
                keys: Keys::new(&config.prefix),
                operation_timeout: config.operation_timeout,
                redacted_url: config.redacted_url().to_owned(),
            }),
        }
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        self.inner.keys.prefix()
    }

    /// Whether the store is on a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.inner.cluster
    }

    /// The key of a subject's index (for inspection and tests).
    pub fn subject_index_key(&self, subject: &str) -> String {
        self.inner.keys.subject_index(subject)
    }

    pub(crate) fn conn(&self) -> Conn {
        self.inner.conn.clone()
    }

    pub(crate) fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    /// Runs one step within the operation timeout.
    pub(crate) async fn timed<T>(
        &self,
        what: &str,
        step: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let limit = self.inner.operation_timeout;
        tokio::time::timeout(limit, step)
            .await
            .map_err(|_| timed_out(what, limit))?
    }

    /// Runs a script invocation within the timeout.
    async fn script<T: FromRedisValue>(
        &self,
        what: &str,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn();
        self.timed(what, async {
            invocation
                .invoke_async(&mut conn)
                .await
                .map_err(|e| store_error(what, e))
        })
        .await
    }

    /// Runs a command within the timeout.
    async fn command<T: FromRedisValue>(
        &self,
        what: &str,
        command: &redis::Cmd,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn();
        self.timed(what, async {
            command
                .query_async(&mut conn)
                .await
                .map_err(|e| store_error(what, e))
        })
        .await
    }

    /// The session id (hex) a token hash points to.
    async fn pointed_id(&self, key: &TokenHash) -> Result<Option<String>, StoreError> {
        self.command(
            "read pointer",
            redis::cmd("GET").arg(self.keys().pointer(key)),
        )
        .await
    }

    async fn index_add(
        &self,
        subject: &str,
        id: &SessionId,
        forget: &str,
    ) -> Result<(), StoreError> {
        let mut invocation = scripts::INDEX_ADD.key(self.keys().subject_index(subject));
        invocation.arg(hex::encode(id.0)).arg(forget);
        self.script::<i64>("index subject", &invocation)
            .await
            .map(drop)
    }

    async fn index_remove(&self, subject: &str, id: &SessionId) -> Result<(), StoreError> {
        let mut invocation = scripts::INDEX_REMOVE.key(self.keys().subject_index(subject));
        invocation.arg(hex::encode(id.0));
        self.script::<i64>("unindex subject", &invocation)
            .await
            .map(drop)
    }

    /// After a write that may have changed the subject: leaves the old
    /// subject's index.
    async fn leave_old_subject(
        &self,
        old: Option<Vec<u8>>,
        session: &Session,
    ) -> Result<(), StoreError> {
        let old = old.as_deref().and_then(decode_subject);
        match old {
            Some(old) if Some(old.as_str()) != session.subject.as_deref() => {
                self.index_remove(&old, &session.id).await
            }
            _ => Ok(()),
        }
    }

    /// Reads the live records of these session ids in one round trip.
    async fn load_many(
        &self,
        ids: &[String],
        now: Timestamp,
    ) -> Result<Vec<(TokenHash, Arc<Session>)>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // One command per session, all in flight at once over the
        // multiplexed connection (in a cluster they go to different nodes).
        let replies = futures_util::future::try_join_all(ids.iter().map(|id| async move {
            let mut read = redis::cmd("HMGET");
            read.arg(self.keys().live_hex(id))
                .arg("k")
                .arg("r")
                .arg("s");
            self.command::<Value>("read sessions", &read).await
        }))
        .await?;
        let mut found = Vec::new();
        for reply in replies {
            if let Some(live) = decode_hmget(reply, now)? {
                found.push(live);
            }
        }
        Ok(found)
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn create(
        &self,
        key: &TokenHash,
        session: &Session,
    ) -> Result<CreateOutcome, StoreError> {
        let fields = LiveFields::of(session)?;
        let id_hex = hex::encode(session.id.0);
        if !self.inner.two_step_load {
            // One server: claim, index and record in one atomic step.
            let mut invocation = scripts::CREATE_ONE_STEP.key(self.keys().pointer(key));
            invocation.key(self.keys().live(&session.id));
            if let Some(subject) = &session.subject {
                invocation.key(self.keys().subject_index(subject));
            }
            invocation.arg(key.to_hex());
            fields.push(&mut invocation);
            invocation.arg(&id_hex).arg(pointer_deadline(session));
            let created: i64 = self.script("create", &invocation).await?;
            return Ok(if created == 1 {
                CreateOutcome::Created
            } else {
                CreateOutcome::AlreadyExists
            });
        }
        // The index first: it may name a session that is not (yet) stored,
        // never miss one that is.
        if let Some(subject) = &session.subject {
            self.index_add(subject, &session.id, &fields.forget).await?;
        }
        let claimed: Option<String> = self
            .command(
                "claim key",
                redis::cmd("SET")
                    .arg(self.keys().pointer(key))
                    .arg(&id_hex)
                    .arg("NX")
                    .arg("PXAT")
                    .arg(pointer_deadline(session)),
            )
            .await?;
        if claimed.is_none() {
            return Ok(CreateOutcome::AlreadyExists);
        }
        let mut invocation = scripts::CREATE.key(self.keys().live(&session.id));
        invocation.arg(key.to_hex());
        fields.push(&mut invocation);
        let created: i64 = self.script("create", &invocation).await?;
        if created == 1 {
            return Ok(CreateOutcome::Created);
        }
        // The id exists under another key: give the claimed key back.
        self.command::<i64>(
            "release key",
            redis::cmd("DEL").arg(self.keys().pointer(key)),
        )
        .await?;
        Ok(CreateOutcome::AlreadyExists)
    }

    async fn load(
        &self,
        key: &TokenHash,
        now: Timestamp,
    ) -> Result<Option<StoredEntry>, StoreError> {
        let reply: Value = if self.inner.two_step_load {
            // Two steps: the pointer names the slot the record lives in.
            let Some(id_hex) = self.pointed_id(key).await? else {
                return Ok(None);
            };
            let mut invocation = scripts::LOAD.key(self.keys().live_hex(&id_hex));
            invocation
                .key(self.keys().tombstone_hex(&id_hex, key))
                .arg(key.to_hex());
            self.script("load", &invocation).await?
        } else {
            let mut invocation = scripts::LOAD_VIA_POINTER.key(self.keys().pointer(key));
            invocation.arg(key.to_hex()).arg(self.keys().prefix());
            self.script("load", &invocation).await?
        };
        decode_load(reply, now)
    }

    async fn load_by_id(
        &self,
        id: &SessionId,
        now: Timestamp,
    ) -> Result<Option<(TokenHash, Arc<Session>)>, StoreError> {
        let reply: Value = self
            .command(
                "load by id",
                redis::cmd("HMGET")
                    .arg(self.keys().live(id))
                    .arg("k")
                    .arg("r")
                    .arg("s"),
            )
            .await?;
        decode_hmget(reply, now)
    }

    async fn update(
        &self,
        key: &TokenHash,
        session: &Session,
        expected_version: u64,
        now: Timestamp,
    ) -> Result<WriteOutcome, StoreError> {
        let fields = LiveFields::of(session)?;
        let one_step = !self.inner.two_step_load;
        let mut invocation = if one_step {
            // One server: the index moves in the same atomic step.
            let mut invocation = scripts::UPDATE_ONE_STEP.key(self.keys().live(&session.id));
            if let Some(subject) = &session.subject {
                invocation.key(self.keys().subject_index(subject));
            }
            invocation
        } else {
            // The index first: it may name a session that is not (yet)
            // stored, never miss one that is.
            if let Some(subject) = &session.subject {
                self.index_add(subject, &session.id, &fields.forget).await?;
            }
            scripts::UPDATE.key(self.keys().live(&session.id))
        };
        invocation
            .arg(key.to_hex())
            .arg(expected_version.to_string())
            .arg(now.as_millis().to_string());
        fields.push(&mut invocation);
        if one_step {
            invocation.arg(hex::encode(session.id.0));
        }
        let (outcome, old_subject) =
            decode_cas("update", self.script("update", &invocation).await?)?;
        if outcome == WriteOutcome::Written {
            self.leave_old_subject(old_subject, session).await?;
        }
        Ok(outcome)
    }

    async fn touch(
        &self,
        key: &TokenHash,
        last_seen_at: Timestamp,
        now: Timestamp,
    ) -> Result<WriteOutcome, StoreError> {
        let Some(id_hex) = self.pointed_id(key).await? else {
            return Ok(WriteOutcome::NotFound);
        };
        let mut invocation = scripts::TOUCH.key(self.keys().live_hex(&id_hex));
        invocation
            .arg(key.to_hex())
            .arg(last_seen_at.as_millis().to_string())
            .arg(now.as_millis().to_string())
            .arg(EXPIRED_RETENTION.as_millis().to_string());
        let items = array(self.script("touch", &invocation).await?);
        if items.first().and_then(int) != Some(1) {
            return Ok(WriteOutcome::NotFound);
        }
        // Keep the subject index's score at the new forget deadline. Should
        // this step fail, the next touch or update raises it again.
        let forget = items.get(1).and_then(int);
        let subject = items.get(2).and_then(bytes).and_then(decode_subject);
        if let (Some(forget), Some(subject)) = (forget, subject) {
            let mut invocation = scripts::INDEX_ADD.key(self.keys().subject_index(&subject));
            invocation.arg(&id_hex).arg(forget.to_string());
            self.script::<i64>("index subject", &invocation).await?;
        }
        Ok(WriteOutcome::Written)
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
        let fields = LiveFields::of(session)?;
        if let Some(subject) = &session.subject {
            self.index_add(subject, &session.id, &fields.forget).await?;
        }
        // Pointers before the record moves: the new key must find the
        // session the moment it lives there, and the old one must last as
        // long as its tombstone.
        let id_hex = hex::encode(session.id.0);
        let mut point_new = redis::cmd("SET");
        point_new
            .arg(self.keys().pointer(new_key))
            .arg(&id_hex)
            .arg("PXAT")
            .arg(pointer_deadline(session));
        let mut keep_old = redis::cmd("PEXPIREAT");
        keep_old
            .arg(self.keys().pointer(old_key))
            .arg(tombstone.forget_at.as_millis().max(wall_clock_ms() + 1000))
            .arg("GT");
        futures_util::future::try_join(
            self.command::<()>("point new key", &point_new),
            self.command::<i64>("keep old key", &keep_old),
        )
        .await?;
        let tombstone_record = encode_entry(&StoredEntry::Tombstone(*tombstone))?;
        let mut invocation = scripts::ROTATE.key(self.keys().live(&session.id));
        invocation
            .key(self.keys().tombstone(&session.id, old_key))
            .arg(old_key.to_hex())
            .arg(expected_version.to_string())
            .arg(now.as_millis().to_string())
            .arg(new_key.to_hex());
        fields.push(&mut invocation);
        invocation
            .arg(tombstone_record)
            .arg(tombstone.forget_at.as_millis().to_string());
        let (outcome, old_subject) =
            decode_cas("rotate", self.script("rotate", &invocation).await?)?;
        match outcome {
            WriteOutcome::Written => self.leave_old_subject(old_subject, session).await?,
            _ => {
                // Nothing moved: the new key's pointer names no record and
                // would read as absent, but need not linger.
                self.command::<i64>(
                    "release key",
                    redis::cmd("DEL").arg(self.keys().pointer(new_key)),
                )
                .await?;
            }
        }
        Ok(outcome)
    }

    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        let invocation = scripts::DELETE.key(self.keys().live(id));
        let items = array(self.script("delete", &invocation).await?);
        if items.first().and_then(int) != Some(1) {
            return Ok(false);
        }
        // The record is gone; its pointer and index entry now name nothing
        // and are removed as a courtesy (both would read as absent anyway).
        if let Some(key) = items
            .get(1)
            .and_then(bytes)
            .and_then(|k| std::str::from_utf8(k).ok())
            .and_then(TokenHash::from_hex)
        {
            self.command::<i64>(
                "release key",
                redis::cmd("DEL").arg(self.keys().pointer(&key)),
            )
            .await?;
        }
        if let Some(subject) = items.get(2).and_then(bytes).and_then(decode_subject) {
            self.index_remove(&subject, id).await?;
        }
        Ok(true)
    }

    async fn list_by_subject(
        &self,
        subject: &str,
        now: Timestamp,
    ) -> Result<Vec<Arc<Session>>, StoreError> {
        let invocation = scripts::INDEX_LIST.key(self.keys().subject_index(subject));
        let ids: Vec<String> = self.script("list subject", &invocation).await?;
        Ok(self
            .load_many(&ids, now)
            .await?
            .into_iter()
            .map(|(_, session)| session)
            .filter(|session| session.subject.as_deref() == Some(subject))
            .collect())
    }

    async fn global_epoch(&self) -> Result<u64, StoreError> {
        let epoch: Option<u64> = self
            .command(
                "read epoch",
                redis::cmd("GET").arg(self.keys().global_epoch()),
            )
            .await?;
        Ok(epoch.unwrap_or(0))
    }

    async fn bump_global_epoch(&self) -> Result<u64, StoreError> {
        self.command(
            "bump epoch",
            redis::cmd("INCR").arg(self.keys().global_epoch()),
        )
        .await
    }

    async fn subject_epoch(&self, subject: &str) -> Result<u64, StoreError> {
        let epoch: Option<u64> = self
            .command(
                "read subject epoch",
                redis::cmd("GET").arg(self.keys().subject_epoch(subject)),
            )
            .await?;
        Ok(epoch.unwrap_or(0))
    }

    async fn bump_subject_epoch(&self, subject: &str) -> Result<u64, StoreError> {
        self.command(
            "bump subject epoch",
            redis::cmd("INCR").arg(self.keys().subject_epoch(subject)),
        )
        .await
    }

    async fn export_page(
        &self,
        cursor: Option<&str>,
        limit: usize,
        now: Timestamp,
    ) -> Result<ExportPage, StoreError> {
        self.export(cursor, limit, now).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.command::<String>("ping", &redis::cmd("PING"))
            .await
            .map(drop)
    }
}
