//! Paging through every live session (`export_page`): `SCAN` over the live
//! record keys, on each primary of a cluster in turn.
//!
//! The cursor is `r1.<node>.<scan cursor>.<skip>`: the primary's index (in
//! the cluster's primaries sorted by address; 0 on a single server), the
//! `SCAN` cursor of the batch being read, and how many keys of that batch
//! earlier pages already covered. A batch is re-read from its cursor, so
//! pages are exact while nothing is written; during writes `SCAN`'s own
//! guarantee holds (every key present throughout is returned at least once).
//! A cursor stays valid while the cluster keeps the same primaries.

use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Value, cmd};
use tessera_core::{ExportPage, StoreError, Timestamp};

use crate::conn::Conn;
use crate::error::store_error;
use crate::records::decode_hmget;
use crate::store::RedisStore;

/// Keys asked of `SCAN` per batch at least.
const SCAN_COUNT: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Position {
    node: usize,
    scan: u64,
    skip: usize,
}

impl Position {
    fn encode(self) -> String {
        format!("r1.{}.{}.{}", self.node, self.scan, self.skip)
    }

    fn parse(text: &str) -> Result<Self, StoreError> {
        let bad = || StoreError::Invalid {
            message: format!("`{text}` is not an export cursor of the Redis store"),
        };
        let mut parts = text.split('.');
        if parts.next() != Some("r1") {
            return Err(bad());
        }
        let mut number = || {
            parts
                .next()
                .and_then(|p| p.parse::<u64>().ok())
                .ok_or_else(bad)
        };
        let node = usize::try_from(number()?).map_err(|_| bad())?;
        let scan = number()?;
        let skip = usize::try_from(number()?).map_err(|_| bad())?;
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Self { node, scan, skip })
    }
}

impl RedisStore {
    /// One `SCAN` batch of live record keys on one node.
    async fn scan_batch(
        &self,
        nodes: &[(String, u16)],
        position: Position,
    ) -> Result<(u64, Vec<String>), StoreError> {
        let mut scan = cmd("SCAN");
        scan.arg(position.scan)
            .arg("MATCH")
            .arg(self.keys().live_pattern())
            .arg("COUNT")
            .arg(SCAN_COUNT)
            .arg("TYPE")
            .arg("hash");
        let mut conn = self.conn();
        let reply: Value = self
            .timed("scan sessions", async {
                match (&mut conn, nodes.get(position.node)) {
                    (Conn::Cluster(cluster), Some((host, port))) => {
                        let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                            host: host.clone(),
                            port: *port,
                        });
                        cluster.route_command(scan, route).await
                    }
                    _ => scan.query_async(&mut conn).await,
                }
                .map_err(|e| store_error("scan sessions", e))
            })
            .await?;
        let (next, keys): (u64, Vec<String>) = redis::from_redis_value(reply)
            .map_err(|e| crate::error::bad_reply("scan sessions", e))?;
        Ok((next, keys))
    }

    pub(crate) async fn export(
        &self,
        cursor: Option<&str>,
        limit: usize,
        now: Timestamp,
    ) -> Result<ExportPage, StoreError> {
        let limit = limit.max(1);
        let mut position = match cursor {
            Some(text) => Position::parse(text)?,
            None => Position {
                node: 0,
                scan: 0,
                skip: 0,
            },
        };
        let nodes = if self.is_cluster() {
            let mut conn = self.conn();
            self.timed("list cluster primaries", conn.primaries())
                .await?
        } else {
            Vec::new()
        };
        let node_count = nodes.len().max(1);
        let mut sessions = Vec::new();
        while position.node < node_count {
            let (next_scan, keys) = self.scan_batch(&nodes, position).await?;
            let batch: Vec<&String> = keys.iter().skip(position.skip).collect();
            let replies = futures_util::future::try_join_all(batch.iter().map(|key| async move {
                let mut read = cmd("HMGET");
                read.arg(key.as_str()).arg("k").arg("r").arg("s");
                let mut conn = self.conn();
                self.timed("read sessions", async {
                    read.query_async::<Value>(&mut conn)
                        .await
                        .map_err(|e| store_error("read sessions", e))
                })
                .await
            }))
            .await?;
            for (index, reply) in replies.into_iter().enumerate() {
                if let Some(live) = decode_hmget(reply, now)? {
                    sessions.push(live);
                }
                if sessions.len() == limit && index + 1 < batch.len() {
                    position.skip += index + 1;
                    return Ok(ExportPage {
                        sessions,
                        next: Some(position.encode()),
                    });
                }
            }
            position = if next_scan == 0 {
                Position {
                    node: position.node + 1,
                    scan: 0,
                    skip: 0,
                }
            } else {
                Position {
                    node: position.node,
                    scan: next_scan,
                    skip: 0,
                }
            };
            if sessions.len() == limit && position.node < node_count {
                return Ok(ExportPage {
                    sessions,
                    next: Some(position.encode()),
                });
            }
        }
        Ok(ExportPage {
            sessions,
            next: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_foreign_ones_are_refused() {
        let position = Position {
            node: 2,
            scan: 123_456,
            skip: 7,
        };
        assert_eq!(Position::parse(&position.encode()).ok(), Some(position));
        for bad in [
            "",
            "not a cursor",
            "r1.1.2",
            "r1.1.2.3.4",
            "r2.0.0.0",
            "r1.x.0.0",
        ] {
            assert!(Position::parse(bad).is_err(), "{bad}");
        }
    }
}
