//! One connection type over a standalone server or a cluster: both are
//! multiplexed, cheap to clone and reconnect by themselves.

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Client, Cmd, Pipeline, RedisError, RedisFuture, RedisResult, TlsCertificates, Value};
use tessera_core::store::StoreError;

use crate::config::{RedisConfig, Topology};
use crate::error::{RedisStoreError, store_error};

/// A multiplexed connection to a server or a cluster.
#[derive(Clone)]
pub(crate) enum Conn {
    /// One server, through a manager that reconnects when the link breaks.
    Standalone(ConnectionManager),
    /// A cluster: one multiplexed connection per node, slots followed.
    Cluster(ClusterConnection),
}

impl Conn {
    /// Connects as configured. `lazy` (standalone only) returns at once and
    /// connects on first use.
    pub(crate) async fn open(config: &RedisConfig, lazy: bool) -> Result<Self, RedisStoreError> {
        let roots = config.root_pem()?;
        let certificates = TlsCertificates {
            client_tls: None,
            root_cert: roots,
        };
        let use_certs = config.tls && certificates.root_cert.is_some();
        match &config.topology {
            Topology::Standalone(info) => {
                let client = if use_certs {
                    Client::build_with_tls((**info).clone(), certificates)
                } else {
                    Client::open((**info).clone())
                }
                .map_err(|e| RedisStoreError::Config(format!("Redis client: {e}")))?;
                let manager_config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(config.connect_timeout))
                    .set_response_timeout(Some(config.operation_timeout))
                    .set_number_of_retries(2)
                    .set_max_delay(std::time::Duration::from_millis(500));
                let manager = if lazy {
                    ConnectionManager::new_lazy_with_config(client, manager_config)
                        .map_err(|e| RedisStoreError::Config(format!("Redis client: {e}")))?
                } else {
                    let connect = ConnectionManager::new_with_config(client, manager_config);
                    tokio::time::timeout(config.connect_timeout, connect)
                        .await
                        .map_err(|_| {
                            RedisStoreError::Unavailable(crate::error::timed_out(
                                "connect",
                                config.connect_timeout,
                            ))
                        })?
                        .map_err(|e| RedisStoreError::Unavailable(store_error("connect", e)))?
                };
                Ok(Conn::Standalone(manager))
            }
            Topology::Cluster(nodes) => {
                let mut builder = ClusterClientBuilder::new(nodes.clone())
                    .connection_timeout(config.connect_timeout)
                    .response_timeout(config.operation_timeout)
                    .retries(2)
                    .max_retry_wait(500);
                if use_certs {
                    builder = builder.certs(certificates);
                }
                let client = builder
                    .build()
                    .map_err(|e| RedisStoreError::Config(format!("Redis Cluster client: {e}")))?;
                let connect = client.get_async_connection();
                let connection = tokio::time::timeout(config.connect_timeout, connect)
                    .await
                    .map_err(|_| {
                        RedisStoreError::Unavailable(crate::error::timed_out(
                            "connect to the cluster",
                            config.connect_timeout,
                        ))
                    })?
                    .map_err(|e| {
                        RedisStoreError::Unavailable(store_error("connect to the cluster", e))
                    })?;
                Ok(Conn::Cluster(connection))
            }
        }
    }

    /// Sends `commands` in one round trip: one pipeline to a single server;
    /// to a cluster, each command to the node of its key, all at once. The
    /// reply of each command, or its error; `Err` when nothing came back
    /// (a single server that cannot be reached).
    pub(crate) async fn round_trip(
        &self,
        commands: &[Cmd],
    ) -> Result<Vec<RedisResult<Value>>, RedisError> {
        if let [command] = commands {
            return Ok(vec![command.query_async(&mut self.clone()).await]);
        }
        match self {
            Conn::Standalone(manager) => {
                let mut pipeline = redis::pipe();
                pipeline.ignore_errors();
                for command in commands {
                    pipeline.add_command(command.clone());
                }
                let replies: Vec<Value> = pipeline.query_async(&mut manager.clone()).await?;
                Ok(replies
                    .into_iter()
                    .map(|reply| match reply {
                        Value::ServerError(error) => Err(error.into()),
                        other => Ok(other),
                    })
                    .collect())
            }
            Conn::Cluster(cluster) => Ok(futures_util::future::join_all(commands.iter().map(
                |command| {
                    let mut cluster = cluster.clone();
                    async move { command.query_async::<Value>(&mut cluster).await }
                },
            ))
            .await),
        }
    }

    /// The primaries of a cluster (empty for a standalone server), as
    /// `host:port`, in a stable order.
    pub(crate) async fn primaries(&mut self) -> Result<Vec<(String, u16)>, StoreError> {
        let Conn::Cluster(_) = self else {
            return Ok(Vec::new());
        };
        let slots: Value = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(self)
            .await
            .map_err(|e| store_error("cluster slots", e))?;
        let mut nodes = Vec::new();
        if let Value::Array(ranges) = slots {
            for range in ranges {
                let Value::Array(parts) = range else { continue };
                let Some(Value::Array(primary)) = parts.get(2) else {
                    continue;
                };
                let host = match primary.first() {
                    Some(Value::BulkString(host)) => String::from_utf8_lossy(host).into_owned(),
                    Some(Value::SimpleString(host)) => host.clone(),
                    _ => continue,
                };
                let Some(Value::Int(port)) = primary.get(1) else {
                    continue;
                };
                let Ok(port) = u16::try_from(*port) else {
                    continue;
                };
                nodes.push((host, port));
            }
        }
        nodes.sort();
        nodes.dedup();
        Ok(nodes)
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Standalone(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Standalone(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Standalone(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}
