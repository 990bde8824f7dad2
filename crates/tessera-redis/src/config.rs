//! Connection settings: the store URL (standalone or cluster), key prefix,
//! timeouts and TLS roots.

use std::path::PathBuf;
use std::time::Duration;

use redis::{ConnectionInfo, IntoConnectionInfo};
use tessera_core::store::redact_url;

use crate::error::RedisStoreError;

/// The key prefix used unless another is configured.
pub const DEFAULT_PREFIX: &str = "tss:";
/// Longest key prefix accepted.
pub const MAX_PREFIX_LEN: usize = 64;
/// How long a revocation waits for its replicas unless configured.
const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_millis(500);

/// Standalone server or cluster.
#[derive(Clone, Debug)]
pub(crate) enum Topology {
    /// One server (`redis://`, `rediss://`).
    Standalone(Box<ConnectionInfo>),
    /// A Redis Cluster, reached through any of these seed nodes
    /// (`redis+cluster://`, `rediss+cluster://`).
    Cluster(Vec<ConnectionInfo>),
}

/// How to reach Redis and how to name keys.
///
/// ```
/// use std::time::Duration;
/// use tessera_redis::RedisConfig;
///
/// let config = RedisConfig::from_url("redis://127.0.0.1:6379/2?prefix=app1:")?
///     .operation_timeout(Duration::from_millis(500));
/// assert_eq!(config.prefix_value(), "app1:");
/// assert!(!config.is_cluster());
/// let cluster = RedisConfig::from_url("redis+cluster://10.0.0.1:7000,10.0.0.2:7000")?;
/// assert!(cluster.is_cluster());
/// # Ok::<(), tessera_redis::RedisStoreError>(())
/// ```
#[derive(Clone)]
pub struct RedisConfig {
    pub(crate) topology: Topology,
    pub(crate) prefix: String,
    pub(crate) operation_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) tls_ca_file: Option<PathBuf>,
    pub(crate) tls_root_pem: Option<Vec<u8>>,
    pub(crate) tls: bool,
    pub(crate) wait_replicas: u32,
    pub(crate) wait_timeout: Duration,
    pub(crate) allow_evicting_policy: bool,
    redacted: String,
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.redacted)
            .field("prefix", &self.prefix)
            .field("operation_timeout", &self.operation_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("wait_replicas", &self.wait_replicas)
            .field("wait_timeout", &self.wait_timeout)
            .field("allow_evicting_policy", &self.allow_evicting_policy)
            .finish_non_exhaustive()
    }
}

impl RedisConfig {
    /// Settings from a URL:
    ///
    /// * `redis://[user:password@]host:port[/db]` — one server;
    /// * `rediss://…` — the same over TLS;
    /// * `redis+cluster://[user:password@]host:port,host:port,…` (or
    ///   `rediss+cluster://`) — a Redis Cluster, reached through any of the
    ///   seed nodes listed;
    ///
    /// with the query parameters `prefix` (key prefix, default `tss:`),
    /// `operation_timeout_ms` (default 2000), `connect_timeout_ms` (default
    /// 2000), `tls_ca_file` (a PEM file of root certificates to trust
    /// instead of the system's), `wait_replicas` and `wait_timeout_ms` (see
    /// [`wait_for_replicas`](Self::wait_for_replicas)) and
    /// `allow_evicting_policy=true` (see
    /// [`allow_evicting_policy`](Self::allow_evicting_policy)).
    pub fn from_url(url: &str) -> Result<Self, RedisStoreError> {
        let config_err = |problem: String| RedisStoreError::Config(problem);
        let redacted = redact_url(url);
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(config_err(format!(
                "`{redacted}` is not a Redis URL (expected redis://, rediss:// or redis+cluster://)"
            )));
        };
        let (cluster, tls) = match scheme {
            "redis" => (false, false),
            "rediss" => (false, true),
            "redis+cluster" => (true, false),
            "rediss+cluster" => (true, true),
            other => {
                return Err(config_err(format!(
                    "unknown scheme `{other}://` (expected redis://, rediss://, redis+cluster:// or rediss+cluster://)"
                )));
            }
        };
        let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut prefix = DEFAULT_PREFIX.to_owned();
        let mut operation_timeout = Duration::from_secs(2);
        let mut connect_timeout = Duration::from_secs(2);
        let mut tls_ca_file = None;
        let mut wait_replicas = 0;
        let mut wait_timeout = DEFAULT_WAIT_TIMEOUT;
        let mut allow_evicting_policy = false;
        let mut passed_on = Vec::new();
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let millis = |value: &str| {
                value
                    .parse::<u64>()
                    .ok()
                    .filter(|ms| *ms > 0)
                    .map(Duration::from_millis)
                    .ok_or_else(|| {
                        config_err(format!(
                            "`{key}` must be a positive number of milliseconds, got `{value}`"
                        ))
                    })
            };
            match key.as_ref() {
                "prefix" => prefix = value.into_owned(),
                "operation_timeout_ms" => operation_timeout = millis(&value)?,
                "connect_timeout_ms" => connect_timeout = millis(&value)?,
                "tls_ca_file" => tls_ca_file = Some(PathBuf::from(value.as_ref())),
                "wait_replicas" => {
                    wait_replicas = value.parse::<u32>().map_err(|_| {
                        config_err(format!(
                            "`wait_replicas` must be a number of replicas (0 for none), got `{value}`"
                        ))
                    })?;
                }
                "wait_timeout_ms" => wait_timeout = millis(&value)?,
                "allow_evicting_policy" => {
                    allow_evicting_policy = match value.as_ref() {
                        "true" => true,
                        "false" => false,
                        other => {
                            return Err(config_err(format!(
                                "`allow_evicting_policy` must be true or false, got `{other}`"
                            )));
                        }
                    };
                }
                _ => passed_on.push((key.into_owned(), value.into_owned())),
            }
        }
        let client_query = if passed_on.is_empty() {
            String::new()
        } else {
            let mut encoder = url::form_urlencoded::Serializer::new(String::new());
            for (key, value) in &passed_on {
                encoder.append_pair(key, value);
            }
            format!("?{}", encoder.finish())
        };
        let node_scheme = if tls { "rediss" } else { "redis" };
        let topology = if cluster {
            let (userinfo, hosts) = match before_query.rsplit_once('@') {
                Some((userinfo, hosts)) => (format!("{userinfo}@"), hosts),
                None => (String::new(), before_query),
            };
            let (hosts, path) = hosts.split_once('/').unwrap_or((hosts, ""));
            if !(path.is_empty() || path == "0") {
                return Err(config_err(
                    "a Redis Cluster has only database 0; drop the `/db` from the URL".to_owned(),
                ));
            }
            let mut nodes = Vec::new();
            for host in hosts.split(',').filter(|h| !h.is_empty()) {
                let node = format!("{node_scheme}://{userinfo}{host}{client_query}");
                nodes.push(node.as_str().into_connection_info().map_err(|e| {
                    config_err(format!("cluster node `{host}` is not a valid address: {e}"))
                })?);
            }
            if nodes.is_empty() {
                return Err(config_err(
                    "`redis+cluster://` needs at least one node, e.g. redis+cluster://127.0.0.1:7000,127.0.0.1:7001".to_owned(),
                ));
            }
            Topology::Cluster(nodes)
        } else {
            let single = format!("{node_scheme}://{before_query}{client_query}");
            Topology::Standalone(Box::new(single.as_str().into_connection_info().map_err(
                |e| config_err(format!("`{redacted}` is not a valid Redis URL: {e}")),
            )?))
        };
        let config = Self {
            topology,
            prefix,
            operation_timeout,
            connect_timeout,
            tls_ca_file,
            tls_root_pem: None,
            tls,
            wait_replicas,
            wait_timeout,
            allow_evicting_policy,
            redacted,
        };
        config.validate()?;
        Ok(config)
    }

    /// Uses `prefix` before every key (default `tss:`). Stores with different
    /// prefixes on one Redis do not see each other's sessions.
    pub fn prefix(mut self, prefix: &str) -> Self {
        prefix.clone_into(&mut self.prefix);
        self
    }

    /// How long one operation may take before it fails as unavailable
    /// (default 2 s): a hung Redis makes requests fail, never pile up.
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// How long connecting may take (default 2 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Makes every revocation (a deletion, a revoke-all of a subject, an
    /// epoch change) wait until `replicas` replicas of the primary that
    /// took it acknowledge it (`WAIT`), at most `timeout`; one not
    /// acknowledged in time fails as unavailable (the caller retries), so
    /// that an acknowledged revocation survives the primary's failover.
    /// Off (0 replicas) by default; URL `wait_replicas=1&wait_timeout_ms=500`.
    pub fn wait_for_replicas(mut self, replicas: u32, timeout: Duration) -> Self {
        self.wait_replicas = replicas;
        self.wait_timeout = timeout;
        self
    }

    /// Accepts a server whose `maxmemory-policy` evicts any key when memory
    /// is full (`allkeys-*`). Refused by default: such a server may evict
    /// revocation epochs and subject indexes, which keep no expiry, and
    /// with them revocations. Also skips the check where the server does
    /// not let this user read its configuration. URL
    /// `allow_evicting_policy=true`.
    pub fn allow_evicting_policy(mut self, allow: bool) -> Self {
        self.allow_evicting_policy = allow;
        self
    }

    /// Trusts these PEM root certificates for TLS instead of the system's.
    pub fn tls_root_certificates(mut self, pem: Vec<u8>) -> Self {
        self.tls_root_pem = Some(pem);
        self
    }

    /// The key prefix.
    pub fn prefix_value(&self) -> &str {
        &self.prefix
    }

    /// Whether the URL names a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.topology, Topology::Cluster(_))
    }

    /// The URL, password redacted.
    pub fn redacted_url(&self) -> &str {
        &self.redacted
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<(), RedisStoreError> {
        if self.prefix.len() > MAX_PREFIX_LEN {
            return Err(RedisStoreError::Config(format!(
                "the key prefix is {} bytes, at most {MAX_PREFIX_LEN} are allowed",
                self.prefix.len()
            )));
        }
        // A `{…}` in the prefix would become every key's hash tag and put
        // all sessions in one cluster slot.
        if self.prefix.contains(['{', '}']) {
            return Err(RedisStoreError::Config(format!(
                "the key prefix `{}` must not contain `{{` or `}}` (they choose cluster slots)",
                self.prefix
            )));
        }
        if self.operation_timeout.is_zero()
            || self.connect_timeout.is_zero()
            || self.wait_timeout.is_zero()
        {
            return Err(RedisStoreError::Config(
                "timeouts must be longer than zero".to_owned(),
            ));
        }
        Ok(())
    }

    /// The PEM roots to trust, read from `tls_ca_file` when set.
    pub(crate) fn root_pem(&self) -> Result<Option<Vec<u8>>, RedisStoreError> {
        if let Some(pem) = &self.tls_root_pem {
            return Ok(Some(pem.clone()));
        }
        match &self.tls_ca_file {
            Some(path) => std::fs::read(path).map(Some).map_err(|e| {
                RedisStoreError::Config(format!(
                    "cannot read tls_ca_file `{}`: {e}",
                    path.display()
                ))
            }),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        for url in [
            "redis://ann:s3cret@127.0.0.1:6379/2?prefix=a:",
            "redis+cluster://:s3cret@h1:1,h2:2",
            "redis://127.0.0.1:6379?password=s3cret",
        ] {
            let config = RedisConfig::from_url(url).expect("url");
            assert!(!format!("{config:?}").contains("s3cret"), "{url}");
            assert!(!config.redacted_url().contains("s3cret"), "{url}");
        }
    }

    #[test]
    fn urls_parse_into_settings() {
        let config =
            RedisConfig::from_url("redis://127.0.0.1:6380/3?prefix=x:&operation_timeout_ms=250")
                .expect("url");
        assert_eq!(config.prefix_value(), "x:");
        assert_eq!(config.operation_timeout, Duration::from_millis(250));
        match &config.topology {
            Topology::Standalone(info) => assert_eq!(info.redis_settings().db(), 3),
            Topology::Cluster(_) => panic!("standalone expected"),
        }
        let cluster = RedisConfig::from_url("redis+cluster://u:p@127.0.0.1:7000,127.0.0.1:7001")
            .expect("cluster url");
        match &cluster.topology {
            Topology::Cluster(nodes) => assert_eq!(nodes.len(), 2),
            Topology::Standalone(_) => panic!("cluster expected"),
        }
        assert!(RedisConfig::from_url("redis+cluster://h:1/2").is_err());
        assert!(RedisConfig::from_url("redis://h:1?prefix={x}").is_err());
        assert!(RedisConfig::from_url("redis://h:1?operation_timeout_ms=0").is_err());
        assert!(RedisConfig::from_url("postgres://h").is_err());
        assert!(RedisConfig::from_url("rediss://h:1").expect("tls").tls);
        let waiting = RedisConfig::from_url(
            "redis://h:1?wait_replicas=1&wait_timeout_ms=250&allow_evicting_policy=true",
        )
        .expect("url");
        assert_eq!(waiting.wait_replicas, 1);
        assert_eq!(waiting.wait_timeout, Duration::from_millis(250));
        assert!(waiting.allow_evicting_policy);
        let plain = RedisConfig::from_url("redis://h:1").expect("url");
        assert_eq!(plain.wait_replicas, 0, "off unless asked for");
        assert!(!plain.allow_evicting_policy);
        assert!(RedisConfig::from_url("redis://h:1?wait_replicas=x").is_err());
        assert!(RedisConfig::from_url("redis://h:1?allow_evicting_policy=yes").is_err());
    }
}
