//! [`RedisStore`]: records and epochs over a standalone Redis or a Redis
//! Cluster. The subject index is in `index.rs`, maintenance in
//! `maintenance.rs`, the previous layout in `legacy.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, ErrorKind, FromRedisValue, ServerErrorKind, Value, cmd};
use tessera_core::codec;
use tessera_core::store::{
    AttachmentKind, CreateOutcome, Durability, Records, StoreError, WriteOutcome,
};
use tessera_core::{Revision, SessionId, SessionRecord, Timestamp, TokenHash};

use crate::config::RedisConfig;
use crate::conn::Conn;
use crate::error::{RedisStoreError, bad_reply, store_error, timed_out};
use crate::keys::Keys;
use crate::scripts;

/// Sessions in Redis, shared by every node that uses the same server (or
/// cluster) and key prefix.
///
/// Cheap to clone (clones share one multiplexed connection). Every
/// operation is bounded by the operation timeout and fails with
/// [`StoreError::Unavailable`] when Redis cannot be reached; the connection
/// is re-established by itself when Redis is back. Records expire in Redis
/// itself at their forget deadline; the subject indexes are tidied when
/// listed and by [`Maintenance::sweep_expired`](tessera_core::store::Maintenance::sweep_expired),
/// which [`spawn_sweeper`](tessera_core::store::spawn_sweeper) runs.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Conn,
    keys: Keys,
    operation_timeout: Duration,
    cluster: bool,
    redacted_url: String,
    /// Whether every primary keeps its data across a restart (asked at connect).
    durability: Durability,
    /// With [`RedisConfig::wait_for_replicas`]: the connection revocations
    /// go over, each followed by `WAIT` (a second one, so that a `WAIT`
    /// holds up no other request).
    revocations: Option<Conn>,
    wait_replicas: u32,
    wait_timeout: Duration,
    /// The highest global epoch this store handed out (0: none yet), see
    /// `epochs.rs`.
    known_global: AtomicU64,
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

    /// Connects with explicit settings; fails if Redis cannot be reached,
    /// or if its `maxmemory-policy` may evict keys without an expiry
    /// (unless [`RedisConfig::allow_evicting_policy`]). Asks whether every
    /// primary keeps an append-only file (the store's
    /// [`durability`](tessera_core::store::Epochs::durability)), and starts
    /// the global epoch if there is none (`src/epochs.rs`).
    pub async fn connect_with(config: RedisConfig) -> Result<Self, RedisStoreError> {
        config.validate()?;
        let conn = Conn::open(&config, false).await?;
        let durability = crate::server::inspect(&conn, &config, false).await?;
        let revocations = Self::revocation_conn(&config, false).await?;
        let store = Self::build(&config, conn, revocations, durability);
        // A global epoch exists from the first connect on (see `epochs.rs`).
        store.read_global_epoch().await?;
        // Saves the first writes a round trip. Best effort: a node that is
        // down now, or restarts later, is given the scripts when it answers
        // NOSCRIPT.
        if let Err(error) = store
            .timed("load scripts", store.load_scripts("load scripts"))
            .await
        {
            tracing::debug!(%error, "scripts not loaded at connect; loading them on first use");
        }
        Ok(store)
    }

    /// A store that connects on first use, for a process that must start
    /// while Redis is down: its operations fail as unavailable until Redis
    /// answers. A cluster is always connected at once (its slot map is
    /// needed), so for `redis+cluster://` this is [`connect_with`](Self::connect_with).
    /// The server is checked as by `connect_with` if it answers within the
    /// connect timeout; if it does not, its eviction policy goes unchecked
    /// and its epochs count as volatile for the life of the store.
    pub async fn connect_lazy(config: RedisConfig) -> Result<Self, RedisStoreError> {
        config.validate()?;
        let conn = Conn::open(&config, true).await?;
        // Checked if the server answers now; if not, its epochs count as
        // volatile.
        let durability = crate::server::inspect(&conn, &config, true).await?;
        let revocations = Self::revocation_conn(&config, true).await?;
        Ok(Self::build(&config, conn, revocations, durability))
    }

    /// The second connection revocations take when they wait for replicas.
    async fn revocation_conn(
        config: &RedisConfig,
        lazy: bool,
    ) -> Result<Option<Conn>, RedisStoreError> {
        if config.wait_replicas == 0 {
            return Ok(None);
        }
        Ok(Some(Conn::open(config, lazy).await?))
    }

    fn build(
        config: &RedisConfig,
        conn: Conn,
        revocations: Option<Conn>,
        durability: Durability,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                cluster: config.is_cluster(),
                conn,
                keys: Keys::new(&config.prefix),
                operation_timeout: config.operation_timeout,
                redacted_url: config.redacted_url().to_owned(),
                durability,
                revocations,
                wait_replicas: config.wait_replicas,
                wait_timeout: config.wait_timeout,
                known_global: AtomicU64::new(0),
            }),
        }
    }

    /// Notes a global epoch handed out by this store.
    pub(crate) fn note_global_epoch(&self, epoch: u64) {
        self.inner.known_global.fetch_max(epoch, Ordering::AcqRel);
    }

    /// The highest global epoch this store handed out (0: none yet).
    pub(crate) fn known_global_epoch(&self) -> u64 {
        self.inner.known_global.load(Ordering::Acquire)
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        self.inner.keys.prefix()
    }

    /// Whether the store is on a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.inner.cluster
    }

    /// What the server said about keeping its data, at connect.
    pub(crate) fn durability_found(&self) -> Durability {
        self.inner.durability
    }

    /// The key of a session's record (for inspection and tests).
    pub fn record_key(&self, id: &SessionId) -> String {
        self.inner.keys.record(id)
    }

    /// The key of the bucket of the subject index that holds a subject's
    /// sessions, with other subjects' (for inspection and tests).
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

    /// Runs a command within the timeout.
    pub(crate) async fn command<T: FromRedisValue>(
        &self,
        what: &str,
        command: &Cmd,
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

    /// Sends `commands` in one round trip (see `Conn::round_trip`) within
    /// the timeout and returns their replies; any command's error fails the
    /// whole. A script the server does not know yet (after a restart) is
    /// loaded and the commands sent once more: every command sent together
    /// with a script is safe to repeat.
    pub(crate) async fn round_trip(
        &self,
        what: &str,
        commands: &[Cmd],
    ) -> Result<Vec<Value>, StoreError> {
        self.round_trip_on(&self.conn(), what, commands).await
    }

    /// [`round_trip`](Self::round_trip) over a given connection.
    async fn round_trip_on(
        &self,
        conn: &Conn,
        what: &str,
        commands: &[Cmd],
    ) -> Result<Vec<Value>, StoreError> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        self.timed(what, async {
            for attempt in 0..2 {
                let replies = conn
                    .round_trip(commands)
                    .await
                    .map_err(|e| store_error(what, e))?;
                let unknown_script = replies.iter().any(|reply| {
                    matches!(reply, Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript))
                });
                if unknown_script && attempt == 0 {
                    self.load_scripts(what).await?;
                    continue;
                }
                return replies
                    .into_iter()
                    .map(|reply| reply.map_err(|e| store_error(what, e)))
                    .collect();
            }
            Err(bad_reply(what, "the server does not keep the scripts it loaded"))
        })
        .await
    }

    /// Loads every script into the server (every primary of a cluster),
    /// in one round trip.
    pub(crate) async fn load_scripts(&self, what: &str) -> Result<(), StoreError> {
        let loads: Vec<Cmd> = [
            &*scripts::UPDATE,
            &*scripts::TOUCH,
            &*scripts::RAISE_EPOCH,
            &*scripts::BUMP_EPOCH,
            &*scripts::STORE_ATTACHMENT,
            &*scripts::CONVERT,
        ]
        .into_iter()
        .map(|script| {
            let mut load = cmd("SCRIPT");
            load.arg("LOAD").arg(&script.source);
            load
        })
        .collect();
        for reply in self
            .conn()
            .round_trip(&loads)
            .await
            .map_err(|e| store_error(what, e))?
        {
            reply.map_err(|e| store_error(what, e))?;
        }
        Ok(())
    }

    /// Sends revocation-type writes (deletions, epoch changes) that touch
    /// `keys` in one round trip. With [`RedisConfig::wait_for_replicas`]
    /// they go over the revocation connection and are followed by `WAIT` on
    /// it (one per node written to, in a cluster); a write not acknowledged
    /// by enough replicas in time fails as unavailable: it is on the
    /// primary, but could be lost with it.
    pub(crate) async fn revoke(
        &self,
        what: &str,
        commands: &[Cmd],
        keys: &[String],
    ) -> Result<Vec<Value>, StoreError> {
        let Some(conn) = &self.inner.revocations else {
            return self.round_trip(what, commands).await;
        };
        let (replicas, timeout) = (self.inner.wait_replicas, self.inner.wait_timeout);
        let mut wait = cmd("WAIT");
        wait.arg(replicas)
            .arg(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX));
        let (replies, acknowledged) = match conn {
            Conn::Standalone(_) => {
                // One pipeline on one connection: `WAIT` follows the writes.
                let mut all = commands.to_vec();
                all.push(wait);
                let mut replies = self.round_trip_on(conn, what, &all).await?;
                let acknowledged = replies.pop().into_iter().collect::<Vec<_>>();
                (replies, acknowledged)
            }
            Conn::Cluster(cluster) => {
                let replies = self.round_trip_on(conn, what, commands).await?;
                // `WAIT` on the connection to the node of each slot written.
                let mut routes: Vec<Route> = Vec::new();
                for key in keys {
                    let route = Route::with_key(key, SlotAddr::Master);
                    if !routes.contains(&route) {
                        routes.push(route);
                    }
                }
                let mut acknowledged = Vec::with_capacity(routes.len());
                for route in routes {
                    let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                    let mut cluster = cluster.clone();
                    let reply = tokio::time::timeout(
                        self.inner.operation_timeout + timeout,
                        cluster.route_command(wait.clone(), route),
                    )
                    .await
                    .map_err(|_| timed_out(what, self.inner.operation_timeout + timeout))?
                    .map_err(|e| store_error(what, e))?;
                    acknowledged.push(reply);
                }
                (replies, acknowledged)
            }
        };
        for reply in acknowledged {
            let count: u64 = redis::from_redis_value(reply).map_err(|e| bad_reply(what, e))?;
            if count < u64::from(replicas) {
                return Err(StoreError::Unavailable {
                    message: format!(
                        "{what}: written on the primary, but acknowledged by {count} of \
                         {replicas} replicas within {timeout:?}, so it may not survive a \
                         failover; try again (or check the replicas)"
                    ),
                    source: None,
                });
            }
        }
        Ok(replies)
    }

    /// `SET record bytes NX PXAT forget`: create-if-absent with native expiry.
    pub(crate) fn create_command(&self, id: &SessionId, bytes: &[u8], forget_at: Timestamp) -> Cmd {
        let mut set = cmd("SET");
        set.arg(self.keys().record(id))
            .arg(bytes)
            .arg("NX")
            .arg("PXAT")
            .arg(px(forget_at));
        set
    }

    /// `HSET bucket id+tag ""`: indexes a session under its subject.
    pub(crate) fn index_command(&self, subject: &str, id: &SessionId) -> Cmd {
        let slot = crate::keys::IndexSlot::of(subject);
        let mut add = cmd("HSET");
        add.arg(self.keys().index_bucket(slot.bucket))
            .arg(&slot.field(id)[..])
            .arg("");
        add
    }

    /// Every key of a session: its record, its hash of the previous
    /// layout, its attachments.
    pub(crate) fn session_keys(&self, id: &SessionId) -> Vec<String> {
        let mut keys = vec![self.keys().record(id), self.keys().legacy_record(id)];
        keys.extend(
            AttachmentKind::ALL
                .into_iter()
                .map(|kind| self.keys().attachment(id, kind)),
        );
        keys
    }

    /// `DEL record legacy-record attachments…`: ends a session in either
    /// layout, with its attachments.
    pub(crate) fn delete_command(&self, id: &SessionId) -> Cmd {
        let mut del = cmd("DEL");
        del.arg(self.session_keys(id));
        del
    }

    /// Reads the records of `ids`, in order (`None` where there is none),
    /// in one round trip.
    pub(crate) async fn read_records(
        &self,
        what: &str,
        ids: &[SessionId],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let keys: Vec<String> = ids.iter().map(|id| self.keys().record(id)).collect();
        self.read_keys(what, &keys).await
    }

    /// Reads string keys, in order, in one round trip (`MGET`s of at most
    /// [`MGET_CHUNK`] keys each, sent together).
    pub(crate) async fn read_keys(
        &self,
        what: &str,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let commands: Vec<Cmd> = keys
            .chunks(MGET_CHUNK)
            .map(|chunk| {
                let mut mget = cmd("MGET");
                mget.arg(chunk);
                mget
            })
            .collect();
        let mut values = Vec::with_capacity(keys.len());
        for reply in self.round_trip(what, &commands).await? {
            let items: Vec<Option<Vec<u8>>> =
                redis::from_redis_value(reply).map_err(|e| bad_reply(what, e))?;
            values.extend(items);
        }
        if values.len() != keys.len() {
            return Err(bad_reply(what, "MGET answered for another number of keys"));
        }
        Ok(values)
    }
}

/// Keys per `MGET`.
pub(crate) const MGET_CHUNK: usize = 256;

/// A deadline as `PXAT` takes it (a positive number of milliseconds).
pub(crate) fn px(at: Timestamp) -> i64 {
    at.as_millis().max(1)
}

/// The record `bytes` hold, or `None` once it is forgotten at `now`.
pub(crate) fn live_record(
    bytes: &[u8],
    now: Timestamp,
) -> Result<Option<SessionRecord>, StoreError> {
    match codec::forget_at_of(bytes) {
        Some(forget_at) if forget_at > now => codec::decode(bytes, None).map(Some),
        Some(_) => Ok(None),
        // Not a record of this format: the decoder says what it is.
        None => Err(codec::decode(bytes, None)
            .err()
            .unwrap_or_else(|| StoreError::corrupt("a session record without a header"))),
    }
}

/// A revision as the update script returns it (40 bytes).
fn revision_from(bytes: &[u8]) -> Option<Revision> {
    let (version, token) = bytes.split_first_chunk::<8>()?;
    let token: [u8; 32] = token.try_into().ok()?;
    Some(Revision {
        version: u64::from_be_bytes(*version),
        token: TokenHash(token),
    })
}

/// The outcome code of the update and touch scripts.
fn write_outcome(what: &str, reply: &Value) -> Result<WriteOutcome, StoreError> {
    match reply {
        Value::Int(1) => Ok(WriteOutcome::Written),
        Value::Int(0) => Ok(WriteOutcome::NotFound),
        Value::Int(2) => Err(StoreError::corrupt(format!(
            "{what}: the stored record is not of format {}; upgrade Tessera",
            codec::FORMAT
        ))),
        Value::BulkString(current) => revision_from(current)
            .map(|current| WriteOutcome::Conflict { current })
            .ok_or_else(|| bad_reply(what, "a revision of the wrong length")),
        other => Err(bad_reply(what, format!("{other:?}"))),
    }
}

/// `EVALSHA` of a script on one key.
pub(crate) fn evalsha(script: &scripts::Lua, key: &str) -> Cmd {
    evalsha_keys(script, &[key])
}

/// `EVALSHA` of a script on several keys.
pub(crate) fn evalsha_keys(script: &scripts::Lua, keys: &[&str]) -> Cmd {
    let mut command = cmd("EVALSHA");
    command.arg(&script.hash).arg(keys.len()).arg(keys);
    command
}

#[async_trait]
impl Records for RedisStore {
    async fn create(
        &self,
        record: &SessionRecord,
        forget_at: Timestamp,
    ) -> Result<CreateOutcome, StoreError> {
        let bytes = codec::encode(record, forget_at);
        let mut commands = vec![self.create_command(&record.id, &bytes, forget_at)];
        // In the same round trip: an entry whose create was refused names
        // another session's record, which listing skips and drops.
        if let Some(subject) = &record.subject {
            commands.push(self.index_command(subject, &record.id));
        }
        let replies = self.round_trip("create", &commands).await?;
        Ok(match replies.first() {
            Some(Value::Nil) => CreateOutcome::AlreadyExists,
            _ => CreateOutcome::Created,
        })
    }

    async fn load(
        &self,
        id: &SessionId,
        now: Timestamp,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let bytes: Option<Vec<u8>> = self
            .command("load", cmd("GET").arg(self.keys().record(id)))
            .await?;
        match bytes {
            Some(bytes) => live_record(&bytes, now),
            None => Ok(None),
        }
    }

    async fn update(
        &self,
        record: &SessionRecord,
        expected: Revision,
        forget_at: Timestamp,
        now: Timestamp,
    ) -> Result<WriteOutcome, StoreError> {
        let mut swap = evalsha(&scripts::UPDATE, &self.keys().record(&record.id));
        swap.arg(&expected.to_bytes()[..])
            .arg(codec::encode(record, forget_at))
            .arg(px(forget_at))
            .arg(now.as_millis());
        let mut commands = vec![swap];
        // A subject that changed leaves an entry under the old one, which
        // its next listing or a sweep drops.
        if let Some(subject) = &record.subject {
            commands.push(self.index_command(subject, &record.id));
        }
        let replies = self.round_trip("update", &commands).await?;
        let reply = replies
            .first()
            .ok_or_else(|| bad_reply("update", "no reply"))?;
        write_outcome("update", reply)
    }

    async fn touch(
        &self,
        id: &SessionId,
        last_seen_at: Timestamp,
        forget_at: Timestamp,
        now: Timestamp,
    ) -> Result<WriteOutcome, StoreError> {
        let mut touch = evalsha(&scripts::TOUCH, &self.keys().record(id));
        touch
            .arg(&last_seen_at.as_millis().to_be_bytes()[..])
            .arg(&forget_at.as_millis().to_be_bytes()[..])
            .arg(px(forget_at))
            .arg(now.as_millis());
        let replies = self.round_trip("touch", &[touch]).await?;
        let reply = replies
            .first()
            .ok_or_else(|| bad_reply("touch", "no reply"))?;
        match write_outcome("touch", reply)? {
            WriteOutcome::Conflict { .. } => Err(bad_reply("touch", "a revision")),
            outcome => Ok(outcome),
        }
    }

    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        // The subject's index keeps the id until it is listed or swept.
        let replies = self
            .revoke("delete", &[self.delete_command(id)], &self.session_keys(id))
            .await?;
        Ok(matches!(replies.first(), Some(Value::Int(n)) if *n > 0))
    }

    async fn find_legacy(
        &self,
        key: &TokenHash,
        now: Timestamp,
    ) -> Result<Option<SessionId>, StoreError> {
        self.find_legacy_session(key, now).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.command::<String>("ping", &cmd("PING")).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_replies_map_to_outcomes() {
        let revision = Revision {
            version: 7,
            token: TokenHash([3; 32]),
        };
        let conflict = Value::BulkString(revision.to_bytes().to_vec());
        assert_eq!(
            write_outcome("update", &conflict).ok(),
            Some(WriteOutcome::Conflict { current: revision })
        );
        assert_eq!(
            write_outcome("update", &Value::Int(1)).ok(),
            Some(WriteOutcome::Written)
        );
        assert_eq!(
            write_outcome("update", &Value::Int(0)).ok(),
            Some(WriteOutcome::NotFound)
        );
        assert!(matches!(
            write_outcome("update", &Value::Int(2)),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(write_outcome("update", &Value::BulkString(vec![1; 39])).is_err());
        assert_eq!(px(Timestamp(-5)), 1);
    }
}
