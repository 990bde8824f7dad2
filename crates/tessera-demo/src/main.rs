//! `tessera-demo`: serves the demo site (`docs/demo.md`).
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use tessera::axum::DbscSettings;
use tessera::device::DeviceBindingPolicy;
use tessera::open::{OpenStoreError, StoreUrl, open_store};
use tessera::sealed::{KeyRing, SealingKey};
use tessera::store::{Durability, Epochs};
use tessera::{BindingPolicy, SessionManager};
use tessera_demo::DemoMode;

/// The Tessera demo site: sign in, count, list and revoke your sessions.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The web framework serving the demo: the same routes, pages and
    /// behaviour on either.
    #[arg(long, env = "TESSERA_FRAMEWORK", value_enum, default_value_t = Framework::Axum)]
    framework: Framework,
    /// Address to listen on (open http://localhost:PORT in a browser).
    #[arg(long, env = "TESSERA_LISTEN", default_value = "127.0.0.1:7451")]
    listen: SocketAddr,
    /// Session store URL, as tesserad's `--store`: `memory:` or `embedded:PATH`.
    #[arg(long, env = "TESSERA_STORE", default_value = "memory:")]
    store: StoreUrl,
    /// Where sessions live: on the server, or sealed in the cookie.
    #[arg(long, env = "TESSERA_MODE", value_enum, default_value_t = Mode::Server)]
    mode: Mode,
    /// Sealing keys for `--mode cookie`: ID:BASE64KEY[,ID:BASE64KEY…],
    /// newest first. Without it a random key is made at start, so sealed
    /// sessions end when the demo restarts.
    #[arg(long, env = "TESSERA_SEALING_KEYS", hide_env_values = true)]
    sealing_keys: Option<SealingKeysArg>,
    /// Idle timeout [default: 30m].
    #[arg(long, env = "TESSERA_IDLE_TIMEOUT", value_parser = humantime::parse_duration)]
    idle_timeout: Option<Duration>,
    /// Absolute timeout [default: 12h, at least the idle timeout].
    #[arg(long, env = "TESSERA_ABSOLUTE_TIMEOUT", value_parser = humantime::parse_duration)]
    absolute_timeout: Option<Duration>,
    /// Token renewal interval [default: 15m, at most half the idle timeout].
    #[arg(long, env = "TESSERA_RENEW_AFTER", value_parser = humantime::parse_duration)]
    renew_after: Option<Duration>,
    /// How long a renewed-away token keeps working once its successor is
    /// presented [default: 10s, at most a quarter of the renewal interval].
    #[arg(long, env = "TESSERA_ROTATION_GRACE", value_parser = humantime::parse_duration)]
    rotation_grace: Option<Duration>,
    /// Touch granularity [default: 60s, at most a quarter of the idle timeout].
    #[arg(long, env = "TESSERA_TOUCH_AFTER", value_parser = humantime::parse_duration)]
    touch_after: Option<Duration>,
    /// Client binding policy: off, log or reject.
    #[arg(long, env = "TESSERA_BINDING", default_value = "log")]
    binding: BindingPolicy,
    /// Device-bound sessions (DBSC): browsers that support it bind each
    /// sign-in to a device key (needs HTTPS: --tls-cert and --tls-key).
    #[arg(long, env = "TESSERA_DBSC", value_enum, default_value_t = Switch::On)]
    dbsc: Switch,
    /// Lifetime of the DBSC bound cookie: how long a stolen cookie jar works.
    #[arg(long, env = "TESSERA_DBSC_COOKIE_LIFETIME", value_parser = humantime::parse_duration, default_value = "10m")]
    dbsc_cookie_lifetime: Duration,
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, env = "TESSERA_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "TESSERA_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Framework {
    /// axum, with `tessera-axum`'s session layer.
    Axum,
    /// actix-web, with `tessera-actix`'s session middleware.
    Actix,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Switch {
    On,
    Off,
}

/// `--sealing-keys` as given: its `Debug` never shows the keys.
#[derive(Clone)]
struct SealingKeysArg(String);

impl std::fmt::Debug for SealingKeysArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealingKeysArg(<redacted>)")
    }
}

impl std::str::FromStr for SealingKeysArg {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self(text.to_owned()))
    }
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
    #[error("--store: {0}")]
    Store(#[from] OpenStoreError),
    #[error("invalid session settings: {0}")]
    Config(#[from] tessera::ConfigError),
    #[error("invalid cookie settings: {0}")]
    Layer(#[from] tessera::axum::LayerConfigError),
    #[error("--sealing-keys: {0}")]
    Keys(#[from] tessera::sealed::KeyRingError),
    #[error("cannot make a sealing key: {0}")]
    Entropy(#[from] tessera::token::TokenError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server failed: {0}")]
    Serve(std::io::Error),
    #[error("--dbsc-cookie-lifetime: {0}")]
    Dbsc(#[from] tessera::device::DeviceBindingPolicyError),
    #[error("--tls-cert/--tls-key: {0}")]
    Tls(std::io::Error),
    #[error("--tls-cert/--tls-key: {0}")]
    TlsConfig(#[from] tessera_demo::with_actix::TlsError),
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
    let opened = open_store(&args.store).await?;
    // Only the timeouts given are set: the others are derived from them.
    let mut builder = SessionManager::builder_shared(opened.store.clone()).binding(args.binding);
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
    if args.mode == Mode::Cookie && opened.store.durability() == Durability::Volatile {
        tracing::warn!(
            store = %args.store,
            "cookie mode keeps its revocation epochs in a store that forgets them at a restart: every sealed session ends when the demo restarts"
        );
        builder = builder.allow_volatile_epochs();
    }
    let manager = builder.build()?;
    let mode = match args.mode {
        Mode::Server => DemoMode::Server,
        Mode::Cookie => DemoMode::Cookie(match &args.sealing_keys {
            Some(SealingKeysArg(spec)) => KeyRing::parse(spec)?,
            None => KeyRing::new(SealingKey::generate(1)?),
        }),
    };
    let dbsc = match args.dbsc {
        Switch::On => Some(DbscSettings::new(DeviceBindingPolicy::new(
            args.dbsc_cookie_lifetime,
        )?)),
        Switch::Off => None,
    };
    let served = match args.framework {
        Framework::Axum => serve_axum(&args, manager, mode, dbsc).await,
        Framework::Actix => serve_actix(&args, manager, mode, dbsc).await,
    };
    opened.shutdown()?;
    served
}

/// Serves the demo with axum until Ctrl-C.
async fn serve_axum(
    args: &Args,
    manager: SessionManager,
    mode: DemoMode,
    dbsc: Option<DbscSettings>,
) -> Result<(), DemoError> {
    let app = tessera_demo::app_with_dbsc(manager, mode, dbsc)?;
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
            .await
            .map_err(DemoError::Tls)?;
        let handle = axum_server::Handle::new();
        let shutdown = handle.clone();
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            shutdown.graceful_shutdown(Some(Duration::from_secs(5)));
        });
        tracing::info!(
            mode = ?args.mode,
            store = %args.store,
            "tessera-demo (axum) at https://localhost:{}/",
            args.listen.port()
        );
        return axum_server::bind_rustls(args.listen, tls)
            .handle(handle)
            .serve(app.into_make_service_with_connect_info::<SocketAddr>())
            .await
            .map_err(DemoError::Serve);
    }
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
        "tessera-demo (axum) at http://localhost:{port}/"
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

/// Serves the demo with actix-web (one worker per core) until Ctrl-C.
async fn serve_actix(
    args: &Args,
    manager: SessionManager,
    mode: DemoMode,
    dbsc: Option<DbscSettings>,
) -> Result<(), DemoError> {
    let demo = tessera_demo::ActixDemo::new(manager, mode, dbsc)?;
    let server = actix_web::HttpServer::new(move || demo.app()).shutdown_timeout(5);
    let listen_error = |source| DemoError::Listen {
        addr: args.listen,
        source,
    };
    let (server, scheme) = if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let cert = std::fs::read(cert).map_err(DemoError::Tls)?;
        let key = std::fs::read(key).map_err(DemoError::Tls)?;
        let tls = tessera_demo::with_actix::tls_config(&cert, &key)?;
        let server = server
            .bind_rustls_0_23(args.listen, tls)
            .map_err(listen_error)?;
        (server, "https")
    } else {
        (server.bind(args.listen).map_err(listen_error)?, "http")
    };
    let port = server
        .addrs()
        .first()
        .map_or(args.listen.port(), |a| a.port());
    tracing::info!(
        mode = ?args.mode,
        store = %args.store,
        "tessera-demo (actix-web) at {scheme}://localhost:{port}/"
    );
    // actix-web stops gracefully on Ctrl-C by itself.
    server.run().await.map_err(DemoError::Serve)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_the_command_line_redacts_sealing_keys() {
        let args = Args::try_parse_from([
            "tessera-demo",
            "--sealing-keys",
            "1:c2VjcmV0LWtleS1tYXRlcmlhbC1oZXJlLTMyYnl0ZXM",
        ])
        .expect("parse");
        let shown = format!("{args:?}");
        assert!(!shown.contains("c2VjcmV0"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}
