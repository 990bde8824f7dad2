//! Connection settings: the store URL, schema and table prefix, pool size and timeouts.

use std::str::FromStr;
use std::time::Duration;

use crate::error::PostgresError;

/// The schema tables go into unless another is configured.
pub const DEFAULT_SCHEMA: &str = "tessera";
/// Longest schema name PostgreSQL keeps (identifiers are cut at 63 bytes).
const MAX_SCHEMA_LEN: usize = 63;
/// Longest table prefix: the longest derived name
/// (`{prefix}legacy_tokens_forget_at`) must still fit PostgreSQL's 63-byte
/// identifiers.
pub const MAX_TABLE_PREFIX_LEN: usize = 40;

/// How to reach PostgreSQL and where to keep sessions.
///
/// Build one from a URL with [`PostgresConfig::from_url`] (the form
/// `tesserad --store` takes) or with [`PostgresConfig::new`] and the setters.
///
/// ```
/// use std::time::Duration;
/// use tessera_postgres::PostgresConfig;
///
/// let config = PostgresConfig::from_url(
///     "postgres://tessera@127.0.0.1:5432/app?schema=auth&table_prefix=web_&max_connections=32",
/// )?
/// .operation_timeout(Duration::from_secs(2));
/// assert_eq!(config.schema_name(), "auth");
/// assert_eq!(config.table_prefix_value(), "web_");
/// # Ok::<(), tessera_postgres::PostgresError>(())
/// ```
#[derive(Clone)]
pub struct PostgresConfig {
    pub(crate) connection: tokio_postgres::Config,
    pub(crate) schema: String,
    pub(crate) table_prefix: String,
    pub(crate) max_connections: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) operation_timeout: Duration,
    pub(crate) migration_timeout: Duration,
    pub(crate) sweep_batch: u32,
    pub(crate) run_migrations: bool,
}

impl std::fmt::Debug for PostgresConfig {
    // The connection settings may hold a password: show only where they point.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("hosts", &self.connection.get_hosts())
            .field("ports", &self.connection.get_ports())
            .field("dbname", &self.connection.get_dbname())
            .field("user", &self.connection.get_user())
            .field("schema", &self.schema)
            .field("table_prefix", &self.table_prefix)
            .field("max_connections", &self.max_connections)
            .field("connect_timeout", &self.connect_timeout)
            .field("operation_timeout", &self.operation_timeout)
            .field("migration_timeout", &self.migration_timeout)
            .field("sweep_batch", &self.sweep_batch)
            .field("run_migrations", &self.run_migrations)
            .finish()
    }
}

/// Keys of the store URL's query string that Tessera reads itself (the
/// rest go to the PostgreSQL driver).
const OWN_PARAMS: [&str; 7] = [
    "schema",
    "table_prefix",
    "max_connections",
    "connect_timeout_ms",
    "operation_timeout_ms",
    "migration_timeout_ms",
    "sweep_batch",
];

impl PostgresConfig {
    /// Settings from driver connection settings, with the defaults: schema
    /// `tessera`, no table prefix, 16 connections, 2 s to connect, 5 s per
    /// operation, 10 minutes for a migration run, sweeps of 500 records,
    /// migrations run on connect.
    pub fn new(connection: tokio_postgres::Config) -> Self {
        Self {
            connection,
            schema: DEFAULT_SCHEMA.to_owned(),
            table_prefix: String::new(),
            max_connections: 16,
            connect_timeout: Duration::from_secs(2),
            operation_timeout: Duration::from_secs(5),
            migration_timeout: Duration::from_secs(600),
            sweep_batch: 500,
            run_migrations: true,
        }
    }

    /// Settings from a `postgres://` (or `postgresql://`) URL, or a libpq
    /// `key=value` string.
    ///
    /// Besides the driver's parameters (`host`, `port`, `user`, `password`,
    /// `dbname`, `sslmode=disable`, `application_name`, …) the query string
    /// may carry `schema`, `table_prefix`, `max_connections`,
    /// `connect_timeout_ms`, `operation_timeout_ms`, `migration_timeout_ms`
    /// and `sweep_batch`.
    pub fn from_url(url: &str) -> Result<Self, PostgresError> {
        let (driver_url, own) = split_own_params(url);
        let connection = tokio_postgres::Config::from_str(&driver_url).map_err(|e| {
            PostgresError::Config(format!(
                "cannot read the PostgreSQL URL (expected postgres://user@host:port/dbname): {e}"
            ))
        })?;
        let mut config = Self::new(connection);
        for (key, value) in own {
            config = config.apply_param(&key, &value)?;
        }
        config.validate()?;
        Ok(config)
    }

    fn apply_param(self, key: &str, value: &str) -> Result<Self, PostgresError> {
        let number = |what: &str| {
            value.parse::<u64>().map_err(|_| {
                PostgresError::Config(format!(
                    "`{what}` in the store URL must be a whole number, got `{value}`"
                ))
            })
        };
        Ok(match key {
            "schema" => self.schema(value),
            "table_prefix" => self.table_prefix(value),
            "max_connections" => {
                self.max_connections(usize::try_from(number(key)?).unwrap_or(usize::MAX))
            }
            "connect_timeout_ms" => self.connect_timeout(Duration::from_millis(number(key)?)),
            "operation_timeout_ms" => self.operation_timeout(Duration::from_millis(number(key)?)),
            "migration_timeout_ms" => self.migration_timeout(Duration::from_millis(number(key)?)),
            "sweep_batch" => self.sweep_batch(u32::try_from(number(key)?).unwrap_or(u32::MAX)),
            _ => self,
        })
    }

    /// The schema the tables live in (created if missing); default `tessera`.
    pub fn schema(mut self, schema: &str) -> Self {
        schema.clone_into(&mut self.schema);
        self
    }

    /// A prefix for every table and index name, so several Tessera
    /// deployments can share one schema; default none.
    pub fn table_prefix(mut self, prefix: &str) -> Self {
        prefix.clone_into(&mut self.table_prefix);
        self
    }

    /// Most connections the pool opens; default 16.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = max;
        self
    }

    /// How long opening one connection may take; default 2 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long one store operation may take, waiting for a pooled
    /// connection included, before it fails as unavailable; the server also
    /// cancels statements running longer (`statement_timeout`). Default 5 s.
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// How long one migration run may take, waiting for another node's run
    /// included; default 10 minutes. Migration 2 converts every session of
    /// the layout before it (about 20 000 a second), and a node that starts
    /// meanwhile waits for it rather than failing. A server that stops
    /// answering during a run is given up on after this time too.
    pub fn migration_timeout(mut self, timeout: Duration) -> Self {
        self.migration_timeout = timeout;
        self
    }

    /// How many expired records one sweeper statement deletes; default 500.
    /// Small batches keep every lock short.
    pub fn sweep_batch(mut self, batch: u32) -> Self {
        self.sweep_batch = batch;
        self
    }

    /// Whether connecting creates or upgrades the schema; default `true`.
    /// Turn off when an operator runs migrations separately
    /// ([`migrate`](crate::migrate)).
    pub fn run_migrations(mut self, run: bool) -> Self {
        self.run_migrations = run;
        self
    }

    /// The configured schema.
    pub fn schema_name(&self) -> &str {
        &self.schema
    }

    /// The configured table prefix.
    pub fn table_prefix_value(&self) -> &str {
        &self.table_prefix
    }

    /// Checks the names and numbers; called before connecting.
    pub fn validate(&self) -> Result<(), PostgresError> {
        check_identifier("schema", &self.schema, MAX_SCHEMA_LEN, false)?;
        check_identifier(
            "table prefix",
            &self.table_prefix,
            MAX_TABLE_PREFIX_LEN,
            true,
        )?;
        if self.schema.starts_with("pg_") {
            return Err(PostgresError::Config(format!(
                "schema `{}`: names starting with `pg_` are reserved by PostgreSQL",
                self.schema
            )));
        }
        if self.max_connections == 0 {
            return Err(PostgresError::Config(
                "max_connections must be at least 1".into(),
            ));
        }
        if self.sweep_batch == 0 {
            return Err(PostgresError::Config(
                "sweep_batch must be at least 1".into(),
            ));
        }
        if self.operation_timeout.is_zero()
            || self.connect_timeout.is_zero()
            || self.migration_timeout.is_zero()
        {
            return Err(PostgresError::Config(
                "connect, operation and migration timeouts must be longer than zero".into(),
            ));
        }
        Ok(())
    }
}

/// Schema names and table prefixes go into SQL text, so they are held to
/// plain identifiers: ASCII letters, digits and `_`, not starting with a digit.
fn check_identifier(
    what: &str,
    value: &str,
    max_len: usize,
    may_be_empty: bool,
) -> Result<(), PostgresError> {
    if value.is_empty() {
        return if may_be_empty {
            Ok(())
        } else {
            Err(PostgresError::Config(format!(
                "the {what} must not be empty"
            )))
        };
    }
    let plain = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !value.as_bytes()[0].is_ascii_digit();
    if !plain {
        return Err(PostgresError::Config(format!(
            "the {what} `{value}` may hold only ASCII letters, digits and `_`, and must not start with a digit"
        )));
    }
    if value.len() > max_len {
        return Err(PostgresError::Config(format!(
            "the {what} `{value}` is {} bytes long; at most {max_len} are allowed",
            value.len()
        )));
    }
    Ok(())
}

/// Splits Tessera's own query parameters off a URL. Key-value strings
/// (`host=… dbname=…`) carry none and pass through unchanged.
fn split_own_params(url: &str) -> (String, Vec<(String, String)>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), Vec::new());
    };
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return (url.to_owned(), Vec::new());
    }
    let mut own = Vec::new();
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if OWN_PARAMS.contains(&key) {
            own.push((key.to_owned(), value.to_owned()));
        } else {
            rest.push(pair);
        }
    }
    let driver_url = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    (driver_url, own)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_parameters_are_taken_from_the_url() {
        let config = PostgresConfig::from_url(
            "postgres://postgres@127.0.0.1:5432/test?schema=s1&application_name=x&table_prefix=p_&max_connections=3&operation_timeout_ms=250&migration_timeout_ms=9000&sweep_batch=7",
        )
        .expect("valid URL");
        assert_eq!(config.schema, "s1");
        assert_eq!(config.table_prefix, "p_");
        assert_eq!(config.max_connections, 3);
        assert_eq!(config.operation_timeout, Duration::from_millis(250));
        assert_eq!(config.migration_timeout, Duration::from_millis(9000));
        assert_eq!(config.sweep_batch, 7);
        assert_eq!(config.connection.get_dbname(), Some("test"));
        assert_eq!(config.connection.get_application_name(), Some("x"));
    }

    #[test]
    fn defaults_apply_without_parameters() {
        let config = PostgresConfig::from_url("postgresql://u@localhost/db").expect("valid URL");
        assert_eq!(config.schema, DEFAULT_SCHEMA);
        assert_eq!(config.table_prefix, "");
        assert!(config.run_migrations);
    }

    #[test]
    fn unsafe_names_and_bad_numbers_are_refused() {
        for url in [
            "postgres://u@h/db?schema=a\"b",
            "postgres://u@h/db?schema=",
            "postgres://u@h/db?schema=1abc",
            "postgres://u@h/db?schema=pg_temp",
            "postgres://u@h/db?table_prefix=x;drop",
            "postgres://u@h/db?max_connections=0",
            "postgres://u@h/db?max_connections=many",
            "postgres://u@h/db?sweep_batch=0",
            "mysql://u@h/db",
        ] {
            assert!(
                PostgresConfig::from_url(url).is_err(),
                "{url} must be refused"
            );
        }
        let long_prefix = format!("postgres://u@h/db?table_prefix={}", "p".repeat(41));
        assert!(PostgresConfig::from_url(&long_prefix).is_err());
    }

    #[test]
    fn debug_output_hides_the_password() {
        let config = PostgresConfig::from_url("postgres://u:hunter2@h/db").expect("valid URL");
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
