//! `tesserad serve`: opens the store, prepares the API keys, and serves the
//! API over HTTP or HTTPS until SIGTERM or SIGINT, finishing in-flight
//! requests before it stops.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use tessera::events::{EventSink, FanOutEventSink, TracingEventSink};
use tessera::open::{OpenOptions, OpenStoreError, open_store_with};
use tessera::store::SessionStore;
use tessera::{ConfigError, SessionManager, SessionManagerBuilder};

use crate::api::{AppState, HttpLimits, router};
use crate::cli::ServeArgs;
use crate::keys::{ApiKeys, KeyError, KeyStore};
use crate::metered_store::metered;
use crate::metrics::{Metrics, MetricsEventSink};

/// How often the API keys file is checked for changes.
const KEY_RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] OpenStoreError),
    /// The API keys could not be read or written.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// The timeouts make no sense together.
    #[error("invalid session settings: {0}")]
    Config(#[from] ConfigError),
    /// The certificate or key could not be loaded.
    #[error("cannot load the TLS certificate {cert} and key {key}: {source}")]
    Tls {
        /// The certificate path.
        cert: PathBuf,
        /// The key path.
        key: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// The address could not be bound, or serving failed.
    #[error("cannot serve on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Refuses settings of the command line that contradict each other.
pub fn check_settings(args: &ServeArgs) -> Result<(), ConfigError> {
    manager_builder(
        args,
        Arc::new(tessera::MemoryStore::new()),
        Arc::new(FanOutEventSink(Vec::new())),
    )
    .resolved_config()
    .validate()
}

/// The session manager with the command line's policy over `store`.
pub fn build_manager(
    args: &ServeArgs,
    store: Arc<dyn SessionStore>,
    events: Arc<dyn EventSink>,
) -> Result<SessionManager, ConfigError> {
    manager_builder(args, store, events).build()
}

fn manager_builder(
    args: &ServeArgs,
    store: Arc<dyn SessionStore>,
    events: Arc<dyn EventSink>,
) -> SessionManagerBuilder {
    // Only the settings given are set: the others are derived from them
    // (a short `--idle-timeout` alone works).
    let mut builder = SessionManager::builder_shared(store)
        .binding(args.binding)
        .events_shared(events);
    if let Some(idle) = args.idle_timeout {
        builder = builder.idle_timeout(idle);
    }
    if let Some(absolute) = args.absolute_timeout {
        builder = builder.absolute_timeout(absolute);
    }
    if let Some(renew) = args.renew_after {
        builder = builder.renew_after(renew);
    }
    if let Some(grace) = args.rotation_grace {
        builder = builder.rotation_grace(grace);
    }
    if let Some(touch) = args.touch_after {
        builder = builder.touch_after(touch);
    }
    if let Some(cap) = args.max_sessions_per_subject {
        builder = builder.max_sessions_per_subject(cap);
    }
    builder
}

/// Makes sure some API key is accepted: with none given and none stored,
/// generates one, prints it once and keeps only its hash.
fn prepare_keys(args: &ServeArgs) -> Result<ApiKeys, KeyError> {
    let data_dir = args.location.data_dir();
    let store = KeyStore::open(&data_dir)?;
    let configured = args
        .api_key
        .as_ref()
        .map(|key| key.expose())
        .filter(|key| !key.is_empty());
    if configured.is_none() && store.list()?.is_empty() {
        let new = store.create(Some("generated on first start"))?;
        println!(
            "tesserad: generated an API key (shown only this once; its SHA-256 is kept in {}):\n\n    {}\n\nSend it as `Authorization: Bearer <key>`. Manage keys with `tesserad keys create|list|revoke`.",
            store.path().display(),
            new.key
        );
        tracing::info!(
            key_id = %new.record.id,
            file = %store.path().display(),
            "generated the first API key"
        );
    }
    ApiKeys::new(configured, Some(store))
}

/// Runs the server until SIGTERM or SIGINT.
pub async fn run(args: ServeArgs) -> Result<(), ServeError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Settings that contradict each other are refused before anything is
    // opened, created or printed (no API key is generated for a server
    // that will not start).
    check_settings(&args)?;
    let opened = open_store_with(
        &args.location.store,
        &OpenOptions::default().near_cache(args.near_cache),
    )
    .await?;
    let keys = Arc::new(prepare_keys(&args)?);
    let key_reloader = keys.spawn_reloader(KEY_RELOAD_INTERVAL);

    let metrics = Arc::new(Metrics::new(opened.record_counter.clone()));
    let store: Arc<dyn SessionStore> = Arc::new(metered(opened.store.clone(), metrics.clone()));
    let events: Arc<dyn EventSink> = Arc::new(FanOutEventSink(vec![
        Arc::new(TracingEventSink),
        Arc::new(MetricsEventSink::new(metrics.clone())),
    ]));
    let manager = build_manager(&args, store, events)?;
    let state = AppState::new(manager, keys)
        .metrics(metrics)
        .cookie_name(&args.cookie_name)
        .store_description(opened.url.to_string());
    let app = router(
        state,
        HttpLimits {
            request_timeout: args.request_timeout,
            ..HttpLimits::default()
        },
    );

    let listen_error = |source| ServeError::Listen {
        addr: args.listen,
        source,
    };
    let listener = std::net::TcpListener::bind(args.listen).map_err(listen_error)?;
    listener.set_nonblocking(true).map_err(listen_error)?;
    let local = listener.local_addr().map_err(listen_error)?;
    let handle: Handle<SocketAddr> = Handle::new();
    let signals = Signals::register().map_err(listen_error)?;
    let signals = tokio::spawn(shutdown_on_signal(
        signals,
        handle.clone(),
        args.shutdown_grace,
    ));
    let service = app.into_make_service_with_connect_info::<SocketAddr>();

    let served = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let config = RustlsConfig::from_pem_file(cert, key)
                .await
                .map_err(|source| ServeError::Tls {
                    cert: cert.clone(),
                    key: key.clone(),
                    source,
                })?;
            announce("https", local, &opened.url.to_string());
            axum_server::from_tcp_rustls(listener, config)
                .map_err(listen_error)?
                .handle(handle)
                .serve(service)
                .await
        }
        _ => {
            announce("http", local, &opened.url.to_string());
            axum_server::from_tcp(listener)
                .map_err(listen_error)?
                .handle(handle)
                .serve(service)
                .await
        }
    };
    signals.abort();
    key_reloader.abort();
    // Every connection has finished: nothing uses the store any more.
    if let Err(error) = opened.shutdown() {
        tracing::error!(%error, "the store did not close cleanly");
    }
    served.map_err(listen_error)?;
    tracing::info!("tesserad stopped");
    Ok(())
}

fn announce(scheme: &str, local: SocketAddr, store: &str) {
    // A server whose standard output was closed keeps serving (no
    // `println!`, which panics on a broken pipe).
    let _ = writeln!(
        std::io::stdout(),
        "tesserad listening on {scheme}://{local} (store {store})"
    );
    tracing::info!(%local, scheme, store, "listening");
}

/// SIGTERM and SIGINT, registered before the server announces itself so that
/// a signal sent right after start is never lost to the default action.
struct Signals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    fn register() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                terminate: signal(SignalKind::terminate())?,
                interrupt: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    async fn received(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.terminate.recv() => "SIGTERM",
                _ = self.interrupt.recv() => "SIGINT",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}

/// Waits for SIGTERM or SIGINT, then lets in-flight requests finish
/// (at most `grace`) while accepting no new connections.
async fn shutdown_on_signal(mut signals: Signals, handle: Handle<SocketAddr>, grace: Duration) {
    let name = signals.received().await;
    tracing::info!("{name} received");
    tracing::info!(
        ?grace,
        connections = handle.connection_count(),
        "shutting down: finishing in-flight requests"
    );
    handle.graceful_shutdown(Some(grace));
}
