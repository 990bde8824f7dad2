//! The revocation epochs: `{prefix}epoch` (global) and
//! `{prefix}epoch:<subject>`, plain integers that only grow.
//!
//! A global epoch that does not exist starts at the current time in
//! milliseconds (`tessera_core::store::Epochs`): a server that lost its
//! data (a restart without persistence, `FLUSHALL`, the loss of the
//! cluster node holding the key) hands out epochs above every one it
//! handed out before, which ends every session of its previous life,
//! sealed ones included. One exception: the previous versions of this
//! store kept no global epoch until the first revoke-all, so a store
//! written by them has sessions but no epoch. When the node that would
//! hold the epoch key holds other keys of the store's prefix, it did not
//! lose its data (a node loses all of it or nothing), and the epoch starts
//! at 0, as those versions read it. Either way `SET … NX`: whoever comes
//! first starts it, and an existing epoch is never lowered.
//!
//! A subject epoch cannot tell a loss from a subject never signed out
//! everywhere: a missing one reads 0. What keeps a revoked sealed session
//! revoked after a loss is the global epoch, which starts again above the
//! session's. But the manager keeps the global epoch it read for up to its
//! `epoch_refresh`, and with an old one in hand a subject epoch read after
//! the loss (0) would let the revoked seal through. So every subject epoch
//! is read together with the global epoch (one `MGET` on a single server,
//! the subject's first and then the global in a cluster), and while the
//! global epoch is higher than any this store has handed out (it moved on:
//! a loss, or a revoke-all by another node) the read fails as unavailable,
//! until the manager has read the global epoch anew through this store.
//! Sealed sessions of a subject answer 503 for at most `epoch_refresh`
//! then, instead of coming back.
//!
//! Every change of an epoch is a revocation: with
//! [`RedisConfig::wait_for_replicas`](crate::RedisConfig::wait_for_replicas)
//! it waits for the replicas (`RedisStore::revoke`).

use async_trait::async_trait;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, Value, cmd};
use tessera_core::store::{Durability, Epochs, StoreError};

use crate::conn::Conn;
use crate::error::{bad_reply, store_error};
use crate::scripts;
use crate::store::{RedisStore, evalsha};

/// Epochs above this cannot be raised to: the scripts' numbers are exact
/// up to 2^53.
const MAX_RAISED_EPOCH: u64 = 1 << 53;

/// `SCAN` batches looked through for keys beside a missing global epoch.
const ADOPTION_SCAN_BATCHES: usize = 200;

/// The current time in milliseconds: where a global epoch that does not
/// exist yet starts.
pub(crate) fn epoch_now() -> u64 {
    let now = tessera_core::Clock::now(&tessera_core::SystemClock);
    u64::try_from(now.as_millis()).unwrap_or(0)
}

impl RedisStore {
    /// Raises an epoch to at least `epoch`; a missing one counts as `start`.
    async fn raise_epoch(
        &self,
        what: &str,
        key: String,
        epoch: u64,
        start: u64,
    ) -> Result<u64, StoreError> {
        if epoch > MAX_RAISED_EPOCH {
            return Err(StoreError::invalid(format!(
                "an epoch of {epoch} is beyond what the Redis store can raise to ({MAX_RAISED_EPOCH})"
            )));
        }
        let mut raise = evalsha(&scripts::RAISE_EPOCH, &key);
        raise.arg(epoch).arg(start);
        self.epoch_script(what, key, raise).await
    }

    /// Moves an epoch on by one; a missing one starts at `start` first.
    async fn bump_epoch(&self, what: &str, key: String, start: u64) -> Result<u64, StoreError> {
        let mut bump = evalsha(&scripts::BUMP_EPOCH, &key);
        bump.arg(start);
        self.epoch_script(what, key, bump).await
    }

    async fn epoch_script(&self, what: &str, key: String, script: Cmd) -> Result<u64, StoreError> {
        let reply = self.revoke(what, &[script], &[key]).await?;
        let reached: Option<u64> = reply
            .into_iter()
            .next()
            .and_then(|value| redis::from_redis_value(value).ok());
        reached.ok_or_else(|| bad_reply(what, "no epoch"))
    }

    /// The global epoch, started (see the module's documentation) if it
    /// does not exist.
    pub(crate) async fn read_global_epoch(&self) -> Result<u64, StoreError> {
        let key = self.keys().global_epoch();
        let epoch: Option<u64> = self.command("read epoch", cmd("GET").arg(&key)).await?;
        let epoch = match epoch {
            Some(epoch) => epoch,
            None => self.start_global_epoch().await?,
        };
        self.note_global_epoch(epoch);
        Ok(epoch)
    }

    /// Starts the global epoch if it does not exist; returns it.
    pub(crate) async fn start_global_epoch(&self) -> Result<u64, StoreError> {
        let key = self.keys().global_epoch();
        let start = if self.keys_beside_global_epoch().await? {
            0
        } else {
            epoch_now()
        };
        let mut set = cmd("SET");
        set.arg(&key).arg(start).arg("NX").arg("GET");
        let what = "start epoch";
        let reply = self.revoke(what, &[set], &[key]).await?;
        let before: Option<u64> = reply
            .into_iter()
            .next()
            .map(redis::from_redis_value)
            .transpose()
            .map_err(|e| bad_reply(what, e))?
            .flatten();
        match before {
            Some(epoch) => Ok(epoch),
            None => {
                if start == 0 {
                    tracing::info!(
                        prefix = self.prefix(),
                        "sessions but no global revocation epoch in Redis: a store of an earlier version that never revoked everything; its epoch starts at 0"
                    );
                } else {
                    tracing::info!(
                        prefix = self.prefix(),
                        epoch = start,
                        "no global revocation epoch in Redis (a new store, or one that lost its data): it starts at the current time"
                    );
                }
                Ok(start)
            }
        }
    }

    /// Whether the node that holds (or would hold) the global epoch key
    /// holds other keys of this prefix.
    async fn keys_beside_global_epoch(&self) -> Result<bool, StoreError> {
        let epoch_key = self.keys().global_epoch();
        let pattern = self.keys().all_pattern();
        let mut cursor = 0u64;
        for _ in 0..ADOPTION_SCAN_BATCHES {
            let mut scan = cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000);
            let mut conn = self.conn();
            let reply: Value = self
                .timed("look for keys beside the epoch", async {
                    match &mut conn {
                        Conn::Cluster(cluster) => {
                            let route =
                                RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(
                                    Route::with_key(&epoch_key, SlotAddr::Master),
                                ));
                            cluster.route_command(scan, route).await
                        }
                        Conn::Standalone(_) => scan.query_async(&mut conn).await,
                    }
                    .map_err(|e| store_error("scan", e))
                })
                .await?;
            let (next, keys): (u64, Vec<String>) =
                redis::from_redis_value(reply).map_err(|e| bad_reply("scan", e))?;
            if keys.iter().any(|key| *key != epoch_key) {
                return Ok(true);
            }
            if next == 0 {
                return Ok(false);
            }
            cursor = next;
        }
        Ok(false)
    }
}

impl RedisStore {
    /// A subject's epoch (0 when missing) and the global epoch, read so
    /// that a loss between the two reads shows in the second.
    async fn subject_and_global_epoch(
        &self,
        subject: &str,
    ) -> Result<(u64, Option<u64>), StoreError> {
        let what = "read subject epoch";
        let subject_key = self.keys().subject_epoch(subject);
        let global_key = self.keys().global_epoch();
        if self.is_cluster() {
            // Two slots: the subject's first, then the global one.
            let epoch: Option<u64> = self.command(what, cmd("GET").arg(&subject_key)).await?;
            let global: Option<u64> = self.command(what, cmd("GET").arg(&global_key)).await?;
            return Ok((epoch.unwrap_or(0), global));
        }
        // One server: `MGET` reads both at one instant.
        let (epoch, global): (Option<u64>, Option<u64>) = self
            .command(what, cmd("MGET").arg(&subject_key).arg(&global_key))
            .await?;
        Ok((epoch.unwrap_or(0), global))
    }
}

#[async_trait]
impl Epochs for RedisStore {
    /// `Persistent` only when every primary keeps an append-only file
    /// (asked at connect); a store opened lazily could not ask, and counts
    /// as volatile.
    fn durability(&self) -> Durability {
        self.durability_found()
    }

    async fn global_epoch(&self) -> Result<u64, StoreError> {
        self.read_global_epoch().await
    }

    async fn bump_global_epoch(&self) -> Result<u64, StoreError> {
        let epoch = self
            .bump_epoch("bump epoch", self.keys().global_epoch(), epoch_now())
            .await?;
        self.note_global_epoch(epoch);
        Ok(epoch)
    }

    async fn raise_global_epoch(&self, epoch: u64) -> Result<u64, StoreError> {
        let key = self.keys().global_epoch();
        let reached = self
            .raise_epoch("raise epoch", key, epoch, epoch_now())
            .await?;
        self.note_global_epoch(reached);
        Ok(reached)
    }

    /// Fails as unavailable while the global epoch is higher than any this
    /// store handed out (see the module's documentation).
    async fn subject_epoch(&self, subject: &str) -> Result<u64, StoreError> {
        let (epoch, global) = self.subject_and_global_epoch(subject).await?;
        let global = match global {
            Some(global) => global,
            None => self.start_global_epoch().await?,
        };
        let known = self.known_global_epoch();
        if known == 0 {
            // Nothing handed out yet, so nothing in hand can be stale.
            self.note_global_epoch(global);
        } else if global > known {
            return Err(StoreError::Unavailable {
                message: format!(
                    "read subject epoch: the global revocation epoch moved on ({known} to \
                     {global}: a revoke-all by another node, or Redis lost its data) since this \
                     node last read it; sealed sessions are checked again once it has been read \
                     anew (within the manager's epoch_refresh)"
                ),
                source: None,
            });
        }
        Ok(epoch)
    }

    async fn bump_subject_epoch(&self, subject: &str) -> Result<u64, StoreError> {
        self.bump_epoch("bump subject epoch", self.keys().subject_epoch(subject), 0)
            .await
    }

    async fn raise_subject_epoch(&self, subject: &str, epoch: u64) -> Result<u64, StoreError> {
        let key = self.keys().subject_epoch(subject);
        self.raise_epoch("raise subject epoch", key, epoch, 0).await
    }
}
