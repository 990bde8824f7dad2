//! What the store asks of the server at connect: whether its eviction
//! policy could evict keys that keep revocations (refused unless allowed),
//! and whether every primary keeps its data across a restart (the
//! durability of the epochs).

use std::collections::HashMap;
use std::time::Duration;

use redis::Cmd;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use tessera_core::store::{Durability, StoreError};

use crate::config::RedisConfig;
use crate::conn::Conn;
use crate::error::{RedisStoreError, bad_reply, store_error, timed_out};

/// `CONFIG GET name` on every primary (the one server, or each primary of
/// a cluster); the value each answered, in the order of the primaries.
pub(crate) async fn config_get(
    conn: &Conn,
    name: &str,
    timeout: Duration,
) -> Result<Vec<String>, StoreError> {
    let what = format!("CONFIG GET {name}");
    let mut ask = Cmd::new();
    ask.arg("CONFIG").arg("GET").arg(name);
    let step = async {
        let mut conn = conn.clone();
        let replies = match &mut conn {
            Conn::Standalone(_) => vec![
                ask.query_async::<HashMap<String, String>>(&mut conn)
                    .await
                    .map_err(|e| store_error(&what, e))?,
            ],
            Conn::Cluster(cluster) => {
                let mut cluster = cluster.clone();
                let primaries = conn.primaries().await?;
                let mut replies = Vec::with_capacity(primaries.len());
                for (host, port) in primaries {
                    let route =
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port });
                    let reply = cluster
                        .route_command(ask.clone(), route)
                        .await
                        .map_err(|e| store_error(&what, e))?;
                    replies.push(redis::from_redis_value(reply).map_err(|e| bad_reply(&what, e))?);
                }
                replies
            }
        };
        Ok(replies
            .into_iter()
            .map(|reply| reply.get(name).cloned().unwrap_or_default())
            .collect())
    };
    tokio::time::timeout(timeout, step)
        .await
        .map_err(|_| timed_out(&what, timeout))?
}

/// Checks the server when the store connects and says whether its epochs
/// survive a restart. `reachable_now`: the store is opened lazily, and a
/// server that does not answer yet is not checked (its epochs then count
/// as volatile).
pub(crate) async fn inspect(
    conn: &Conn,
    config: &RedisConfig,
    lazy: bool,
) -> Result<Durability, RedisStoreError> {
    let timeout = if lazy {
        config.connect_timeout
    } else {
        config.operation_timeout
    };
    let policies = match config_get(conn, "maxmemory-policy", timeout).await {
        Ok(policies) => policies,
        Err(error) if lazy => {
            tracing::warn!(%error, "Redis did not answer at start: its eviction policy is not checked, and its revocation epochs count as volatile");
            return Ok(Durability::Volatile);
        }
        Err(error) if config.allow_evicting_policy => {
            tracing::warn!(%error, "cannot read Redis's maxmemory-policy; going on as allow_evicting_policy says");
            Vec::new()
        }
        Err(error) => {
            return Err(RedisStoreError::Server(format!(
                "cannot read its maxmemory-policy ({error}). Let this user run CONFIG GET, \
                 or check that the policy is noeviction or volatile-* and set \
                 allow_evicting_policy=true"
            )));
        }
    };
    if let Some(policy) = policies.iter().find(|p| evicts_any_key(p)) {
        if config.allow_evicting_policy {
            tracing::warn!(
                policy,
                "Redis evicts any key when memory is full: revocation epochs and subject indexes may go (allowed by allow_evicting_policy)"
            );
        } else {
            return Err(RedisStoreError::Server(format!(
                "its maxmemory-policy is {policy}: when memory is full it may evict any key, \
                 revocation epochs and subject indexes included, and revoked sessions would \
                 work again. Set maxmemory-policy to noeviction (or a volatile-* policy, which \
                 evicts only keys with an expiry: sessions, never epochs), or accept the risk \
                 with allow_evicting_policy=true"
            )));
        }
    }
    Ok(durability(conn, timeout).await)
}

/// Whether a `maxmemory-policy` may evict keys without an expiry.
fn evicts_any_key(policy: &str) -> bool {
    policy.starts_with("allkeys-")
}

/// Whether the epochs survive a restart: only when every primary keeps an
/// append-only file. Snapshots alone (`save`) restore the epochs of the
/// last snapshot, which can be lower than epochs handed out since, and a
/// server that keeps nothing starts empty. A server that will not say
/// (`CONFIG` refused to this user) counts as volatile.
async fn durability(conn: &Conn, timeout: Duration) -> Durability {
    match config_get(conn, "appendonly", timeout).await {
        Ok(values) if !values.is_empty() && values.iter().all(|v| v == "yes") => {
            Durability::Persistent
        }
        Ok(values) => {
            tracing::info!(
                appendonly = ?values,
                "Redis keeps no append-only file on every primary: its revocation epochs count as volatile (sealed sessions need allow_volatile_epochs)"
            );
            Durability::Volatile
        }
        Err(error) => {
            tracing::warn!(%error, "cannot ask Redis whether it persists its data: its revocation epochs count as volatile");
            Durability::Volatile
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_allkeys_policies_evict_keys_without_expiry() {
        for policy in ["allkeys-lru", "allkeys-lfu", "allkeys-random"] {
            assert!(super::evicts_any_key(policy), "{policy}");
        }
        for policy in ["noeviction", "volatile-lru", "volatile-ttl", ""] {
            assert!(!super::evicts_any_key(policy), "{policy}");
        }
    }
}
