//! Opening a session store from a URL (`memory:`, `embedded:PATH`,
//! `redis://…`, `rediss://…`, `redis+cluster://…`, `postgres://…`): the
//! one place that knows every store URL, shared by `tesserad` and the demo.
//!
//! ```
//! use tessera::open::{StoreUrl, open_store};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let url: StoreUrl = "memory:".parse()?;
//! let opened = open_store(&url).await?;
//! opened.store.ping().await?;
//! opened.shutdown()?;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use tessera_core::MemoryStore;
use tessera_core::store::{SessionStore, Sweeper, redact_url, spawn_sweeper};

/// How often background sweepers remove expired records.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// Every URL scheme a build may understand, for error messages.
const KNOWN_SCHEMES: &str =
    "memory:, embedded:PATH, postgres://…, redis://, rediss://, redis+cluster://";

/// A parsed store URL.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreUrl {
    /// `memory:` — sessions in this process's memory, lost on restart.
    Memory,
    /// `embedded:PATH` — the embedded persistent store in data directory `PATH`.
    Embedded {
        /// The data directory.
        dir: PathBuf,
    },
    /// `postgres://…` or `postgresql://…` — the PostgreSQL store (see
    /// `tessera_postgres::PostgresConfig::from_url` for the options).
    Postgres {
        /// The URL as given (it may hold a password; `Display` hides it).
        url: String,
    },
    /// `redis://[user:password@]host:port[/db]`, `rediss://…` (TLS) or
    /// `redis+cluster://host:port,host:port,…` — sessions in Redis or a
    /// Redis Cluster, shared by every node (options as query parameters,
    /// see `tessera_redis::RedisConfig::from_url`).
    Redis {
        /// The URL as given (it may hold a password: shown redacted).
        url: String,
    },
}

impl StoreUrl {
    /// The URL's scheme (`memory`, `embedded`, …).
    pub fn scheme(&self) -> &'static str {
        match self {
            StoreUrl::Memory => "memory",
            StoreUrl::Embedded { .. } => "embedded",
            StoreUrl::Postgres { .. } => "postgres",
            StoreUrl::Redis { .. } => "redis",
        }
    }

    /// The data directory the store keeps its files in, for stores that
    /// have one (servers keep their own files beside it).
    pub fn data_dir(&self) -> Option<&Path> {
        match self {
            StoreUrl::Embedded { dir } => Some(dir),
            StoreUrl::Memory | StoreUrl::Postgres { .. } | StoreUrl::Redis { .. } => None,
        }
    }
}

/// Shows the URL without secrets (safe to log).
impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::Memory => f.write_str("memory:"),
            StoreUrl::Embedded { dir } => write!(f, "embedded:{}", dir.display()),
            StoreUrl::Postgres { url } => f.write_str(&redact_url(url)),
            StoreUrl::Redis { url } => f.write_str(&redact_url(url)),
        }
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreUrl({self})")
    }
}

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenStoreError {
    /// The URL has no scheme this build knows.
    #[error("unknown store URL `{url}`: expected one of {known}")]
    UnknownScheme {
        /// The URL as given.
        url: String,
        /// The schemes understood.
        known: &'static str,
    },
    /// The scheme is known but this build was made without its backend.
    #[error(
        "store `{scheme}:` is not available in this build (enable the `{feature}` feature of the `tessera` crate)"
    )]
    NotCompiledIn {
        /// The scheme.
        scheme: &'static str,
        /// The cargo feature that adds it.
        feature: &'static str,
    },
    /// The URL has the right scheme but is malformed.
    #[error("invalid store URL `{url}`: {problem}")]
    Invalid {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The store did not close cleanly.
    #[error("the {scheme} store did not close cleanly: {source}")]
    Close {
        /// The scheme.
        scheme: &'static str,
        /// The backend's error.
        #[source]
        source: tessera_core::store::BoxError,
    },
    /// The backend refused to open.
    #[error("cannot open the {scheme} store: {source}")]
    Backend {
        /// The scheme.
        scheme: &'static str,
        /// The backend's error.
        #[source]
        source: tessera_core::store::BoxError,
    },
}

impl FromStr for StoreUrl {
    type Err = OpenStoreError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        let invalid = |problem| OpenStoreError::Invalid {
            url: url.to_owned(),
            problem,
        };
        let Some((scheme, rest)) = url.split_once(':') else {
            return Err(OpenStoreError::UnknownScheme {
                url: url.to_owned(),
                known: KNOWN_SCHEMES,
            });
        };
        match scheme {
            "memory" if rest.is_empty() || rest == "//" => Ok(StoreUrl::Memory),
            "memory" => Err(invalid("`memory:` takes no path or options")),
            "embedded" => {
                let path = rest.strip_prefix("//").unwrap_or(rest);
                if path.is_empty() {
                    return Err(invalid(
                        "`embedded:` needs a data directory, e.g. `embedded:./tessera-data`",
                    ));
                }
                Ok(StoreUrl::Embedded {
                    dir: PathBuf::from(path),
                })
            }
            "postgres" | "postgresql" => {
                #[cfg(feature = "postgres")]
                tessera_postgres::PostgresConfig::from_url(url).map_err(|source| {
                    OpenStoreError::Backend {
                        scheme: "postgres",
                        source: Box::new(source),
                    }
                })?;
                Ok(StoreUrl::Postgres {
                    url: url.to_owned(),
                })
            }
            "redis" | "rediss" | "redis+cluster" | "rediss+cluster" => {
                if rest.strip_prefix("//").is_none_or(str::is_empty) {
                    return Err(invalid(
                        "a Redis URL needs a host, e.g. `redis://127.0.0.1:6379`",
                    ));
                }
                #[cfg(feature = "redis")]
                tessera_redis::RedisConfig::from_url(url).map_err(|source| {
                    OpenStoreError::Backend {
                        scheme: "redis",
                        source: Box::new(source),
                    }
                })?;
                Ok(StoreUrl::Redis {
                    url: url.to_owned(),
                })
            }
            _ => Err(OpenStoreError::UnknownScheme {
                url: url.to_owned(),
                known: KNOWN_SCHEMES,
            }),
        }
    }
}

/// A function that tells how many session records a store holds (best
/// effort: it may count records that expired and were not yet swept).
pub type RecordCounter = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Closes a store cleanly (flushes and unlocks what it holds).
pub type StoreCloser = Box<dyn FnOnce() -> Result<(), tessera_core::store::BoxError> + Send>;

/// An open store and the background tasks that keep it tidy.
pub struct OpenedStore {
    /// The store.
    pub store: Arc<dyn SessionStore>,
    /// Background tasks started for the store (its sweeper); they end
    /// with [`shutdown`](Self::shutdown), or when this is dropped.
    pub tasks: Vec<Sweeper>,
    /// Counts the records held, when the store can tell cheaply.
    pub record_counter: Option<RecordCounter>,
    /// The URL it was opened from.
    pub url: StoreUrl,
    /// Closes the store, for stores that hold files or connections.
    pub closer: Option<StoreCloser>,
}

impl fmt::Debug for OpenedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenedStore")
            .field("url", &self.url)
            .field("tasks", &self.tasks.len())
            .finish_non_exhaustive()
    }
}

impl OpenedStore {
    /// Stops the background tasks and closes the store (for stores that
    /// hold files or connections; others close when the last clone of
    /// [`store`](Self::store) is dropped).
    pub fn shutdown(self) -> Result<(), OpenStoreError> {
        for task in self.tasks {
            task.stop();
        }
        match self.closer {
            Some(close) => close().map_err(|source| OpenStoreError::Close {
                scheme: self.url.scheme(),
                source,
            }),
            None => Ok(()),
        }
    }
}

/// How to open a store, beyond its URL.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct OpenOptions {
    /// Keep recently loaded sessions in this process's memory, kept
    /// coherent with every other node through the store's invalidation
    /// channel (see `tessera::store::near_cache`). Redis stores only.
    pub near_cache: bool,
}

impl OpenOptions {
    /// Sets [`near_cache`](Self::near_cache).
    pub fn near_cache(mut self, on: bool) -> Self {
        self.near_cache = on;
        self
    }
}

/// Opens the store a URL names, starting its background tasks on the current
/// tokio runtime.
pub async fn open_store(url: &StoreUrl) -> Result<OpenedStore, OpenStoreError> {
    open_store_with(url, &OpenOptions::default()).await
}

/// [`open_store`] with options.
pub async fn open_store_with(
    url: &StoreUrl,
    options: &OpenOptions,
) -> Result<OpenedStore, OpenStoreError> {
    if options.near_cache && !matches!(url, StoreUrl::Redis { .. }) {
        return Err(OpenStoreError::Invalid {
            url: url.to_string(),
            problem: "a near cache needs a store shared through Redis (redis://, rediss:// or redis+cluster://), whose pub/sub carries the invalidations",
        });
    }
    match url {
        StoreUrl::Memory => {
            let store = MemoryStore::new();
            let sweeper = spawn_sweeper(store.clone(), SWEEP_INTERVAL);
            let counted = store.clone();
            Ok(OpenedStore {
                store: Arc::new(store),
                tasks: vec![sweeper],
                record_counter: Some(Arc::new(move || counted.len() as u64)),
                url: url.clone(),
                closer: None,
            })
        }
        #[cfg(feature = "embedded")]
        StoreUrl::Embedded { dir } => {
            let store = tessera_embedded::EmbeddedStore::open(dir).map_err(|source| {
                OpenStoreError::Backend {
                    scheme: "embedded",
                    source: Box::new(source),
                }
            })?;
            let sweeper = spawn_sweeper(store.clone(), SWEEP_INTERVAL);
            let counted = store.clone();
            let closing = store.clone();
            Ok(OpenedStore {
                store: Arc::new(store),
                tasks: vec![sweeper],
                record_counter: Some(Arc::new(move || counted.len() as u64)),
                url: url.clone(),
                closer: Some(Box::new(move || {
                    closing
                        .close()
                        .map_err(|e| Box::new(e) as tessera_core::store::BoxError)
                })),
            })
        }
        #[cfg(not(feature = "embedded"))]
        StoreUrl::Embedded { .. } => Err(OpenStoreError::NotCompiledIn {
            scheme: "embedded",
            feature: "embedded",
        }),
        #[cfg(feature = "postgres")]
        StoreUrl::Postgres { url: text } => {
            let store = tessera_postgres::PostgresStore::connect(text)
                .await
                .map_err(|source| OpenStoreError::Backend {
                    scheme: "postgres",
                    source: Box::new(source),
                })?;
            let sweeper = spawn_sweeper(store.clone(), SWEEP_INTERVAL);
            Ok(OpenedStore {
                store: Arc::new(store),
                tasks: vec![sweeper],
                record_counter: None,
                url: url.clone(),
                closer: None,
            })
        }
        #[cfg(feature = "redis")]
        StoreUrl::Redis { url: raw } => {
            let backend = |source: tessera_redis::RedisStoreError| OpenStoreError::Backend {
                scheme: "redis",
                source: Box::new(source),
            };
            // Lazily: a server may start while Redis is down (its readiness
            // check fails until Redis answers). Settings are checked now.
            let config = tessera_redis::RedisConfig::from_url(raw).map_err(backend)?;
            let store = tessera_redis::RedisStore::connect_lazy(config.clone())
                .await
                .map_err(backend)?;
            if options.near_cache {
                let bus = tessera_redis::RedisBus::new(&store, &config).map_err(backend)?;
                let cache = tessera_core::near_cache::NearCache::new(
                    store,
                    Arc::new(bus),
                    tessera_core::near_cache::NearCacheConfig::default(),
                );
                let closing = cache.clone();
                let sweeper = spawn_sweeper(cache.clone(), SWEEP_INTERVAL);
                return Ok(OpenedStore {
                    store: Arc::new(cache),
                    tasks: vec![sweeper],
                    record_counter: None,
                    url: url.clone(),
                    closer: Some(Box::new(move || {
                        closing.shutdown();
                        Ok(())
                    })),
                });
            }
            let sweeper = spawn_sweeper(store.clone(), SWEEP_INTERVAL);
            Ok(OpenedStore {
                store: Arc::new(store),
                tasks: vec![sweeper],
                record_counter: None,
                url: url.clone(),
                closer: None,
            })
        }
        #[cfg(not(feature = "postgres"))]
        StoreUrl::Postgres { .. } => Err(OpenStoreError::NotCompiledIn {
            scheme: "postgres",
            feature: "postgres",
        }),
        #[cfg(not(feature = "redis"))]
        StoreUrl::Redis { .. } => Err(OpenStoreError::NotCompiledIn {
            scheme: "redis",
            feature: "redis",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_known_schemes() {
        assert_eq!("memory:".parse::<StoreUrl>().ok(), Some(StoreUrl::Memory));
        assert_eq!(
            "embedded:./tessera-data".parse::<StoreUrl>().ok(),
            Some(StoreUrl::Embedded {
                dir: PathBuf::from("./tessera-data")
            })
        );
        assert_eq!(
            "embedded:///var/lib/tessera"
                .parse::<StoreUrl>()
                .ok()
                .and_then(|u| u.data_dir().map(Path::to_path_buf)),
            Some(PathBuf::from("/var/lib/tessera"))
        );
    }

    #[test]
    fn unknown_and_malformed_urls_are_clear_errors() {
        let unknown = "mongodb://x"
            .parse::<StoreUrl>()
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            unknown.as_deref(),
            Some(
                "unknown store URL `mongodb://x`: expected one of memory:, embedded:PATH, postgres://…, redis://, rediss://, redis+cluster://"
            )
        );
        assert!(matches!(
            "nothing".parse::<StoreUrl>(),
            Err(OpenStoreError::UnknownScheme { .. })
        ));
        assert!(matches!(
            "embedded:".parse::<StoreUrl>(),
            Err(OpenStoreError::Invalid { .. })
        ));
        assert!(matches!(
            "memory:/x".parse::<StoreUrl>(),
            Err(OpenStoreError::Invalid { .. })
        ));
    }

    #[test]
    fn redis_urls_parse_and_display_without_password() {
        for url in [
            "redis://127.0.0.1:6379",
            "rediss://ann:pw@cache.internal:6380/2?prefix=app:",
            "redis+cluster://10.0.0.1:7000,10.0.0.2:7000",
        ] {
            let parsed: StoreUrl = url.parse().expect("redis url");
            assert_eq!(parsed.scheme(), "redis");
            assert!(parsed.data_dir().is_none());
        }
        let secret: StoreUrl = "rediss://ann:s3cret@h:6380/2?prefix=a:"
            .parse()
            .expect("url");
        assert_eq!(secret.to_string(), "rediss://ann:***@h:6380/2?prefix=a:");
        assert!(!format!("{secret:?}").contains("s3cret"));
        let no_user: StoreUrl = "redis+cluster://:pw@h1:1,h2:2".parse().expect("url");
        assert_eq!(no_user.to_string(), "redis+cluster://:***@h1:1,h2:2");
        assert!(matches!(
            "redis://".parse::<StoreUrl>(),
            Err(OpenStoreError::Invalid { .. })
        ));
    }

    #[cfg(feature = "embedded")]
    #[tokio::test]
    async fn embedded_opens_persists_and_closes() {
        use tessera_core::{NewSession, SessionManager};
        let dir = std::env::temp_dir().join(format!(
            "tessera-open-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        ));
        let url: StoreUrl = format!("embedded:{}", dir.display()).parse().expect("url");
        let opened = open_store(&url).await.expect("open");
        let manager = SessionManager::builder_shared(opened.store.clone())
            .build()
            .expect("manager");
        let issued = manager.create(NewSession::default()).await.expect("create");
        drop(manager);
        opened.shutdown().expect("close");

        let reopened = open_store(&url).await.expect("reopen");
        let manager = SessionManager::builder_shared(reopened.store.clone())
            .build()
            .expect("manager");
        let token = issued.issued().expect("a token").expose();
        let valid = manager
            .validate(token, None)
            .await
            .expect("the session survived the restart");
        assert_eq!(valid.record().id, issued.record().id);
        assert_eq!(
            reopened.record_counter.as_ref().map(|count| count()),
            Some(1)
        );
        drop(manager);
        reopened.shutdown().expect("close");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn postgres_urls_parse_and_never_show_their_password() {
        let url: StoreUrl = "postgres://app:s3cret@127.0.0.1:5432/test?schema=s"
            .parse()
            .expect("a PostgreSQL URL");
        assert_eq!(url.scheme(), "postgres");
        assert_eq!(url.data_dir(), None);
        assert_eq!(
            url.to_string(),
            "postgres://app:***@127.0.0.1:5432/test?schema=s"
        );
        assert!(!format!("{url:?}").contains("s3cret"));
        let other: StoreUrl = "postgresql://u@h/db?password=hunter2&schema=x"
            .parse()
            .expect("postgresql:// with a password parameter");
        assert_eq!(
            other.to_string(),
            "postgresql://u@h/db?password=***&schema=x"
        );
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn malformed_postgres_urls_are_refused_when_parsed() {
        let refused = "postgres://h/db?max_connections=many".parse::<StoreUrl>();
        assert!(
            matches!(
                refused,
                Err(OpenStoreError::Backend {
                    scheme: "postgres",
                    ..
                })
            ),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn memory_opens_and_answers() {
        let opened = open_store(&StoreUrl::Memory).await.expect("memory store");
        opened.store.ping().await.expect("ping");
        assert_eq!(opened.record_counter.as_ref().map(|count| count()), Some(0));
        opened.shutdown().expect("close");
    }
}
