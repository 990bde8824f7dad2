//! The near cache's invalidation bus on Redis pub/sub: every change is
//! published on one channel (`<prefix>invalidate`), which every node
//! subscribes to. In a cluster, `PUBLISH` reaches subscribers on every
//! node, so each process subscribes through one node and moves to the
//! next when that one fails.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use redis::{Client, ConnectionInfo, TlsCertificates};
use tessera_core::near_cache::{BusEvent, Invalidation, InvalidationBus};
use tessera_core::store::StoreError;
use tokio::sync::mpsc;

use crate::config::{RedisConfig, Topology};
use crate::conn::Conn;
use crate::error::{RedisStoreError, store_error};
use crate::store::RedisStore;

/// Announces session changes to every node's near cache through Redis
/// pub/sub, and listens for theirs. Build it beside a [`RedisStore`] and
/// give both to [`NearCache::new`](tessera_core::near_cache::NearCache::new).
#[derive(Clone)]
pub struct RedisBus {
    publisher: Conn,
    subscribers: Arc<Vec<Client>>,
    channel: String,
    timeout: Duration,
}

impl std::fmt::Debug for RedisBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBus")
            .field("channel", &self.channel)
            .field("nodes", &self.subscribers.len())
            .finish()
    }
}

impl RedisBus {
    /// A bus on the server or cluster `config` names, publishing through
    /// `store`'s connection.
    pub fn new(store: &RedisStore, config: &RedisConfig) -> Result<Self, RedisStoreError> {
        let roots = config.root_pem()?;
        let client = |info: &ConnectionInfo| {
            match (&roots, config.tls) {
                (Some(pem), true) => Client::build_with_tls(
                    info.clone(),
                    TlsCertificates {
                        client_tls: None,
                        root_cert: Some(pem.clone()),
                    },
                ),
                _ => Client::open(info.clone()),
            }
            .map_err(|e| RedisStoreError::Config(format!("Redis pub/sub client: {e}")))
        };
        let subscribers = match &config.topology {
            Topology::Standalone(info) => vec![client(info)?],
            Topology::Cluster(nodes) => nodes.iter().map(client).collect::<Result<_, _>>()?,
        };
        Ok(Self {
            publisher: store.conn(),
            subscribers: Arc::new(subscribers),
            channel: format!("{}invalidate", store.prefix()),
            timeout: config.operation_timeout,
        })
    }

    /// The channel changes are published on.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    async fn send(&self, payload: Vec<u8>) -> Result<(), StoreError> {
        let mut conn = self.publisher.clone();
        let mut command = redis::cmd("PUBLISH");
        command.arg(&self.channel).arg(payload);
        let publish = command.query_async::<i64>(&mut conn);
        match tokio::time::timeout(self.timeout, publish).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(store_error("publish an invalidation", error)),
            Err(_) => Err(crate::error::timed_out(
                "publish an invalidation",
                self.timeout,
            )),
        }
    }
}

#[async_trait]
impl InvalidationBus for RedisBus {
    async fn publish(&self, change: &Invalidation) -> Result<(), StoreError> {
        self.send(change.to_bytes()).await
    }

    /// An empty message: every listener hears it as [`BusEvent::Alive`].
    async fn heartbeat(&self) -> Result<(), StoreError> {
        self.send(Vec::new()).await
    }

    fn subscribe(&self, events: mpsc::Sender<BusEvent>) -> tokio::task::JoinHandle<()> {
        let bus = self.clone();
        tokio::spawn(async move {
            let mut node = 0usize;
            let mut backoff = Duration::from_millis(50);
            loop {
                let client = &bus.subscribers[node % bus.subscribers.len().max(1)];
                node += 1;
                match bus.listen(client, &events).await {
                    Listen::Stopped => return,
                    Listen::Heard => backoff = Duration::from_millis(50),
                    Listen::Failed => {}
                }
                if events.send(BusEvent::Lost).await.is_err() {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        })
    }
}

enum Listen {
    /// The cache is gone.
    Stopped,
    /// Subscribed and heard messages until the connection ended.
    Heard,
    /// Could not subscribe.
    Failed,
}

impl RedisBus {
    /// Subscribes through one node and forwards what it hears until the
    /// connection ends.
    async fn listen(&self, client: &Client, events: &mpsc::Sender<BusEvent>) -> Listen {
        let subscribed = tokio::time::timeout(self.timeout, async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&self.channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        })
        .await;
        let pubsub = match subscribed {
            Ok(Ok(pubsub)) => pubsub,
            Ok(Err(error)) => {
                tracing::debug!(%error, "near cache: cannot subscribe to invalidations");
                return Listen::Failed;
            }
            Err(_) => return Listen::Failed,
        };
        if events.send(BusEvent::Connected).await.is_err() {
            return Listen::Stopped;
        }
        let mut messages = pubsub.into_on_message();
        while let Some(message) = messages.next().await {
            let payload = message.get_payload_bytes();
            let event = if payload.is_empty() {
                BusEvent::Alive
            } else {
                match Invalidation::from_bytes(payload) {
                    Some(change) => BusEvent::Invalidate(change),
                    None => {
                        tracing::warn!(
                            channel = %self.channel,
                            "near cache: ignoring a message that is not an invalidation"
                        );
                        continue;
                    }
                }
            };
            if events.send(event).await.is_err() {
                return Listen::Stopped;
            }
        }
        tracing::warn!(
            "near cache: the invalidation subscription ended; bypassing the cache until it is back"
        );
        Listen::Heard
    }
}
