//! `tessera-demo`: serves the demo site (DESIGN.md §6).
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use tessera_core::sealed::{KeyRing, SealingKey};
use tessera_core::{BindingPolicy, MemoryStore, SessionManager, SessionStore};
use tessera_demo::DemoMode;

/// The Tessera demo site: sign in, count, list and revoke your sessions.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on (open http://localhost:PORT in a browser).
    #[arg(long, env = "TESSERA_LISTEN", default_value = "127.0.0.1:7451")]
    listen: SocketAddr,
    /// Session store URL, as tesserad's `--store`.
    #[arg(long, env = "TESSERA_STORE", default_value = "memory:")]
    store: String,
    /// Where sessions live: on the server, or sealed in the cookie.
    #[arg(long, env = "TESSERA_MODE", value_enum, default_value_t = Mode::Server)]
    mode: Mode,
    /// Sealing keys for `--mode cookie`: ID:BASE64KEY[,ID:BASE64KEY…],
    /// newest first. Without it a random key is made at start, so sealed
    /// sessions end when the demo restarts.
    #[arg(long, env = "TESSERA_SEALING_KEYS", hide_env_values = true)]
    sealing_keys: Option<String>,
    /// Idle timeout.
    #[arg(long, env = "TESSERA_IDLE_TIMEOUT", value_parser = humantime::parse_duration, default_value = "30m")]
    idle_timeout: Duration,
    /// Absolute timeout.
    #[arg(long, env = "TESSERA_ABSOLUTE_TIMEOUT", value_parser = humantime::parse_duration, default_value = "12h")]
    absolute_timeout: Duration,
    /// Token renewal interval.
    #[arg(long, env = "TESSERA_RENEW_AFTER", value_parser = humantime::parse_duration, default_value = "15m")]
    renew_after: Duration,
    /// How long a rotated-away token keeps working.
    #[arg(long, env = "TESSERA_ROTATION_GRACE", value_parser = humantime::parse_duration, default_value = "10s")]
    rotation_grace: Duration,
    /// Touch granularity.
    #[arg(long, env = "TESSERA_TOUCH_AFTER", value_parser = humantime::parse_duration, default_value = "60s")]
    touch_after: Duration,
    /// Client binding policy: off, log or reject.
    #[arg(long, env = "TESSERA_BINDING", default_value = "log")]
    binding: BindingPolicy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Sessions in the store, a token in the cookie.
    Server,
    /// Sessions sealed into the cookie.
    Cookie,
}

#[derive(Debug, thiserror::Error)]
enum DemoError {
    #[error("--store {0}: this demo opens only `memory:` stores")]
    Store(String),
    #[error("invalid session settings: {0}")]
    Config(#[from] tessera_core::ConfigError),
    #[error("invalid cookie settings: {0}")]
    Layer(#[from] tessera_axum::LayerConfigError),
    #[error("--sealing-keys: {0}")]
    Keys(#[from] tessera_core::sealed::KeyRingError),
    #[error("cannot make a sealing key: {0}")]
    Entropy(#[from] tessera_core::TokenError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server failed: {0}")]
    Serve(std::io::Error),
}

/// Opens the session store named by `--store`.
fn open_store(url: &str) -> Result<Arc<dyn SessionStore>, DemoError> {
    if url == "memory:" {
        let store = MemoryStore::new();
        store.spawn_sweeper(Duration::from_secs(60));
        return Ok(Arc::new(store));
    }
    Err(DemoError::Store(url.to_owned()))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tessera_core=debug".into()),
        )
        .init();
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tessera-demo: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), DemoError> {
    let store = open_store(&args.store)?;
    let manager = SessionManager::builder_shared(store)
        .idle_timeout(args.idle_timeout)
        .absolute_timeout(args.absolute_timeout)
        .renew_after(args.renew_after)
        .rotation_grace(args.rotation_grace)
        .touch_after(args.touch_after)
        .binding(args.binding)
        .build()?;
    let mode = match args.mode {
        Mode::Server => DemoMode::Server,
        Mode::Cookie => DemoMode::Cookie(match &args.sealing_keys {
            Some(spec) => KeyRing::parse(spec)?,
            None => KeyRing::new(SealingKey::generate(1)?),
        }),
    };
    let app = tessera_demo::app(manager, mode)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|source| DemoError::Listen {
            addr: args.listen,
            source,
        })?;
    let port = listener
        .local_addr()
        .map_or(args.listen.port(), |a| a.port());
    tracing::info!(
        mode = ?args.mode,
        store = %args.store,
        "tessera-demo at http://localhost:{port}/"
    );
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
    .map_err(DemoError::Serve)
}
