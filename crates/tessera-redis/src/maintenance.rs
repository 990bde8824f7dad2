//! Maintenance: paging through every live record (`export_page`) and
//! tidying the subject indexes (`sweep_expired`), both by `SCAN` on each
//! primary of a cluster in turn (on the only server otherwise).
//!
//! The export cursor is `r2.<node>.<scan cursor>.<ids>`: the primary's
//! index (in the cluster's primaries sorted by address; 0 on a single
//! server), the `SCAN` cursor of the batch being read, and the ids of that
//! batch that earlier pages already returned (22 characters each; empty
//! once a batch is done). A batch cut by the page limit is asked for again
//! and what it still holds is returned: `SCAN` may answer a cursor
//! differently once the table was resized, but what moved out of its
//! buckets comes in later ones, so nothing is missed (a record may come
//! twice). Batches are about as large as a page, so the ids a cursor
//! carries stay few. A cursor stays valid while the cluster keeps the same
//! primaries.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, Value, cmd};
use tessera_core::store::{Maintenance, Page, StoreError};
use tessera_core::{SessionId, SessionRecord, Timestamp};

use crate::conn::Conn;
use crate::error::{bad_reply, store_error};
use crate::keys::id_of_field;
use crate::store::{RedisStore, live_record};

/// An index field as read, and the session it names.
type Entry = (Vec<u8>, SessionId);

/// Keys asked of `SCAN` per batch by the sweep.
const SWEEP_SCAN_COUNT: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Position {
    node: usize,
    scan: u64,
    /// Ids of the batch at `scan` already returned.
    done: Vec<SessionId>,
}

impl Position {
    const START: Position = Position {
        node: 0,
        scan: 0,
        done: Vec::new(),
    };

    fn encode(&self) -> String {
        let mut text = format!("r2.{}.{}.", self.node, self.scan);
        for id in &self.done {
            text.push_str(&id.to_string());
        }
        text
    }

    fn parse(text: &str) -> Result<Self, StoreError> {
        let bad = || StoreError::Invalid {
            message: "not an export cursor of the Redis store".to_owned(),
        };
        let mut parts = text.split('.');
        if parts.next() != Some("r2") {
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
        let ids = parts.next().ok_or_else(bad)?;
        if parts.next().is_some() || ids.len() % 22 != 0 || !ids.is_ascii() {
            return Err(bad());
        }
        let done = (0..ids.len())
            .step_by(22)
            .map(|at| SessionId::parse(&ids[at..at + 22]).map_err(|_| bad()))
            .collect::<Result<_, _>>()?;
        Ok(Self { node, scan, done })
    }

    /// Where the batch after one whose `SCAN` answered `next` starts.
    fn after_batch(&self, next: u64) -> Self {
        if next == 0 {
            Position {
                node: self.node + 1,
                scan: 0,
                done: Vec::new(),
            }
        } else {
            Position {
                node: self.node,
                scan: next,
                done: Vec::new(),
            }
        }
    }
}

impl RedisStore {
    /// The primaries to scan: the cluster's, or the one server (empty).
    async fn scan_nodes(&self) -> Result<Vec<(String, u16)>, StoreError> {
        if !self.is_cluster() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn();
        self.timed("list cluster primaries", conn.primaries()).await
    }

    /// One `SCAN` batch of keys of one type matching `pattern` on one node.
    async fn scan_batch(
        &self,
        nodes: &[(String, u16)],
        position: &Position,
        pattern: &str,
        kind: &str,
        count: usize,
    ) -> Result<(u64, Vec<String>), StoreError> {
        let mut scan = cmd("SCAN");
        scan.arg(position.scan)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(count)
            .arg("TYPE")
            .arg(kind);
        let mut conn = self.conn();
        let reply: Value = self
            .timed("scan", async {
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
                .map_err(|e| store_error("scan", e))
            })
            .await?;
        redis::from_redis_value(reply).map_err(|e| bad_reply("scan", e))
    }

    /// Drops the entries of records that are gone from a batch of buckets
    /// of the subject index; returns how many went. (Entries of records
    /// that moved to another subject go when the subject is listed.)
    async fn tidy_indexes(&self, index_keys: &[String]) -> Result<u64, StoreError> {
        let listings: Vec<Cmd> = index_keys
            .iter()
            .map(|key| {
                let mut fields = cmd("HKEYS");
                fields.arg(key);
                fields
            })
            .collect();
        // Each bucket's fields, with the session each names.
        let mut entries: Vec<(&String, Vec<Entry>)> = Vec::new();
        for (key, reply) in index_keys
            .iter()
            .zip(self.round_trip("sweep", &listings).await?)
        {
            let fields: Vec<Vec<u8>> =
                redis::from_redis_value(reply).map_err(|e| bad_reply("sweep", e))?;
            let named = fields
                .into_iter()
                .filter_map(|field| Some((id_of_field(&field)?, field)))
                .map(|(id, field)| (field, id))
                .collect();
            entries.push((key, named));
        }
        let ids: Vec<SessionId> = entries
            .iter()
            .flat_map(|(_, named)| named.iter().map(|(_, id)| *id))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let checks: Vec<Cmd> = ids
            .iter()
            .map(|id| {
                let mut exists = cmd("EXISTS");
                exists.arg(self.keys().record(id));
                exists
            })
            .collect();
        let present: HashMap<SessionId, bool> = ids
            .iter()
            .copied()
            .zip(
                self.round_trip("sweep", &checks)
                    .await?
                    .into_iter()
                    .map(|reply| matches!(reply, Value::Int(n) if n > 0)),
            )
            .collect();
        let mut drops = Vec::new();
        let mut dropped = 0u64;
        for (key, named) in &entries {
            let gone: Vec<&Vec<u8>> = named
                .iter()
                .filter(|(_, id)| !present.get(id).copied().unwrap_or(true))
                .map(|(field, _)| field)
                .collect();
            if gone.is_empty() {
                continue;
            }
            let mut drop = cmd("HDEL");
            drop.arg(key.as_str());
            for field in &gone {
                drop.arg(&field[..]);
            }
            drops.push(drop);
            dropped += gone.len() as u64;
        }
        self.round_trip("sweep", &drops).await?;
        Ok(dropped)
    }
}

impl RedisStore {
    /// Deletes the attachments among `keys` whose session has no record;
    /// returns how many went.
    async fn drop_orphan_attachments(&self, keys: &[String]) -> Result<u64, StoreError> {
        let owned: Vec<(&String, SessionId)> = keys
            .iter()
            .filter_map(|key| Some((key, self.keys().id_of_attachment(key)?)))
            .collect();
        let checks: Vec<Cmd> = owned
            .iter()
            .map(|(_, id)| {
                let mut exists = cmd("EXISTS");
                exists.arg(self.keys().record(id));
                exists
            })
            .collect();
        let replies = self.round_trip("sweep", &checks).await?;
        let drops: Vec<Cmd> = owned
            .iter()
            .zip(replies)
            .filter(|(_, reply)| matches!(reply, Value::Int(0)))
            .map(|((key, _), _)| {
                let mut drop = cmd("DEL");
                drop.arg(key.as_str());
                drop
            })
            .collect();
        let dropped = drops.len() as u64;
        self.round_trip("sweep", &drops).await?;
        Ok(dropped)
    }
}

#[async_trait]
impl Maintenance for RedisStore {
    /// Redis forgets records and attachments by itself at their deadline
    /// (`PXAT`); this drops the index entries records leave and the
    /// attachments of sessions that are gone, on every primary, and the
    /// journal entries past their deadline.
    async fn sweep_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        let nodes = self.scan_nodes().await?;
        let mut removed = 0;
        let pattern = self.keys().index_pattern();
        let mut position = Position::START;
        while position.node < nodes.len().max(1) {
            let (next, keys) = self
                .scan_batch(&nodes, &position, &pattern, "hash", SWEEP_SCAN_COUNT)
                .await?;
            removed += self.tidy_indexes(&keys).await?;
            position = position.after_batch(next);
        }
        let pattern = self.keys().attachment_pattern();
        let mut position = Position::START;
        while position.node < nodes.len().max(1) {
            let (next, keys) = self
                .scan_batch(&nodes, &position, &pattern, "string", SWEEP_SCAN_COUNT)
                .await?;
            removed += self.drop_orphan_attachments(&keys).await?;
            position = position.after_batch(next);
        }
        removed += self.sweep_journal(now).await?;
        Ok(removed)
    }

    async fn export_page(
        &self,
        cursor: Option<&str>,
        limit: usize,
        now: Timestamp,
    ) -> Result<Page<SessionRecord>, StoreError> {
        let limit = limit.max(1);
        let mut position = match cursor {
            Some(text) => Position::parse(text)?,
            None => Position::START,
        };
        let nodes = self.scan_nodes().await?;
        let node_count = nodes.len().max(1);
        let pattern = self.keys().record_pattern();
        let mut items = Vec::new();
        let mut room = limit;
        while position.node < node_count {
            let (next, keys) = self
                .scan_batch(&nodes, &position, &pattern, "string", limit.clamp(10, 1000))
                .await?;
            let batch: Vec<SessionId> = keys
                .iter()
                .filter_map(|key| self.keys().id_of_record(key))
                .filter(|id| !position.done.contains(id))
                .collect();
            if batch.len() > room && room < limit {
                // Next time, from this batch on.
                return Ok(Page {
                    items,
                    next: Some(position.encode()),
                });
            }
            let taken = &batch[..batch.len().min(room)];
            for value in self
                .read_records("export", taken)
                .await?
                .into_iter()
                .flatten()
            {
                if let Some(record) = live_record(&value, now)? {
                    items.push(record);
                }
            }
            room -= taken.len();
            if taken.len() < batch.len() {
                position.done.extend_from_slice(taken);
                return Ok(Page {
                    items,
                    next: Some(position.encode()),
                });
            }
            position = position.after_batch(next);
            if room == 0 && position.node < node_count {
                return Ok(Page {
                    items,
                    next: Some(position.encode()),
                });
            }
        }
        Ok(Page { items, next: None })
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
            done: vec![SessionId([1; 16]), SessionId([200; 16])],
        };
        assert_eq!(Position::parse(&position.encode()).ok(), Some(position));
        assert_eq!(Position::parse("r2.0.0.").ok(), Some(Position::START));
        for bad in [
            "",
            "not a cursor",
            "r2.1.2",
            "r2.1.2.AAAA",
            "r2.1.2..",
            "r1.0.0.0",
            "r2.x.0.",
            "zz",
        ] {
            assert!(Position::parse(bad).is_err(), "{bad}");
        }
    }
}
