//! `tesserad serve`: opens the store, prepares the API keys, and serves the
//! API over HTTP or HTTPS until SIGTERM or SIGINT, finishing in-flight
//! requests before it stops.

use std::io::Write;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum_server::Handle;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use tessera::events::{EventSink, FanOutEventSink, TracingEventSink};
use tessera::open::{OpenOptions, OpenStoreError, open_store_with};
use tessera::store::SessionStore;
use tessera::{ConfigError, SessionManager, SessionManagerBuilder};

use crate::api::{AppState, HttpLimits, router};
use crate::cli::ServeArgs;
use crate::connections::{ConnectionGuard, ConnectionLimits, fit_connection_cap};
use crate::console::{Console, ConsoleError};
use crate::keys::{
    AcceptedKey, ApiKeys, KeyError, KeyStore, Scopes, check_key_strength, create_private_dir,
    generate_key,
};
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
    /// The device-binding settings make no sense.
    #[error("--dbsc-cookie-lifetime: {0}")]
    Dbsc(#[from] tessera::device::DeviceBindingPolicyError),
    /// The admin console could not be set up.
    #[error(transparent)]
    Console(#[from] ConsoleError),
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
        .anonymous_creation_caps(
            NonZeroU32::new(args.anonymous_per_ip_per_minute),
            NonZeroU32::new(args.anonymous_per_minute),
        )
        .events_shared(events);
    if let Some(idle) = args.anonymous_idle_timeout {
        builder = builder.anonymous_idle_timeout(idle);
    }
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

/// The accepted keys, and a file to delete at shutdown (a generated key
/// written for a server that keeps no files).
struct PreparedKeys {
    keys: ApiKeys,
    remove_at_exit: Option<PathBuf>,
}

/// Makes sure some API key is accepted: refuses a weak `--api-key`; with
/// none given and none stored, generates one and shows it once (see
/// [`show_generated_key`]), keeping only its hash in the data directory, or
/// nothing at all for a server without one.
fn prepare_keys(args: &ServeArgs) -> Result<PreparedKeys, KeyError> {
    let data_dir = args.location.data_dir();
    let store = data_dir.as_deref().map(KeyStore::open);
    let configured = args
        .api_key
        .as_ref()
        .map(|key| key.expose())
        .filter(|key| !key.is_empty());
    if let Some(key) = configured {
        check_key_strength(key)?;
    }
    let mut accepted: Vec<AcceptedKey> = configured
        .map(|key| AcceptedKey::in_memory(key, args.api_key_scopes))
        .into_iter()
        .collect();
    let mut remove_at_exit = None;
    let stored_any = match &store {
        Some(store) => !store.list()?.is_empty(),
        None => false,
    };
    if configured.is_none() && !stored_any {
        let (key, kept) = match &store {
            Some(store) => {
                let new = store.create(Some("generated on first start"), Scopes::ALL)?;
                tracing::info!(
                    key_id = %new.record.id,
                    file = %store.path().display(),
                    "generated the first API key"
                );
                (
                    new.key,
                    format!("its SHA-256 is kept in {}", store.path().display()),
                )
            }
            None => {
                let key = generate_key()?;
                accepted.push(AcceptedKey::in_memory(&key, Scopes::ALL));
                (
                    key,
                    "it is kept only in memory and ends with this process".to_owned(),
                )
            }
        };
        remove_at_exit = show_generated_key(&key, &kept, data_dir.as_deref())?;
    }
    Ok(PreparedKeys {
        keys: ApiKeys::with_keys(accepted, store)?,
        remove_at_exit,
    })
}

/// The file a generated key is written to when standard output is not a
/// terminal.
pub const GENERATED_KEY_FILE: &str = "generated-api-key";

/// Shows a generated key once: on standard output when it is a terminal;
/// otherwise (output captured by a log collector or a pipe) in a file only
/// its owner can read (mode 0600), whose path is printed. Without a data
/// directory the file goes in the temporary directory and is returned, to be
/// deleted when the server stops.
fn show_generated_key(
    key: &str,
    kept: &str,
    data_dir: Option<&std::path::Path>,
) -> Result<Option<PathBuf>, KeyError> {
    use std::io::IsTerminal;
    if std::io::stdout().is_terminal() {
        let _ = writeln!(
            std::io::stdout(),
            "tesserad: generated an API key with every scope (shown only this once; {kept}):\n\n    {key}\n\nSend it as `Authorization: Bearer <key>`. Manage keys with `tesserad keys create|list|revoke`."
        );
        return Ok(None);
    }
    let (path, temporary) = match data_dir {
        Some(dir) => (dir.join(GENERATED_KEY_FILE), false),
        None => (
            std::env::temp_dir().join(format!(
                "tesserad-{}-{GENERATED_KEY_FILE}",
                std::process::id()
            )),
            true,
        ),
    };
    write_private_file(&path, &format!("{key}\n"))?;
    let _ = writeln!(
        std::io::stdout(),
        "tesserad: generated an API key with every scope ({kept}); standard output is not a terminal, so the key was written to {} (mode 0600) instead. Read it, then delete the file.",
        path.display()
    );
    tracing::info!(file = %path.display(), "wrote the generated API key to a file");
    Ok(temporary.then_some(path))
}

/// Writes `text` to `path` with mode 0600 (through a fresh temporary file
/// and a rename, so the secret is never in a file others may read).
fn write_private_file(path: &std::path::Path, text: &str) -> Result<(), KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        create_private_dir(dir).map_err(io)?;
    }
    let temporary = path.with_extension("tmp");
    let _ = std::fs::remove_file(&temporary);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&temporary).map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&temporary, path).map_err(io)
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
    let prepared = prepare_keys(&args)?;
    let keys = Arc::new(prepared.keys);
    let key_reloader = keys.spawn_reloader(KEY_RELOAD_INTERVAL);

    let metrics = Arc::new(Metrics::new(opened.record_counter.clone()));
    let connection_metrics = metrics.clone();
    let store: Arc<dyn SessionStore> = Arc::new(metered(opened.store.clone(), metrics.clone()));
    let events: Arc<dyn EventSink> = Arc::new(FanOutEventSink(vec![
        Arc::new(TracingEventSink),
        Arc::new(MetricsEventSink::new(metrics.clone())),
    ]));
    let manager = build_manager(&args, store, events.clone())?;
    let mut state = AppState::new(manager, keys)
        .metrics(metrics)
        .cookie_name(&args.cookie_name)
        .max_auth_failures(args.max_auth_failures)
        .trusted_proxies(args.trusted_proxies.clone())
        .store_description(opened.url.to_string());
    if args.dbsc {
        let policy = tessera::device::DeviceBindingPolicy::new(args.dbsc_cookie_lifetime)?;
        state = state.device_binding(crate::api::dbsc::settings(policy));
        tracing::info!(
            cookie_lifetime = ?args.dbsc_cookie_lifetime,
            "device-bound sessions are served at /v1/dbsc/"
        );
    }
    let mut sampler = None;
    if args.admin_console {
        let console = Arc::new(Console::new(events, state.started)?);
        sampler = Some(console.spawn_sampler(&state));
        state = state.console(console);
        tracing::info!("the admin console is served at /admin");
    }
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
    let guard = ConnectionGuard::new(
        ConnectionLimits {
            max_connections: fit_connection_cap(args.max_connections.get()),
            header_read_timeout: args.header_read_timeout,
            keep_alive_timeout: args.keep_alive_timeout,
        },
        Some(connection_metrics),
    );

    let served = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let config = RustlsConfig::from_pem_file(cert, key)
                .await
                .map_err(|source| ServeError::Tls {
                    cert: cert.clone(),
                    key: key.clone(),
                    source,
                })?;
            announce("https", local, &opened.url.to_string(), &args);
            axum_server::from_tcp(listener)
                .map_err(listen_error)?
                .acceptor(RustlsAcceptor::new(config).acceptor(guard))
                .handle(handle)
                .serve(service)
                .await
        }
        _ => {
            announce("http", local, &opened.url.to_string(), &args);
            axum_server::from_tcp(listener)
                .map_err(listen_error)?
                .acceptor(guard)
                .handle(handle)
                .serve(service)
                .await
        }
    };
    signals.abort();
    key_reloader.abort();
    if let Some(sampler) = sampler {
        sampler.abort();
    }
    if let Some(path) = &prepared.remove_at_exit {
        let _ = std::fs::remove_file(path);
    }
    // Every connection has finished: nothing uses the store any more.
    if let Err(error) = opened.shutdown() {
        tracing::error!(%error, "the store did not close cleanly");
    }
    served.map_err(listen_error)?;
    tracing::info!("tesserad stopped");
    Ok(())
}

fn announce(scheme: &str, local: SocketAddr, store: &str, args: &ServeArgs) {
    // A server whose standard output was closed keeps serving (no
    // `println!`, which panics on a broken pipe).
    let mut out = std::io::stdout();
    let _ = match args.location.data_dir() {
        Some(dir) => writeln!(
            out,
            "tesserad keeps its own files (API key hashes) in {}",
            dir.display()
        ),
        None => writeln!(
            out,
            "tesserad keeps no files: the {store} store and its keys end with the process (give --data-dir PATH to keep API keys)"
        ),
    };
    let _ = writeln!(
        out,
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
